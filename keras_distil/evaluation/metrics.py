"""The evaluation's figures as plain functions: per-batch sums of the masked-LM and agreement figures
(float64, divided once at the end), token and sentence cosines, and the pairwise sentence-embedding
figures (pairwise cosines, ranks, Spearman's correlation, nearest neighbours) in numpy.

Every function here is pure: tensors or arrays in, numbers out; no model is run (see :mod:`.forward`).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_distil import losses
from keras_distil.models.pooling import SentencePooling, pool_hidden_states

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


def add_sums(total: dict, part: dict) -> None:
    """Add every sum of ``part`` into ``total`` in place (a key ``total`` lacks starts at 0)."""
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value


def ratio(num: float | None, den: float | None) -> float | None:
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
