"""``keras-distil evaluate``: how good a masked-LM or encoder-only model is on held-out text, and how
close to its teacher.

For every model, on the same masked batches:

* ``mlm_head``: whether the model has a masked-LM head (encoder-only / sentence-embedding checkpoints,
  e.g. a Hugging Face ``BertModel`` folder, have none);
* ``masked_lm_accuracy``: top-1 accuracy at the masked positions, weighted by ``mask_weights``;
* ``perplexity``: ``exp`` of the mean negative log-likelihood of the true tokens there (``nll``);
* ``params``: number of weights; ``latency_s``: median seconds per batch of a ``tf.function`` forward
  over ``latency_runs`` runs on the first batch, after a warm-up, the models taking turns within each run.
  The forward timed is the MLM one (logits at the masked positions) when every model has a head, else
  the encoder alone (last hidden states) for every model, so that ``speedup`` compares the same work.

With a teacher, every other model also gets ``vs_teacher``:

* ``top1_agreement``: fraction of masked positions where both predict the same token;
* ``kl``: mean ``KL(teacher || model)`` of the output distributions at the masked positions, T = 1;
* ``hidden_cosine``: mean over non-pad tokens of ``cos(h_teacher, h_model)`` (last hidden states);
* ``sentence_cosine``: mean over sequences of the cosine of the mean-pooled (non-pad) hidden states;
* ``accuracy_retention`` (model accuracy / teacher's), ``perplexity_ratio``, ``speedup`` (teacher
  latency / model's) and ``param_ratio`` (model params / teacher's).

Encoder-only models: the masked-LM fields of a model without a head (``masked_lm_accuracy``, ``nll``,
``perplexity``) are null, and so are ``top1_agreement``, ``kl``, ``accuracy_retention`` and
``perplexity_ratio`` whenever the model or the teacher lacks a head; the cosines are still reported.
Every null prints as ``-`` in the table. The cosines need equal widths; they are null otherwise.

Which inputs the embeddings (hidden states, hence the cosines) are computed on, ``embedding_inputs``:

* ``"unmasked"``: the token ids before masking, recovered from the batch itself (``mask_ids`` written
  back at the used ``mask_positions``; see :func:`unmasked_token_ids`). Sentence embeddings are used on
  clean text, and ~15 % [MASK]/random tokens would measure the models on inputs they never see there.
* ``"masked"``: the masked inputs of the MLM forward, at no extra cost; these are also the inputs on
  which the distillation's cosine loss is trained.
* ``"auto"`` (default): ``"unmasked"`` when no model has an MLM head (an embedding-only evaluation),
  else ``"masked"``, which keeps one forward per model and the figures of masked-LM reports unchanged.

The choice is recorded as ``data.embedding_inputs``; ``data.latency_forward`` says which forward was
timed (``"masked_lm"`` or ``"encoder"``).

Masking is deterministic: the held-out batches are built by the training pipeline with a fixed seed,
uniform masking (no frequency smoothing) and no shuffling across runs, so every model and every run
sees the same positions.

The JSON report (``--out``)::

    {"format": "keras-distil-evaluation", "teacher": NAME | null,
     "data": {"batches", "sequences", "masked_tokens", "embedding_inputs", "latency_forward",
              and from the command line: "sources", "seed", "max_len", "batch_size", "vocab_file"},
     "models": {NAME: {"params", "mlm_head", "masked_lm_accuracy", "nll", "perplexity", "latency_s",
                       "vs_teacher": {...}  (every model but the teacher, when there is one)}}}

``sequences`` counts the non-empty sequences of the ``batches`` and ``masked_tokens`` their masked slots
(what the masked-LM figures average over); figures that cannot be computed are null, never 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from keras_distil import losses
from keras_distil.config import ConfigError, DataConfig

logger = logging.getLogger("keras_distil.evaluate")

EVAL_SEED = 1234  # the masking / order seed of held-out batches: the same positions for every model and run
REPORT_FORMAT = "keras-distil-evaluation"
MASK_FIELDS = ("mask_positions", "mask_ids", "mask_weights")  # what the MLM metrics read
EMBEDDING_INPUTS = ("auto", "masked", "unmasked")  # the inputs of the cosines (module docstring)


# ---- per-batch sums (float64; divided once at the end) -----------------------------------------

def masked_lm_sums(logits, mask_ids, mask_weights) -> dict[str, float]:
    """``weight``, ``correct`` and ``nll`` summed over the masked slots of one batch ([B, P, V] logits)."""
    w = tf.cast(mask_weights, tf.float32)
    nll = losses.mlm_cross_entropy_per_token(mask_ids, logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(mask_ids, tf.int32)),
                      tf.float32)
    return {"weight": float(tf.reduce_sum(w)), "correct": float(tf.reduce_sum(correct * w)),
            "nll": float(tf.reduce_sum(nll * w))}


def agreement_sums(teacher_logits, model_logits, mask_weights) -> dict[str, float]:
    """``agree`` (same top-1 token) and ``kl`` (``KL(teacher || model)`` at T = 1) summed over masked slots."""
    w = tf.cast(mask_weights, tf.float32)
    same = tf.equal(tf.argmax(teacher_logits, axis=-1), tf.argmax(model_logits, axis=-1))
    kl = losses.soft_target_kl_per_token(model_logits, teacher_logits, 1.0)
    return {"agree": float(tf.reduce_sum(tf.cast(same, tf.float32) * w)), "kl": float(tf.reduce_sum(kl * w))}


def mean_pool(hidden, padding_mask):
    """Mean of the hidden states [B, L, H] over the non-pad tokens: [B, H]."""
    mask = tf.cast(padding_mask, tf.float32)[..., None]
    return tf.math.divide_no_nan(tf.reduce_sum(tf.cast(hidden, tf.float32) * mask, axis=1),
                                 tf.reduce_sum(mask, axis=1))


def cosine_sums(teacher_hidden, model_hidden, padding_mask) -> dict[str, float]:
    """``tokens`` / ``hidden_cos`` over non-pad tokens and ``sequences`` / ``sentence_cos`` per sequence."""
    padding = tf.cast(padding_mask, tf.float32)
    token_cos = 1.0 - losses.cosine_distance_per_token(model_hidden, teacher_hidden)
    sentence_cos = 1.0 - losses.cosine_distance_per_token(mean_pool(model_hidden, padding_mask),
                                                          mean_pool(teacher_hidden, padding_mask))
    has_tokens = tf.cast(tf.reduce_sum(padding, axis=1) > 0, tf.float32)
    return {"tokens": float(tf.reduce_sum(padding)), "hidden_cos": float(tf.reduce_sum(token_cos * padding)),
            "sequences": float(tf.reduce_sum(has_tokens)),
            "sentence_cos": float(tf.reduce_sum(sentence_cos * has_tokens))}


def _add(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value


def _ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``; None when either is missing (a model without a head, no timing) or ``den`` is 0."""
    if num is None or not den:
        return None
    return num / den


# ---- models ------------------------------------------------------------------------------------

def count_params(model) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.weights))


def has_mlm_head(model) -> bool:
    """False for an encoder-only BertMLM (``with_mlm_head=False``); models without the attribute have one."""
    return getattr(model, "with_mlm_head", True) is not False


def _inputs(batch) -> dict:
    keys = ("token_ids", "padding_mask", "segment_ids", "mask_positions")
    return {k: tf.convert_to_tensor(batch[k]) for k in keys if k in batch}


def unmasked_token_ids(batch):
    """The token ids of ``batch`` before masking: ``mask_ids`` written back at the used ``mask_positions``.

    ``mask_ids`` holds the original token of every selected slot, whether it became [MASK], a random
    token or stayed (80/10/10), so this recovers the clean sequences exactly. Without mask fields the
    batch is taken as clean already."""
    ids = tf.cast(batch["token_ids"], tf.int32)
    if "mask_positions" not in batch:
        return ids
    positions = tf.cast(batch["mask_positions"], tf.int32)
    used = tf.cast(batch["mask_weights"], tf.float32) > 0
    rows = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(positions))
    where = tf.boolean_mask(tf.stack([rows, positions], axis=-1), used)
    return tf.tensor_scatter_nd_update(ids, where, tf.boolean_mask(tf.cast(batch["mask_ids"], tf.int32), used))


def embedding_inputs_of(batch, mode: str) -> dict:
    """The encoder inputs the hidden states are compared on: the batch's (``"masked"``) or its token ids
    before masking (``"unmasked"``); no ``mask_positions`` either way (the head is not run)."""
    inputs = {k: v for k, v in _inputs(batch).items() if k != "mask_positions"}
    if mode == "unmasked":
        inputs["token_ids"] = unmasked_token_ids(batch)
    return inputs


def forward_fn(model):
    """A compiled inference forward: the batch dict -> the model's outputs (logits at mask_positions)."""
    return tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)


def encoder_fn(model):
    """A compiled forward of the encoder alone (``hidden`` and ``pooled``; a head, if any, is skipped)."""
    if not has_mlm_head(model):
        return forward_fn(model)
    return tf.function(lambda inputs: model(inputs, training=False, return_logits=False), reduce_retracing=True)


def median_latencies(forwards: dict, batch, runs: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median wall seconds of each ``forwards[name](batch)`` over ``runs``, after ``warmup`` untimed calls.

    The models take turns within every run, so a machine whose load changes during the measurement
    slows them all alike and the speed ratios stay meaningful."""
    inputs = _inputs(batch)

    def call(forward):
        tf.nest.map_structure(lambda t: t.numpy(), forward(inputs))

    for _ in range(warmup):
        for forward in forwards.values():
            call(forward)
    times = {name: [] for name in forwards}
    for _ in range(runs):
        for name, forward in forwards.items():
            start = time.perf_counter()
            call(forward)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


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


def evaluate_models(models: dict, dataset, teacher_name: str | None = None, max_batches: int | None = None,
                    latency_runs: int = 10, embedding_inputs: str = "auto") -> dict:
    """Evaluate ``models`` (name -> BertMLM-like model, with or without an MLM head) on the masked batches
    of ``dataset`` (a ``tf.data.Dataset`` or an iterable of batch dicts); returns a JSON-able report
    (module docstring).

    ``teacher_name``: the model the others are compared with; ``latency_runs`` 0 skips timing;
    ``embedding_inputs``: "auto", "masked" or "unmasked", the inputs of the cosines (module docstring).
    """
    _check_models(models, teacher_name)
    if embedding_inputs not in EMBEDDING_INPUTS:
        raise ConfigError(f"evaluate: embedding_inputs={embedding_inputs!r}; accepted: {', '.join(EMBEDDING_INPUTS)}")
    headed = [name for name, model in models.items() if has_mlm_head(model)]
    mode = embedding_inputs if embedding_inputs != "auto" else ("masked" if headed else "unmasked")
    mlm_forwards = {name: forward_fn(models[name]) for name in headed}
    encoders = {name: encoder_fn(model) for name, model in models.items()}
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
        inputs = _inputs(batch)
        outputs = {name: mlm_forwards[name](inputs) for name in headed}
        for name, out in outputs.items():
            _add(mlm[name], masked_lm_sums(out["logits"], batch["mask_ids"], batch["mask_weights"]))
        if teacher_name is not None:
            clean = embedding_inputs_of(batch, mode)
            hidden = {name: outputs[name]["hidden"] if mode == "masked" and name in outputs
                      else encoders[name](clean)["hidden"] for name in models}
            t_hidden = hidden[teacher_name]
            for name in versus:
                if name in outputs and teacher_name in outputs:
                    _add(versus[name], agreement_sums(outputs[teacher_name]["logits"], outputs[name]["logits"],
                                                      batch["mask_weights"]))
                if hidden[name].shape[-1] == t_hidden.shape[-1]:
                    _add(versus[name], cosine_sums(t_hidden, hidden[name], batch["padding_mask"]))
        batches += 1
    if first is None:
        raise ConfigError("evaluate: the evaluation data yielded no batch")
    latency, timed = {}, None
    if latency_runs > 0:
        # Like with like: the MLM forward when every model has one, else the encoder of every model.
        timed = "masked_lm" if len(headed) == len(models) else "encoder"
        latency = (median_latencies(mlm_forwards, first, latency_runs) if timed == "masked_lm"
                   else median_latencies(encoders, embedding_inputs_of(first, mode), latency_runs))
    report = {"format": REPORT_FORMAT, "teacher": teacher_name, "models": {},
              "data": {"batches": batches, "sequences": sequences, "masked_tokens": int(masked_tokens),
                       "embedding_inputs": mode, "latency_forward": timed}}
    for name, model in models.items():
        sums = mlm.get(name, {})
        nll = _ratio(sums.get("nll"), sums.get("weight"))
        report["models"][name] = {
            "params": count_params(model),
            "mlm_head": name in mlm,
            "masked_lm_accuracy": _ratio(sums.get("correct"), sums.get("weight")),
            "nll": nll,
            "perplexity": math.exp(nll) if nll is not None else None,
            "latency_s": latency.get(name),
        }
    if teacher_name is not None:
        teacher = report["models"][teacher_name]
        for name, sums in versus.items():
            entry = report["models"][name]
            weight = mlm.get(name, {}).get("weight")
            entry["vs_teacher"] = {
                "top1_agreement": _ratio(sums.get("agree"), weight),
                "kl": _ratio(sums.get("kl"), weight),
                "hidden_cosine": _ratio(sums.get("hidden_cos"), sums.get("tokens")),
                "sentence_cosine": _ratio(sums.get("sentence_cos"), sums.get("sequences")),
                "accuracy_retention": _ratio(entry["masked_lm_accuracy"], teacher["masked_lm_accuracy"]),
                "perplexity_ratio": _ratio(entry["perplexity"], teacher["perplexity"]),
                "speedup": _ratio(teacher["latency_s"], entry["latency_s"]),
                "param_ratio": _ratio(entry["params"], teacher["params"]),
            }
    return report


# ---- held-out batches --------------------------------------------------------------------------

def heldout_batches(sources, tokenizer, data_config: DataConfig | None = None, seed: int = EVAL_SEED):
    """Masked batches of held-out text, the same on every call: the training pipeline with one pass, a
    fixed seed, uniform masking (``mlm_smoothing=0``) and partial batches kept."""
    from keras_distil.data.pipeline import build_training_dataset

    config = (data_config or DataConfig()).replace(seed=seed, mlm_smoothing=0.0)
    return build_training_dataset(config, sources, tokenizer, repeat=False, drop_remainder=False)


# ---- command line ------------------------------------------------------------------------------

def _named(spec: str, default: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare PATH is named ``default``."""
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec):
        return name, path
    return default, spec


def load_models(paths: dict[str, str]):
    """``(models, tokenizer settings)`` of checkpoints by name (``load_teacher``: HF folder, KerasHub preset
    or .keras; encoder-only checkpoints load without a head); the tokenizer is the first checkpoint's that
    carries one (None when none does)."""
    from keras_distil.models.checkpoints import load_teacher

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
    return WordPieceTokenizer(list(settings.vocab), settings.lowercase, settings.strip_accents,
                              vocab_file=settings.vocab_file)


def evaluate_checkpoints(paths: dict[str, str], data, teacher_name: str | None = None, vocab_file: str | None = None,
                         lowercase: bool = True, max_len: int = 128, batch_size: int = 32,
                         max_batches: int | None = None, latency_runs: int = 10, seed: int = EVAL_SEED,
                         embedding_inputs: str = "auto") -> dict:
    """:func:`evaluate_models` on checkpoints by name and held-out text (file paths, prepared folders or
    ``tfds:`` names); the teacher's checkpoint (listed first) provides the tokenizer unless ``vocab_file``."""
    if teacher_name is not None and teacher_name in paths:
        paths = {teacher_name: paths[teacher_name], **paths}
    models, settings = load_models(paths)
    tokenizer = make_tokenizer(settings, vocab_file, lowercase)
    data_config = DataConfig(max_len=max_len, batch_size=batch_size, lowercase=tokenizer.lowercase,
                             strip_accents=tokenizer.strip_accents)
    report = evaluate_models(models, heldout_batches(data, tokenizer, data_config, seed), teacher_name,
                             max_batches=max_batches, latency_runs=latency_runs, embedding_inputs=embedding_inputs)
    report["data"].update({"sources": [data] if isinstance(data, str) else list(data), "seed": seed,
                           "max_len": max_len, "batch_size": batch_size, "vocab_file": tokenizer.vocab_file})
    return report


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate --model PATH [--teacher PATH] --data PATH ...`` on argparse ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate", help="masked-token accuracy / perplexity on held-out text, teacher-student agreement, "
                         "embedding cosines",
        description="Evaluate masked-LM and encoder-only models on held-out text with deterministic masking. "
                    "Models are Hugging Face folders, KerasHub presets or .keras files; give several --model "
                    "NAME=PATH to compare. Models without an MLM head get '-' for the masked-LM figures and are "
                    "compared with the teacher by hidden-state and mean-pooled sentence cosines.")
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                        help="model to evaluate; repeatable")
    parser.add_argument("--teacher", metavar="[NAME=]PATH", help="teacher: the others are compared with it")
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="held-out text (one document per line), a prepared folder or tfds:NAME; repeatable")
    parser.add_argument("--vocab", metavar="VOCAB.txt",
                        help="WordPiece vocabulary (default: the teacher's, else the model's)")
    parser.add_argument("--no-lowercase", action="store_true", help="with --vocab: a cased vocabulary")
    parser.add_argument("--max-len", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per batch (default 32)")
    parser.add_argument("--max-batches", type=int, default=None, help="evaluate at most this many batches")
    parser.add_argument("--latency-runs", type=int, default=10, help="timed forwards per model (0: no timing)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help=f"masking seed (default {EVAL_SEED})")
    parser.add_argument("--embedding-inputs", choices=EMBEDDING_INPUTS, default="auto",
                        help="inputs of the cosines: the masked batches, the text before masking, or auto "
                             "(unmasked when no model has an MLM head; default)")
    parser.add_argument("--out", metavar="REPORT.json", help="also write the report here (atomically)")
    parser.set_defaults(func=run_evaluate)
    return parser


def format_report(report: dict) -> str:
    """A plain-text table of the report; a null figure (no head, no teacher, no timing) prints as ``-``."""
    rows = [("model", "params", "MLM acc", "ppl", "ms/batch", "agree", "KL", "cos", "sent cos", "retention",
             "speedup")]

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for name, m in report["models"].items():
        v = m.get("vs_teacher", {})
        rows.append((name, f"{m['params']:,}", fmt(m["masked_lm_accuracy"], ".4f"), fmt(m["perplexity"], ".2f"),
                     fmt(None if m["latency_s"] is None else 1000 * m["latency_s"], ".1f"),
                     fmt(v.get("top1_agreement"), ".4f"), fmt(v.get("kl"), ".4f"), fmt(v.get("hidden_cosine"), ".4f"),
                     fmt(v.get("sentence_cosine"), ".4f"), fmt(v.get("accuracy_retention"), ".3f"), fmt(v.get("speedup"), ".2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def run_evaluate(args: argparse.Namespace) -> int:
    from keras_distil.data.base import atomic_write_json

    specs = ([_named(args.teacher, "teacher")] if args.teacher else []) + [
        _named(spec, "model" if len(args.model) == 1 else f"model{i + 1}") for i, spec in enumerate(args.model)]
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluate: model names must differ, got {', '.join(names)} (use --model NAME=PATH)")
    report = evaluate_checkpoints(dict(specs), args.data, specs[0][0] if args.teacher else None, args.vocab,
                                  not args.no_lowercase, args.max_len, args.batch_size, args.max_batches,
                                  args.latency_runs, args.seed, args.embedding_inputs)
    print(format_report(report))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"report: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.evaluate ...`` until the CLI registers the command."""
    parser = argparse.ArgumentParser(prog="keras-distil")
    sub = parser.add_subparsers(dest="command", required=True)
    add_evaluate_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
