"""``keras-distil evaluate``: how good a masked-LM or sentence-embedding model is on held-out text, and how
close to its teacher.

Masked-LM figures, for every model with an MLM head, on the same masked batches (deterministic masks):

* ``mlm_head``: whether the model has a masked-LM head (encoder-only / sentence-embedding checkpoints,
  e.g. a Hugging Face ``BertModel`` folder, have none);
* ``masked_lm_accuracy``: top-1 accuracy at the masked positions, weighted by ``mask_weights``;
* ``perplexity``: ``exp`` of the mean negative log-likelihood of the true tokens there (``nll``);
* ``params``: number of weights; ``latency_s``: median seconds per batch of a ``tf.function`` forward
  over ``latency_runs`` runs on the first batch, after a warm-up, the models taking turns within each run.
  The forward timed is the MLM one (logits at the masked positions) when every model has a head, else
  the encoder alone (last hidden states, on the clean text) for every model, so that ``speedup`` compares
  the same work.

With a teacher, every other model also gets ``vs_teacher``. At the masked positions (both need a head):

* ``top1_agreement``: fraction of masked positions where both predict the same token;
* ``kl``: mean ``KL(teacher || model)`` of the output distributions at the masked positions, T = 1.

On the clean text (the token ids before masking, :func:`clean_inputs`), always, whatever the heads: a
sentence encoder is used on clean text, and ~15 % [MASK]/random tokens would measure it on inputs it
never sees there. The sentence embedding of a text is the teacher's pooling (``teacher.pooling``, read from
its sentence-transformers files; mean over the real tokens when it has none) of the last hidden states:

* ``hidden_cosine``: mean over non-pad tokens of ``cos(h_teacher, h_model)`` (last hidden states);
* ``sentence_cosine``: mean over the texts of ``cos(e_model, e_teacher)``;
* ``similarity_spearman``: Spearman's rank correlation between the cosine similarities of all pairs of
  texts under the model and under the teacher (:func:`similarity_spearman`): does the model rank pairs
  of texts as similar or dissimilar as the teacher does, the question of semantic search and clustering;
* ``neighbour_agreement``: the share of texts whose nearest other text is the same under both
  (:func:`neighbour_agreement`).

A text is one held-out sequence: a document (line) longer than ``max_len`` tokens is split into several,
and ``min_len`` drops short ones (the CLI keeps sequences of 3 tokens and more when no model has an MLM
head). The two pairwise figures use the first ``max_texts`` texts (``data.texts``; an N x N similarity
matrix, in float32 numpy and in row chunks); ``hidden_cosine`` and ``sentence_cosine`` use them all. The
embedding figures need the teacher's width; they are null otherwise.

The rest of ``vs_teacher``: ``accuracy_retention`` (model accuracy / teacher's), ``perplexity_ratio``,
``speedup`` (teacher latency / model's) and ``param_ratio`` (model params / teacher's).

Encoder-only models: the masked-LM fields of a model without a head (``masked_lm_accuracy``, ``nll``,
``perplexity``) are null, and so are ``top1_agreement``, ``kl``, ``accuracy_retention`` and
``perplexity_ratio`` whenever the model or the teacher lacks a head. Figures that cannot be computed are
null, never 0; every null prints as ``-`` in the table.

The reference row (:func:`add_copied_reference`, on by default in the CLI): the untrained student made by
copying teacher layers (``build_student(teacher, layers)``, DistilBERT's initialisation), so that a
report shows what distillation added to where the student started.

Masking is deterministic: the held-out batches are built by the training pipeline with a fixed seed,
uniform masking (no frequency smoothing) and no shuffling across runs, so every model and every run
sees the same positions. When no model has an MLM head the batches are not masked at all.

The JSON report (``--out``)::

    {"format": "keras-distil-evaluation", "teacher": NAME | null,
     "data": {"batches", "sequences", "masked_tokens", "texts", "pooling", "latency_forward",
              and from the command line: "sources", "seed", "max_len", "min_len", "batch_size",
              "vocab_file", "copied_reference"},
     "models": {NAME: {"params", "mlm_head", "masked_lm_accuracy", "nll", "perplexity", "latency_s",
                       "vs_teacher": {...}  (every model but the teacher, when there is one),
                       "copied_layers": [...]  (the reference row only)}}}

``sequences`` counts the non-empty sequences of the ``batches`` (the texts the cosines average over) and
``masked_tokens`` their masked slots (what the masked-LM figures average over); ``texts`` is the number of
texts of the pairwise figures (null without a teacher); ``pooling`` is the pooling of the sentence
embeddings (``mode``, ``normalize``, ``max_seq_length``, and ``source``: "teacher" or "default"; null
without a teacher); ``latency_forward`` says which forward was timed (``"masked_lm"``, ``"encoder"`` or
null); ``copied_reference`` is ``{"name", "layers", "source", "like"}`` of the reference row, or null.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from keras_distil import losses
from keras_distil.config import ConfigError, DataConfig
from keras_distil.models.pooling import SentencePooling, pool_hidden_states

logger = logging.getLogger("keras_distil.evaluate")

EVAL_SEED = 1234  # the masking / order seed of held-out batches: the same positions for every model and run
REPORT_FORMAT = "keras-distil-evaluation"
MASK_FIELDS = ("mask_positions", "mask_ids", "mask_weights")  # what the MLM metrics read
MAX_TEXTS = 2000  # default cap on the texts of the pairwise embedding figures
COPIED_NAME = "copied (untrained)"  # the reference row: the student before distillation
EMBEDDING_MIN_LEN = 3  # default min_len when no model has an MLM head: [CLS] + one token + [SEP]
_CHUNK_FLOATS = 1 << 24  # float32 entries of one block of a similarity matrix (64 MiB)


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


def row_cosines(a, b) -> np.ndarray:
    """``cos(a[..., :], b[..., :])`` along the last axis, in float64: ``dot / sqrt(|a|^2 |b|^2)``.

    Equal rows give exactly 1.0 and a zero row gives 0 (no NaN).

    Args:
      a, b: arrays of the same shape ``[..., H]``.

    Example:
    >>> row_cosines([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 3.0]]).round(4).tolist()
    [1.0, 0.7071]
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    dot = np.sum(a * b, axis=-1)
    den = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    return np.clip(np.divide(dot, den, out=np.zeros_like(dot), where=den > 0), -1.0, 1.0)


def token_cosine_sums(teacher_hidden, model_hidden, padding_mask) -> dict[str, float]:
    """``tokens`` and ``hidden_cos`` (the sum of ``cos(h_teacher, h_model)``) over the non-pad tokens."""
    real = np.asarray(padding_mask) > 0
    cos = row_cosines(np.asarray(model_hidden)[real], np.asarray(teacher_hidden)[real])
    return {"tokens": float(real.sum()), "hidden_cos": float(cos.sum())}


def cosine_sums(teacher_hidden, model_hidden, padding_mask, pooling: SentencePooling | None = None
                ) -> dict[str, float]:
    """``tokens`` / ``hidden_cos`` over non-pad tokens and ``sequences`` / ``sentence_cos`` over the
    non-empty sequences, their sentence embeddings pooled with ``pooling`` (default: mean)."""
    pooling = pooling or SentencePooling()
    rows = np.asarray(padding_mask).any(axis=1)
    e_t = pool_hidden_states(teacher_hidden, padding_mask, pooling).numpy()[rows]
    e_m = pool_hidden_states(model_hidden, padding_mask, pooling).numpy()[rows]
    return {**token_cosine_sums(teacher_hidden, model_hidden, padding_mask),
            "sequences": float(rows.sum()), "sentence_cos": float(row_cosines(e_m, e_t).sum())}


def _add(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value


def _ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``; None when either is missing (a model without a head, no timing) or ``den`` is 0."""
    if num is None or not den:
        return None
    return num / den


# ---- pairwise embedding figures (numpy) --------------------------------------------------------

def _embedding_matrix(embeddings) -> np.ndarray:
    e = np.asarray(embeddings, np.float32)
    if e.ndim != 2:
        raise ValueError(f"embeddings: expected a [N, H] array, got shape {e.shape}")
    return e


def _unit_rows(embeddings) -> np.ndarray:
    e = _embedding_matrix(embeddings)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def _pairs_before(row: int, n: int) -> int:
    """How many pairs (i, j), i < j, have i < ``row``."""
    return row * (n - 1) - row * (row - 1) // 2


def _chunk_rows(n: int, chunk_rows: int | None) -> int:
    return max(1, chunk_rows or _CHUNK_FLOATS // max(n, 1))


def pairwise_cosines(embeddings, chunk_rows: int | None = None) -> np.ndarray:
    """The cosine similarities of all pairs of rows ``i < j``, in ``np.triu_indices(N, 1)`` order.

    The matrix is computed in float32, ``chunk_rows`` rows at a time (default: blocks of about 64 MiB),
    and only its upper triangle is kept.

    Args:
      embeddings: ``[N, H]`` array, one embedding per text.
      chunk_rows: rows of the similarity matrix per block; None: as many as fit 2**24 floats.

    Returns:
      float32 array of ``N (N - 1) / 2`` similarities.

    Example:
    >>> [round(float(c), 4) for c in pairwise_cosines([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])]
    [0.0, 0.7071, 0.7071]
    """
    unit = _unit_rows(embeddings)
    n = len(unit)
    out = np.empty(n * (n - 1) // 2, np.float32)
    step, cols = _chunk_rows(n, chunk_rows), np.arange(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = unit[start:stop] @ unit.T
        out[_pairs_before(start, n):_pairs_before(stop, n)] = block[cols[None, :] > np.arange(start, stop)[:, None]]
    return out


def average_ranks(values) -> np.ndarray:
    """1-based ranks of ``values`` (flattened), ties given the mean of their ranks (float64).

    Example:
    >>> average_ranks([0.3, 0.1, 0.3, 0.2]).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    x = np.asarray(values).ravel()
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    first = np.ones(len(x), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(x))
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # positions start..end-1 share the mean
    return ranks


def spearman_correlation(x, y) -> float | None:
    """Spearman's rank correlation of two equally long sequences (Pearson's of their average ranks).

    None when it is undefined: fewer than two values, a non-finite value, or a constant sequence.

    Example:
    >>> spearman_correlation([1, 2, 3, 4], [10, 20, 40, 30])
    0.8
    """
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    if len(x) != len(y):
        raise ValueError(f"spearman_correlation: lengths differ ({len(x)} and {len(y)})")
    if len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    sxx, syy = float(rx @ rx), float(ry @ ry)
    if sxx == 0 or syy == 0:
        return None
    return float(np.clip(float(rx @ ry) / math.sqrt(sxx * syy), -1.0, 1.0))


def _check_pair(model_embeddings, teacher_embeddings) -> tuple[np.ndarray, np.ndarray]:
    m, t = _embedding_matrix(model_embeddings), _embedding_matrix(teacher_embeddings)
    if len(m) != len(t):
        raise ValueError(f"embeddings: {len(m)} model rows and {len(t)} teacher rows; give one row per text to both")
    return m, t


def similarity_spearman(model_embeddings, teacher_embeddings, chunk_rows: int | None = None) -> float | None:
    """Spearman's correlation between the pairwise cosine similarities of the same texts under two models.

    The upper triangles (pairs ``i < j``) of both ``N x N`` cosine-similarity matrices are ranked (ties
    averaged) and correlated: 1 when the model orders every pair of texts as the teacher does. Ties are
    equal float32 similarities: rounding can split similarities that are equal in exact arithmetic
    (duplicate texts), which moves the figure by about 1e-4.

    Args:
      model_embeddings, teacher_embeddings: ``[N, H_model]`` and ``[N, H_teacher]``, row ``i`` the same
        text in both (the widths may differ).
      chunk_rows: see :func:`pairwise_cosines`.

    Returns:
      The correlation, or None with fewer than 3 texts or constant similarities.

    Example:
    >>> teacher = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]])
    >>> similarity_spearman(teacher * 2, teacher)  # scale does not change cosines
    1.0
    >>> round(similarity_spearman(teacher[:, ::-1] + [0.3, 0.0], teacher), 4)
    0.8986
    """
    m, t = _check_pair(model_embeddings, teacher_embeddings)
    if len(m) < 3:
        return None
    return spearman_correlation(pairwise_cosines(m, chunk_rows), pairwise_cosines(t, chunk_rows))


def nearest_neighbours(embeddings, chunk_rows: int | None = None) -> np.ndarray:
    """For every row, the index of the most cosine-similar other row (the first one on ties).

    Example:
    >>> nearest_neighbours([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]).tolist()
    [1, 0, 1]
    """
    unit = _unit_rows(embeddings)
    n = len(unit)
    out = np.empty(n, np.int64)
    step = _chunk_rows(n, chunk_rows)
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = unit[start:stop] @ unit.T
        block[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not itself
        out[start:stop] = np.argmax(block, axis=1)
    return out


def neighbour_agreement(model_embeddings, teacher_embeddings, chunk_rows: int | None = None) -> float | None:
    """The share of texts whose nearest other text (by cosine) is the same under the model and the teacher.

    Args:
      model_embeddings, teacher_embeddings: ``[N, H_model]`` and ``[N, H_teacher]``, row ``i`` the same
        text in both.
      chunk_rows: see :func:`pairwise_cosines`.

    Returns:
      A share in [0, 1], or None with fewer than 3 texts (two texts are always each other's neighbour).
      Duplicate texts make near ties, hence an arbitrary neighbour: deduplicate held-out text.

    Example:
    >>> teacher = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]  # neighbours 1, 0, 1
    >>> model = [[1.0, 0.0], [0.0, 1.0], [0.1, 0.9]]    # neighbours 2, 2, 1
    >>> round(neighbour_agreement(model, teacher), 4)
    0.3333
    """
    m, t = _check_pair(model_embeddings, teacher_embeddings)
    if len(m) < 3:
        return None
    return float(np.mean(nearest_neighbours(m, chunk_rows) == nearest_neighbours(t, chunk_rows)))


# ---- models ------------------------------------------------------------------------------------

def count_params(model) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.weights))


def has_mlm_head(model) -> bool:
    """False for an encoder-only BertMLM (``with_mlm_head=False``); models without the attribute have one."""
    return getattr(model, "with_mlm_head", True) is not False


def teacher_pooling(teacher) -> SentencePooling:
    """The pooling of the evaluation's sentence embeddings: the teacher's (``teacher.pooling``), else mean."""
    return getattr(teacher, "pooling", None) or SentencePooling()


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


def clean_inputs(batch) -> dict:
    """The encoder inputs of ``batch``'s clean text: its token ids before masking (:func:`unmasked_token_ids`),
    ``padding_mask`` and ``segment_ids``; no ``mask_positions`` (no head is run)."""
    inputs = {k: v for k, v in _inputs(batch).items() if k != "mask_positions"}
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


def _encode(encoder, inputs: dict, pooling: SentencePooling) -> tuple[np.ndarray, np.ndarray]:
    """(last hidden states [B, L, H], sentence embeddings [B, H]) of ``inputs`` as numpy float32."""
    hidden = encoder(inputs)["hidden"]
    return (tf.cast(hidden, tf.float32).numpy(),
            pool_hidden_states(hidden, inputs["padding_mask"], pooling).numpy())


def sentence_embeddings(model, batch, pooling: SentencePooling | None = None) -> np.ndarray:
    """The sentence embeddings of the non-empty rows of ``batch``, always on its clean text.

    A masked batch (with ``mask_positions``, ``mask_ids``, ``mask_weights``) is unmasked first
    (:func:`clean_inputs`), so it gives the embeddings of the clean batch.

    Args:
      model: a BertMLM-like model (with or without an MLM head; the head is not run).
      batch: a batch dict of the training pipeline (``token_ids``, ``padding_mask``, optional mask fields).
      pooling: how hidden states become one vector (default: the model's ``pooling``, else mean).

    Returns:
      float32 ``[B', H]``, B' the rows with at least one real token.

    Example:
    >>> import keras_distil as kd  # doctest: +SKIP
    >>> model = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=1, num_heads=2,
    ...                                 intermediate_size=32))  # doctest: +SKIP
    >>> batch = {"token_ids": np.array([[2, 7, 9, 3]]), "padding_mask": np.array([[1, 1, 1, 1]])}
    >>> sentence_embeddings(model, batch).shape  # doctest: +SKIP
    (1, 16)
    """
    pooling = pooling or teacher_pooling(model)
    _, embeddings = _encode(encoder_fn(model), clean_inputs(batch), pooling)
    return embeddings[np.asarray(batch["padding_mask"]).any(axis=1)]


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
        encoded = {key: _encode(encoder, inputs, self.pooling) for key, encoder in self.encoders.items()}
        t_hidden, t_emb = encoded[id(self.models[self.teacher_name])]
        keep = np.flatnonzero(rows)[:max(0, self.max_texts - self.texts)]
        for name, model in self.models.items():
            hidden, emb = encoded[id(model)]
            if hidden.shape[-1] != t_hidden.shape[-1]:
                self.widths_differ.add(name)
                continue
            if name != self.teacher_name:
                _add(self.sums[name], {**token_cosine_sums(t_hidden, hidden, padding), "sequences": float(rows.sum()),
                                       "sentence_cos": float(row_cosines(emb[rows], t_emb[rows]).sum())})
            self.kept[name].append(emb[keep])
        self.texts += len(keep)

    def figures(self, name: str) -> dict:
        sums = self.sums[name]
        result = {"hidden_cosine": _ratio(sums.get("hidden_cos"), sums.get("tokens")),
                  "sentence_cosine": _ratio(sums.get("sentence_cos"), sums.get("sequences")),
                  "similarity_spearman": None, "neighbour_agreement": None}
        if name not in self.widths_differ and self.kept[name]:
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
    embedding figures on their clean text with the teacher's pooling (the module docstring lists them).

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
        inputs = _inputs(batch)
        outputs = {name: mlm_forwards[name](inputs) for name in headed}
        for name, out in outputs.items():
            _add(mlm[name], masked_lm_sums(out["logits"], batch["mask_ids"], batch["mask_weights"]))
        if embedding is not None:
            for name in versus:
                if name in outputs and teacher_name in outputs:
                    _add(versus[name], agreement_sums(outputs[teacher_name]["logits"], outputs[name]["logits"],
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
        nll = _ratio(sums.get("nll"), sums.get("weight"))
        report["models"][name] = {
            "params": count_params(model),
            "mlm_head": name in mlm,
            "masked_lm_accuracy": _ratio(sums.get("correct"), sums.get("weight")),
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
                "top1_agreement": _ratio(sums.get("agree"), weight),
                "kl": _ratio(sums.get("kl"), weight),
                **embedding.figures(name),
                "accuracy_retention": _ratio(entry["masked_lm_accuracy"], teacher["masked_lm_accuracy"]),
                "perplexity_ratio": _ratio(entry["perplexity"], teacher["perplexity"]),
                "speedup": _ratio(teacher["latency_s"], entry["latency_s"]),
                "param_ratio": _ratio(entry["params"], teacher["params"]),
            }
    return report


# ---- the reference row: the copied-layer student before training -------------------------------

def evenly_spaced_layers(num_teacher_layers: int, num_layers: int) -> list[int]:
    """``num_layers`` teacher layer indices spread evenly from layer 0: ``(12, 4) -> [0, 3, 6, 9]``."""
    return [i * num_teacher_layers // num_layers for i in range(num_layers)]


def run_student_layers(model_path: str | None) -> list[int] | None:
    """``distill.student_layers`` of the run folder a saved student lies in, else None.

    ``model_path`` is a run's ``student/keras_hub`` or ``student/student.keras``; the run folder is two
    levels up and holds ``config.json`` (the resolved recipe). None when the path is not laid out so, the
    file is missing or unreadable, or the run used the default layers (``student_layers`` null).
    """
    if not model_path:
        return None
    path = os.path.normpath(os.path.abspath(model_path))
    if os.path.basename(path) not in ("keras_hub", "student.keras") or \
            os.path.basename(os.path.dirname(path)) != "student":
        return None
    config = os.path.join(os.path.dirname(os.path.dirname(path)), "config.json")
    try:
        with open(config, encoding="utf-8") as f:
            layers = json.load(f).get("distill", {}).get("student_layers")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(layers, list) and layers and all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        return layers
    return None


def copied_layers_for(num_teacher_layers: int, num_layers: int, model_path: str | None = None
                      ) -> tuple[list[int], str]:
    """The teacher layers a ``num_layers``-deep student is compared with, and where they come from.

    In order: the run folder's ``distill.student_layers`` when ``model_path`` lies in a run
    (:func:`run_student_layers`) and it has ``num_layers`` entries ("run config"); every other teacher
    layer when that gives ``num_layers`` ("every other layer"); else :func:`evenly_spaced_layers`.

    Example:
    >>> copied_layers_for(6, 3), copied_layers_for(6, 4)
    (([0, 2, 4], 'every other layer'), ([0, 1, 3, 4], 'evenly spaced'))
    """
    from keras_distil.models.student import default_student_layers

    layers = run_student_layers(model_path)
    if layers is not None and len(layers) == num_layers and all(0 <= i < num_teacher_layers for i in layers):
        return list(layers), "run config"
    if layers is not None:
        logger.warning("%s: the run's distill.student_layers %s do not fit a %d-layer student of a %d-layer "
                       "teacher; ignored", model_path, layers, num_layers, num_teacher_layers)
    if len(default_student_layers(num_teacher_layers)) == num_layers:
        return default_student_layers(num_teacher_layers), "every other layer"
    return evenly_spaced_layers(num_teacher_layers, num_layers), "evenly spaced"


def parse_copied_layers(text: str | None):
    """``--copied-layers``: None or "auto" -> None (choose), "none" -> "none" (no row), "0,2,4" -> [0, 2, 4]."""
    if text is None or text.strip().lower() == "auto":
        return None
    if text.strip().lower() in ("none", "off"):
        return "none"
    try:
        return [int(part) for part in text.split(",") if part.strip()] or None
    except ValueError:
        raise ConfigError(f"evaluate --copied-layers: {text!r}; give teacher layer indices like 0,2,4, "
                          "'auto' or 'none'") from None


def add_copied_reference(models: dict, teacher_name: str | None, layers=None, paths: dict | None = None,
                         name: str = COPIED_NAME) -> tuple[dict, dict | None]:
    """``models`` with a reference row added: the untrained student that copies teacher ``layers``.

    The row is ``build_student(teacher, layers)`` (DistilBERT's initialisation: the embeddings and those
    layers of the teacher), i.e. where a distilled student started, so that a report shows what
    distillation added. It is added when there is a teacher (a BertMLM) and a model of the teacher's
    width with fewer layers (the first such is the one it stands beside, ``like``), or when ``layers``
    are given explicitly.

    Args:
      models: name -> model, the teacher among them.
      teacher_name: the teacher's name (None: no row).
      layers: teacher layer indices; None: :func:`copied_layers_for` the student (its run folder's
        ``distill.student_layers``, every other layer, else evenly spaced); "none": no row.
      paths: name -> checkpoint path, to find the run folder of a saved student.
      name: the row's name (suffixed when taken).

    Returns:
      ``(models, info)``: a new dict with the row last and ``{"name", "layers", "source", "like"}``, or the
      same ``models`` and None when no row is added.

    Example:
    >>> models, info = add_copied_reference({"teacher": teacher, "student": student},  # doctest: +SKIP
    ...                                     "teacher")
    >>> info["layers"], info["source"]  # doctest: +SKIP
    ([0, 2, 4], 'every other layer')
    """
    from keras_distil.models.bert import BertMLM
    from keras_distil.models.student import build_student, check_student_layers

    if layers == "none":
        return models, None
    teacher = models.get(teacher_name) if teacher_name is not None else None
    if not isinstance(teacher, BertMLM):
        if layers is not None:
            raise ConfigError("evaluate: copied layers need a teacher (a BertMLM) to copy them from; give --teacher")
        return models, None
    config = teacher.model_config
    like = next((n for n, m in models.items() if n != teacher_name and m is not teacher
                 and getattr(getattr(m, "model_config", None), "hidden_size", None) == config.hidden_size
                 and m.model_config.num_layers < config.num_layers), None)
    if layers is not None:
        try:
            layers, source = check_student_layers(list(layers), config.num_layers), "given"
        except ConfigError as e:
            raise ConfigError(f"evaluate --copied-layers: {str(e).split(': ', 1)[-1]}") from None
    elif like is None:
        return models, None
    else:
        layers, source = copied_layers_for(config.num_layers, models[like].model_config.num_layers,
                                           (paths or {}).get(like))
    unique, i = name, 2
    while unique in models:
        unique, i = f"{name} {i}", i + 1
    reference = build_student(teacher, layers)
    info = {"name": unique, "layers": list(layers), "source": source, "like": like}
    logger.info("reference row %r: teacher layers %s copied (%s)", unique, list(layers), source)
    return {**models, unique: reference}, info


# ---- held-out batches --------------------------------------------------------------------------

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


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate --model PATH [--teacher PATH] --data PATH ...`` on argparse ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate", help="masked-token accuracy / perplexity on held-out text, teacher-student agreement, "
                         "sentence-embedding agreement",
        description="Evaluate masked-LM and sentence-embedding models on held-out text. Models are Hugging Face "
                    "folders, KerasHub presets or .keras files; give several --model NAME=PATH to compare. "
                    "Masked-LM figures use deterministic masks; models without an MLM head get '-' there. Against "
                    "the teacher, on the clean text with the teacher's pooling: token and sentence cosines, the "
                    "Spearman correlation of all pairwise similarities and nearest-neighbour agreement. A "
                    "reference row, the untrained student copied from teacher layers, shows what distillation "
                    "added.")
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                        help="model to evaluate; repeatable")
    parser.add_argument("--teacher", metavar="[NAME=]PATH", help="teacher: the others are compared with it")
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="held-out text (one document per line), a prepared folder or tfds:NAME; repeatable")
    parser.add_argument("--vocab", metavar="VOCAB.txt",
                        help="WordPiece vocabulary (default: the teacher's, else the model's)")
    parser.add_argument("--no-lowercase", action="store_true", help="with --vocab: a cased vocabulary")
    parser.add_argument("--max-len", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--min-len", type=int, default=None,
                        help="drop shorter sequences (default: 12 when a model has an MLM head, else 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per batch (default 32)")
    parser.add_argument("--max-batches", type=int, default=None, help="evaluate at most this many batches")
    parser.add_argument("--max-texts", type=_non_negative, default=MAX_TEXTS,
                        help=f"texts of the pairwise similarity figures (Spearman, neighbours; an N x N matrix; "
                             f"default {MAX_TEXTS}; 0: off)")
    parser.add_argument("--copied-layers", metavar="0,2,4|auto|none", default=None,
                        help="the reference row, the untrained student copying these teacher layers; default "
                             "(auto): when a model has the teacher's width and fewer layers, its run's "
                             "distill.student_layers, else every other layer, else evenly spaced; none: no row")
    parser.add_argument("--latency-runs", type=int, default=10, help="timed forwards per model (0: no timing)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help=f"masking seed (default {EVAL_SEED})")
    parser.add_argument("--out", metavar="REPORT.json", help="also write the report here (atomically)")
    parser.set_defaults(func=run_evaluate)
    return parser


def format_report(report: dict) -> str:
    """A plain-text table of the report; a null figure (no head, no teacher, no timing) prints as ``-``.

    Below it, what the embedding figures used (pooling, texts) and the reference row's layers."""
    rows = [("model", "params", "MLM acc", "ppl", "ms/batch", "agree", "KL", "tok cos", "sent cos", "sim rho",
             "NN agree", "retention", "speedup")]

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for name, m in report["models"].items():
        v = m.get("vs_teacher", {})
        rows.append((name, f"{m['params']:,}", fmt(m["masked_lm_accuracy"], ".4f"), fmt(m["perplexity"], ".2f"),
                     fmt(None if m["latency_s"] is None else 1000 * m["latency_s"], ".1f"),
                     fmt(v.get("top1_agreement"), ".4f"), fmt(v.get("kl"), ".4f"), fmt(v.get("hidden_cosine"), ".4f"),
                     fmt(v.get("sentence_cosine"), ".4f"), fmt(v.get("similarity_spearman"), ".4f"),
                     fmt(v.get("neighbour_agreement"), ".4f"), fmt(v.get("accuracy_retention"), ".3f"),
                     fmt(v.get("speedup"), ".2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    data = report.get("data", {})
    pooling = data.get("pooling")
    if pooling:
        source = "the teacher's" if pooling.get("source") == "teacher" else "default: the teacher has none"
        lines.append(f"sentence embeddings on the clean text: {pooling['mode']} pooling"
                     f"{', normalized' if pooling.get('normalize') else ''} ({source}); sim rho (Spearman of the "
                     f"pairwise cosines) and NN agree (same nearest text) over {data.get('texts')} texts")
    reference = data.get("copied_reference")
    if reference:
        lines.append(f"{reference['name']}: teacher layers {','.join(map(str, reference['layers']))} copied, "
                     f"not trained ({reference['source']})")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    from keras_distil.data.base import atomic_write_json

    specs = ([_named(args.teacher, "teacher")] if args.teacher else []) + [
        _named(spec, "model" if len(args.model) == 1 else f"model{i + 1}") for i, spec in enumerate(args.model)]
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluate: model names must differ, got {', '.join(names)} (use --model NAME=PATH)")
    report = evaluate_checkpoints(
        dict(specs), args.data, specs[0][0] if args.teacher else None, vocab_file=args.vocab,
        lowercase=not args.no_lowercase, max_len=args.max_len, batch_size=args.batch_size,
        max_batches=args.max_batches, latency_runs=args.latency_runs, seed=args.seed, max_texts=args.max_texts,
        copied_layers=parse_copied_layers(args.copied_layers), min_len=args.min_len)
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
