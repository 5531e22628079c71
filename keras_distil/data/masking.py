"""Dynamic masked-LM masking in the graph, with DistilBERT's token-frequency smoothing.

Selection (our choice: *exact-count-ish*, not the reference's per-batch multinomial):
each real, non-special token i of a sequence gets the weight ``w_i = p[token_i]`` with
``p[t] ∝ max(count_t, 1) ** -mlm_smoothing`` (0 for special tokens and padding). The sequence's
target count is ``t = clip(mlm_mask_prop * n, min(1, n), max_predictions_per_seq)`` for ``n`` such
tokens, and each token's inclusion probability is ``pi_i = min(1, c * w_i)`` with ``c`` chosen so that
``sum(pi) = t`` (tokens whose share would exceed 1 are capped and the rest rescaled). Positions are
then drawn by randomized systematic sampling: the positions are put in a random order, ``pi`` is
accumulated, and a single uniform offset u selects the positions whose cumulative interval contains
one of u, u+1, u+2, ... Consequences, all exact rather than approximate:

* every token is selected with probability exactly ``pi_i`` (so the selection-rate ratio of two
  tokens is exactly the smoothing formula's ``(count_a / count_b) ** -mlm_smoothing`` unless capped);
* a sequence gets ``floor(t)`` or ``ceil(t)`` predictions, ``t`` on average, so the mask rate is
  ``mlm_mask_prop`` without rounding bias, at least one per sequence with a real token, never more
  than ``max_predictions_per_seq``.

(The reference samples ``ceil(0.15 * tokens)`` positions over the whole batch without replacement,
which skews inclusion rates away from the weights for frequent vs rare tokens and lets a sequence
get no prediction.)

Each selected position is then replaced by [MASK] with probability ``word_mask``, kept with
``word_keep``, or replaced by a token drawn uniformly from the non-special vocabulary with
``word_rand`` (the reference draws from the whole vocabulary, specials included).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_distil.data.base import DataError
from keras_distil.files import read_json

_CAP_ITERATIONS = 8  # rounds of capping inclusion probabilities at 1; each round can only add capped tokens


@dataclass(frozen=True)
class MaskingSpec:
    """The masking knobs of ``DataConfig`` plus the [MASK] id."""

    mask_id: int
    max_predictions: int = 20
    mask_prop: float = 0.15
    word_mask: float = 0.8
    word_keep: float = 0.1
    word_rand: float = 0.1

    @classmethod
    def from_config(cls, data_config, mask_id: int) -> MaskingSpec:
        return cls(mask_id=mask_id, max_predictions=data_config.max_predictions_per_seq,
                   mask_prop=data_config.mlm_mask_prop, word_mask=data_config.word_mask,
                   word_keep=data_config.word_keep, word_rand=data_config.word_rand)


def load_token_counts(path: str | os.PathLike, vocab_size: int | None = None) -> np.ndarray:
    """Token counts from ``token_counts.json``: a list of V ints, or an object with a ``counts`` list."""
    path = os.fspath(path)
    data = read_json(path, "token counts", error=DataError)
    counts = data.get("counts") if isinstance(data, dict) else data
    if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
        raise DataError(f"{path}: expected a list of non-negative integer counts (or an object with 'counts')")
    if vocab_size is not None and len(counts) != vocab_size:
        raise DataError(f"{path}: {len(counts)} counts for a vocabulary of {vocab_size} tokens")
    return np.asarray(counts, dtype=np.int64)


def sampling_probabilities(vocab_size: int, special_ids: Sequence[int],
                           token_counts: np.ndarray | Sequence[int] | Mapping[int, int] | None = None,
                           smoothing: float = 0.7) -> np.ndarray:
    """The per-token selection weight table, float32 [V], summing to 1.

    ``max(count, 1) ** -smoothing`` from ``token_counts`` (an array of V counts or a mapping id -> count;
    absent ids count 0), uniform without counts; 0 for every special id.
    """
    counts = np.zeros(vocab_size, np.float64)
    if token_counts is None:
        counts[:] = 1.0
    elif isinstance(token_counts, Mapping):
        for token_id, count in token_counts.items():
            counts[int(token_id)] = count
    else:
        token_counts = np.asarray(token_counts, np.float64)
        if token_counts.shape != (vocab_size,):
            raise DataError(f"token_counts: {token_counts.shape[0]} counts for a vocabulary of {vocab_size} tokens")
        counts = token_counts
    weights = np.maximum(counts, 1.0) ** -smoothing
    weights[list(special_ids)] = 0.0
    if not weights.any():
        raise DataError("token_counts: every token is special; nothing could be masked")
    return (weights / weights.sum()).astype(np.float32)


def inclusion_probabilities(weights: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``pi = min(1, c * weights)`` per row with ``sum(pi) = target`` (rows [B, L], target [B]).

    Requires ``target <= count(weights > 0)`` per row, which the caller guarantees.
    """
    capped = tf.zeros_like(weights, dtype=tf.bool)
    pi = tf.zeros_like(weights)
    for _ in range(_CAP_ITERATIONS):
        free = tf.where(capped, 0.0, weights)
        remaining = target - tf.reduce_sum(tf.cast(capped, weights.dtype), axis=1)
        scale = tf.math.divide_no_nan(remaining, tf.reduce_sum(free, axis=1))
        pi = tf.where(capped, 1.0, free * scale[:, None])
        capped = pi >= 1.0
    return tf.minimum(pi, 1.0)


def systematic_sample(pi: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Bool [B, L]: position i chosen with probability exactly ``pi[b, i]``; ``floor`` or ``ceil`` of
    ``sum(pi[b])`` chosen per row (randomized systematic sampling; ``seed`` is a stateless seed [2])."""
    order_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    batch, length = tf.shape(pi)[0], tf.shape(pi)[1]
    order = tf.argsort(tf.random.stateless_uniform([batch, length], order_seed), axis=1)
    cumulative = tf.cumsum(tf.gather(pi, order, batch_dims=1), axis=1)
    offset = tf.random.stateless_uniform([batch, 1], offset_seed, dtype=pi.dtype)
    previous = tf.pad(cumulative[:, :-1], [[0, 0], [1, 0]])
    chosen = tf.math.ceil(cumulative - offset) > tf.math.ceil(previous - offset)
    return tf.gather(chosen, tf.argsort(order, axis=1), batch_dims=1)


def select_positions(token_ids: tf.Tensor, padding_mask: tf.Tensor, probabilities: tf.Tensor,
                     seed: tf.Tensor, mask_prop: float, max_predictions: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Positions to predict, int32 [B, P] in increasing order (unused slots 0), and their weights [B, P]."""
    weights = tf.gather(probabilities, token_ids) * tf.cast(padding_mask, tf.float32)
    candidates = tf.reduce_sum(tf.cast(weights > 0, tf.float32), axis=1)
    target = tf.clip_by_value(mask_prop * candidates, tf.minimum(candidates, 1.0), float(max_predictions))
    chosen = systematic_sample(inclusion_probabilities(weights, target), seed)
    positions = tf.ragged.boolean_mask(tf.broadcast_to(tf.range(tf.shape(token_ids)[1]), tf.shape(token_ids)),
                                       chosen)
    # Rounding can put sum(pi) a hair above P and yield P + 1 positions: keep the first P.
    dense = positions.to_tensor(default_value=0, shape=[None, max_predictions])
    used = tf.sequence_mask(tf.minimum(positions.row_lengths(), max_predictions), max_predictions)
    return tf.cast(dense, tf.int32), used


def replacement_candidates(probabilities: tf.Tensor) -> tf.Tensor:
    """Ids a selected token may be replaced with at random: every id with a selection weight > 0."""
    return tf.cast(tf.reshape(tf.where(probabilities > 0), [-1]), tf.int32)


def mask_tokens(token_ids: tf.Tensor, padding_mask: tf.Tensor, probabilities: tf.Tensor, seed: tf.Tensor,
                spec: MaskingSpec) -> dict[str, tf.Tensor]:
    """One batch of token ids [B, L] -> the Distiller's input dict (see the module docstring).

    A pure function of its inputs: ``probabilities`` is the float32 [V] table of
    :func:`sampling_probabilities` and ``seed`` a stateless seed (int [2]).
    """
    token_ids = tf.cast(token_ids, tf.int32)
    padding_mask = tf.cast(padding_mask, tf.int32)
    probabilities = tf.convert_to_tensor(probabilities, tf.float32)
    select_seed, action_seed, random_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    positions, used = select_positions(token_ids, padding_mask, probabilities, select_seed, spec.mask_prop,
                                       spec.max_predictions)
    originals = tf.gather(token_ids, positions, batch_dims=1)
    action = tf.random.stateless_uniform(tf.shape(positions), action_seed)
    candidates = replacement_candidates(probabilities)
    random_ids = tf.gather(candidates, tf.random.stateless_uniform(
        tf.shape(positions), random_seed, maxval=tf.size(candidates), dtype=tf.int32))
    replaced = tf.where(action < spec.word_mask, spec.mask_id,
                        tf.where(action < spec.word_mask + spec.word_keep, originals, random_ids))
    batch_index = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(positions))
    scatter_at = tf.boolean_mask(tf.stack([batch_index, positions], axis=-1), used)
    masked = tf.tensor_scatter_nd_update(token_ids, scatter_at, tf.boolean_mask(replaced, used))
    used_int = tf.cast(used, tf.int32)
    return {
        "token_ids": masked,
        "padding_mask": padding_mask,
        "segment_ids": tf.zeros_like(token_ids),
        "mask_positions": positions * used_int,
        "mask_ids": originals * used_int,
        "mask_weights": tf.cast(used, tf.float32),
    }
