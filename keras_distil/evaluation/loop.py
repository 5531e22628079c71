"""The evaluation loop: held-out batches, models loaded from checkpoints, and the figures of every model on
them and against the teacher (:func:`evaluate_models`, :func:`evaluate_checkpoints`; the figures are
listed in :mod:`keras_distil.evaluation`).

Masking is deterministic: the held-out batches are built by the training pipeline with a fixed seed,
uniform masking (no frequency smoothing) and no shuffling across runs, so every model and every run
sees the same positions. When no model has an MLM head the batches are not masked at all.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_distil.config import ConfigError, DataConfig
from keras_distil.evaluation.forward import (
    clean_inputs,
    count_params,
    encode_batch,
    encoder_fn,
    forward_fn,
    has_mlm_head,
    model_inputs,
    teacher_pooling,
)
from keras_distil.evaluation.metrics import (
    add_sums,
    agreement_sums,
    masked_lm_sums,
    neighbour_agreement,
    ratio,
    row_cosines,
    similarity_spearman,
    token_cosine_sums,
)
from keras_distil.evaluation.reference import add_copied_reference
from keras_distil.evaluation.report import REPORT_FORMAT
from keras_distil.evaluation.timing import median_latencies

EVAL_SEED = 1234  # the masking / order seed of held-out batches: the same positions for every model and run
MASK_FIELDS = ("mask_positions", "mask_ids", "mask_weights")  # what the MLM metrics read
MAX_TEXTS = 2000  # default cap on the texts of the pairwise embedding figures
EMBEDDING_MIN_LEN = 3  # default min_len when no model has an MLM head: [CLS] + one token + [SEP]


def _check_models(models: dict, teacher_name: str | None) -> None:
    if not models:
        raise ConfigError("evaluate: no model given")
    if teacher_name is not None and teacher_name not in models:
        raise ConfigError(f"evaluate: teacher {teacher_name!r} is not among the models ({', '.join(models)})")
    sizes = {name: getattr(getattr(m, "model_config", None), "vocab_size", None) for name, m in models.items()}
    known = {s for s in sizes.values() if s is not None}
    if len(known) > 1:
        raise ConfigError("evaluate: the models do not share a vocabulary (vocab_size "
                          + ", ".join(f"{n}={s}" for n, s in sizes.items()) + ")")


def _check_mask_fields(batch: dict, headed: list[str]) -> None:
    missing = [k for k in MASK_FIELDS if k not in batch]
    if headed and missing:
        verb = "has" if len(headed) == 1 else "have"
        raise ConfigError(f"evaluate: the batches have no {', '.join(missing)}, but {', '.join(headed)} {verb} "
                          "an MLM head; give masked batches (heldout_batches)")


class _EmbeddingComparison:
    """The clean-text side of an evaluation: sums of the cosines over all texts, embeddings of the first
    ``max_texts`` for the pairwise figures."""

    def __init__(self, models: dict, teacher_name: str, max_texts: int, encoders: dict):
        self.models, self.teacher_name, self.max_texts = models, teacher_name, max_texts
        self.pooling = teacher_pooling(models[teacher_name])
        self.encoders = {}  # one compiled encoder per model object (a model listed twice runs once)
        for name, model in models.items():
            self.encoders.setdefault(id(model), encoders[name])
        self.sums = {name: {} for name in models if name != teacher_name}
        self.widths_differ: set[str] = set()
        self.kept = {name: [] for name in models}
        self.texts = 0

    def add(self, batch: dict) -> None:
        inputs = clean_inputs(batch)
        padding = np.asarray(batch["padding_mask"])
        rows = padding.any(axis=1)
        encoded = {key: encode_batch(encoder, inputs, self.pooling) for key, encoder in self.encoders.items()}
        t_hidden, t_emb = encoded[id(self.models[self.teacher_name])]
        keep = np.flatnonzero(rows)[:max(0, self.max_texts - self.texts)]
        for name, model in self.models.items():
            hidden, emb = encoded[id(model)]
            self.kept[name].append(emb[keep])  # pairwise similarities compare within a model: any width
            if hidden.shape[-1] != t_hidden.shape[-1]:
                self.widths_differ.add(name)  # no cosine between vectors of different widths
                continue
            if name != self.teacher_name:
                add_sums(self.sums[name], {**token_cosine_sums(t_hidden, hidden, padding),
                                           "sequences": float(rows.sum()),
                                           "sentence_cos": float(row_cosines(emb[rows], t_emb[rows]).sum())})
        self.texts += len(keep)

    def figures(self, name: str) -> dict:
        sums = self.sums[name]
        result = {"hidden_cosine": ratio(sums.get("hidden_cos"), sums.get("tokens")),
                  "sentence_cosine": ratio(sums.get("sentence_cos"), sums.get("sequences")),
                  "similarity_spearman": None, "neighbour_agreement": None}
        if self.kept[name]:
            model, teacher = np.concatenate(self.kept[name]), np.concatenate(self.kept[self.teacher_name])
            result["similarity_spearman"] = similarity_spearman(model, teacher)
            result["neighbour_agreement"] = neighbour_agreement(model, teacher)
        return result

    def data(self) -> dict:
        return {"texts": self.texts, "pooling": {**self.pooling.to_dict(), "source": (
            "teacher" if getattr(self.models[self.teacher_name], "pooling", None) else "default")}}


def evaluate_models(models: dict, dataset, teacher_name: str | None = None, max_batches: int | None = None,
                    latency_runs: int = 10, max_texts: int = MAX_TEXTS) -> dict:
    """Evaluate ``models`` against ``teacher_name`` on held-out batches; returns a JSON-able report.

    The masked-LM figures are taken on the batches as given (masked: :func:`heldout_batches`), the
    embedding figures on their clean text with the teacher's pooling (listed in :mod:`keras_distil.evaluation`).

    Args:
      models: name -> BertMLM-like model, with or without an MLM head (a model may be listed twice).
      dataset: a ``tf.data.Dataset`` or an iterable of batch dicts; they need the mask fields when a
        model has an MLM head, and are clean text when they have none.
      teacher_name: the model the others are compared with (None: no ``vs_teacher``).
      max_batches: evaluate at most this many batches.
      latency_runs: timed forwards per model; 0 skips timing.
      max_texts: the texts of the pairwise embedding figures (the first ones); 0 turns them off.

    Example:
    >>> report = evaluate_models({"teacher": teacher, "student": student},  # doctest: +SKIP
    ...                          heldout_batches("heldout.txt", tokenizer), "teacher")
    >>> report["models"]["student"]["vs_teacher"]["similarity_spearman"]  # doctest: +SKIP
    0.93
    """
    _check_models(models, teacher_name)
    headed = [name for name, model in models.items() if has_mlm_head(model)]
    mlm_forwards = {name: forward_fn(models[name]) for name in headed}
    encoders = {name: encoder_fn(model) for name, model in models.items()}
    embedding = _EmbeddingComparison(models, teacher_name, max_texts, encoders) if teacher_name is not None else None
    mlm = {name: {} for name in headed}
    versus = {name: {} for name in models if name != teacher_name}
    batches = sequences = 0
    masked_tokens = 0.0
    first = None
    for batch in dataset:
        if max_batches is not None and batches >= max_batches:
            break
        batch = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
        _check_mask_fields(batch, headed)
        first = first if first is not None else batch
        sequences += int(tf.reduce_sum(tf.cast(tf.reduce_any(tf.cast(batch["padding_mask"], tf.bool), axis=1), tf.int32)))
        if "mask_weights" in batch:
            masked_tokens += float(tf.reduce_sum(tf.cast(batch["mask_weights"], tf.float32)))
        inputs = model_inputs(batch)
        outputs = {name: mlm_forwards[name](inputs) for name in headed}
        for name, out in outputs.items():
            add_sums(mlm[name], masked_lm_sums(out["logits"], batch["mask_ids"], batch["mask_weights"]))
        if embedding is not None:
            for name in versus:
                if name in outputs and teacher_name in outputs:
                    add_sums(versus[name], agreement_sums(outputs[teacher_name]["logits"], outputs[name]["logits"],
                                                          batch["mask_weights"]))
            embedding.add(batch)
        batches += 1
    if first is None:
        raise ConfigError("evaluate: the evaluation data yielded no batch")
    latency, timed = {}, None
    if latency_runs > 0:
        # Like with like: the MLM forward when every model has one, else the encoder of every model.
        timed = "masked_lm" if len(headed) == len(models) else "encoder"
        latency = (median_latencies(mlm_forwards, first, latency_runs) if timed == "masked_lm"
                   else median_latencies(encoders, clean_inputs(first), latency_runs))
    report = {"format": REPORT_FORMAT, "teacher": teacher_name, "models": {},
              "data": {"batches": batches, "sequences": sequences, "masked_tokens": int(masked_tokens),
                       **(embedding.data() if embedding is not None else {"texts": None, "pooling": None}),
                       "latency_forward": timed}}
    for name, model in models.items():
        sums = mlm.get(name, {})
        nll = ratio(sums.get("nll"), sums.get("weight"))
        report["models"][name] = {
            "params": count_params(model),
            "mlm_head": name in mlm,
            "masked_lm_accuracy": ratio(sums.get("correct"), sums.get("weight")),
            "nll": nll,
            "perplexity": math.exp(nll) if nll is not None else None,
            "latency_s": latency.get(name),
        }
    if embedding is not None:
        teacher = report["models"][teacher_name]
        for name, sums in versus.items():
            entry = report["models"][name]
            weight = mlm.get(name, {}).get("weight")
            entry["vs_teacher"] = {
                "top1_agreement": ratio(sums.get("agree"), weight),
                "kl": ratio(sums.get("kl"), weight),
                **embedding.figures(name),
                "accuracy_retention": ratio(entry["masked_lm_accuracy"], teacher["masked_lm_accuracy"]),
                "perplexity_ratio": ratio(entry["perplexity"], teacher["perplexity"]),
                "speedup": ratio(teacher["latency_s"], entry["latency_s"]),
                "param_ratio": ratio(entry["params"], teacher["params"]),
            }
    return report


def heldout_batches(sources, tokenizer, data_config: DataConfig | None = None, seed: int = EVAL_SEED,
                    masking: str | None = None):
    """Held-out batches, the same on every call: the training pipeline with one pass, a fixed seed,
    uniform masking (``mlm_smoothing=0``) and partial batches kept.

    ``masking``: "mlm" (masked batches for the masked-LM figures) or "none" (clean text only, for models
    without an MLM head); None: ``data_config.masking``, whose "auto" masks."""
    from keras_distil.data.pipeline import build_training_dataset

    config = (data_config or DataConfig()).replace(seed=seed, mlm_smoothing=0.0)
    if masking is not None:
        config = config.replace(masking=masking)
    return build_training_dataset(config, sources, tokenizer, repeat=False, drop_remainder=False)


def load_models(paths: dict[str, str]):
    """``(models, tokenizer settings)`` of checkpoints by name (``load_teacher``: HF folder, KerasHub preset
    or .keras; encoder-only checkpoints load without a head); the tokenizer is the first checkpoint's that
    carries one (None when none does)."""
    from keras_distil.models.checkpoint_formats import load_teacher

    models, tokenizer = {}, None
    for name, path in paths.items():
        loaded = load_teacher(path, require_mlm_head=False)
        models[name] = loaded.model
        tokenizer = tokenizer or loaded.tokenizer
    return models, tokenizer


def make_tokenizer(settings=None, vocab_file: str | None = None, lowercase: bool = True):
    """A WordPieceTokenizer from ``vocab_file`` when given, else from checkpoint tokenizer settings."""
    from keras_distil.data.tokenize import WordPieceTokenizer

    if vocab_file:
        return WordPieceTokenizer.from_vocab_file(vocab_file, lowercase=lowercase)
    if settings is None:
        raise ConfigError("evaluate: no checkpoint carries a vocabulary (a .keras file of a BertMLM); pass --vocab")
    return WordPieceTokenizer.from_settings(settings)


def evaluate_checkpoints(paths: dict[str, str], data, teacher_name: str | None = None, vocab_file: str | None = None,
                         lowercase: bool = True, max_len: int = 128, batch_size: int = 32,
                         max_batches: int | None = None, latency_runs: int = 10, seed: int = EVAL_SEED,
                         max_texts: int = MAX_TEXTS, copied_layers=None, min_len: int | None = None) -> dict:
    """:func:`evaluate_models` on checkpoints by name and held-out text (file paths, prepared folders or
    ``tfds:`` names); the teacher's checkpoint (listed first) provides the tokenizer unless ``vocab_file``.

    ``copied_layers``: the reference row (:func:`add_copied_reference`): None chooses, "none" turns it
    off, a list of teacher layers forces it. ``min_len``: shorter sequences are dropped; None: the
    training default (12) when a model has an MLM head, else 3 (short sentences are embedding inputs)."""
    if teacher_name is not None and teacher_name in paths:
        paths = {teacher_name: paths[teacher_name], **paths}
    models, settings = load_models(paths)
    models, reference = add_copied_reference(models, teacher_name, copied_layers, paths)
    tokenizer = make_tokenizer(settings, vocab_file, lowercase)
    for name, model in models.items():  # the check distill makes: one vocabulary for every model
        size = getattr(getattr(model, "model_config", None), "vocab_size", None)
        if size is not None and size != tokenizer.vocab_size:
            raise ConfigError(f"evaluate --vocab: {tokenizer.vocab_file or 'the vocabulary'} has "
                              f"{tokenizer.vocab_size} tokens, but {paths.get(name, name)} has {size}; give the "
                              "vocabulary the models were trained with")
    headed = any(has_mlm_head(m) for m in models.values())
    if min_len is None:
        min_len = min(DataConfig().min_len if headed else EMBEDDING_MIN_LEN, max_len)
    if not 1 <= min_len <= max_len:
        raise ConfigError(f"evaluate --min-len: {min_len}; give an integer in [1, --max-len={max_len}]")
    data_config = DataConfig(max_len=max_len, min_len=min_len, batch_size=batch_size,
                             lowercase=tokenizer.lowercase, strip_accents=tokenizer.strip_accents)
    dataset = heldout_batches(data, tokenizer, data_config, seed, masking="mlm" if headed else "none")
    report = evaluate_models(models, dataset, teacher_name, max_batches=max_batches, latency_runs=latency_runs,
                             max_texts=max_texts)
    if reference is not None:
        report["models"][reference["name"]]["copied_layers"] = reference["layers"]
    report["data"].update({"sources": [data] if isinstance(data, str) else list(data), "seed": seed,
                           "max_len": max_len, "min_len": data_config.min_len, "batch_size": batch_size,
                           "vocab_file": tokenizer.vocab_file, "copied_reference": reference})
    return report
