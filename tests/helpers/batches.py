"""Hand-made batches in the Distiller's contract, and the tiny model shape the unit tests build.

A batch is ``token_ids`` (after masking), ``padding_mask`` [B, L] and ``mask_positions``, ``mask_ids``,
``mask_weights`` [B, P]: rows of random lengths (padding), some prediction slots unused (weight 0), the used
positions replaced by [MASK] in ``token_ids``. :func:`make_batch` fills rows with random ids (nothing to
learn); :func:`pattern_batch` with repeated motifs, where a masked token is fixed by its neighbours (what the
confident teacher of tests/helpers/confident_teacher.py learns).
"""

from __future__ import annotations

import numpy as np

from keras_distil.data.tokenize import SPECIAL_TOKENS

TINY_MODEL = dict(
    vocab_size=120,
    hidden_size=32,
    num_layers=4,
    num_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    dropout=0.0,
)
MASK_ID = SPECIAL_TOKENS.index("[MASK]")  # 4
FIRST_ID = len(SPECIAL_TOKENS)  # ids below are special ([PAD] 0 ... [MASK] 4)
MAX_PERIOD = 2  # pattern rows repeat a motif of one or two tokens


def _lengths_and_mask(rng, batch_size, seq_len, min_len):
    lengths = rng.integers(min_len, seq_len + 1, batch_size)
    return lengths, (np.arange(seq_len)[None, :] < lengths[:, None]).astype("int32")


def _masked(original, padding_mask, lengths, num_predictions, rng) -> dict:
    """The batch of ``original`` ids with about a third of each row's inner tokens (at most
    ``num_predictions``, at least 1) masked."""
    batch_size = len(original)
    positions = np.zeros((batch_size, num_predictions), "int32")
    weights = np.zeros((batch_size, num_predictions), "float32")
    for b, n in enumerate(lengths):
        used = min(num_predictions, max(1, (n - 2) // 3))
        positions[b, :used] = np.sort(rng.choice(np.arange(1, n - 1), used, replace=False))
        weights[b, :used] = 1.0
    rows = np.repeat(np.arange(batch_size)[:, None], num_predictions, 1)
    token_ids = original.copy()
    token_ids[rows[weights > 0], positions[weights > 0]] = MASK_ID
    return {
        "token_ids": token_ids,
        "padding_mask": padding_mask,
        "mask_positions": positions,
        "mask_ids": (original[rows, positions] * (weights > 0)).astype("int32"),
        "mask_weights": weights,
    }


def make_batch(batch_size=8, seq_len=16, num_predictions=4, vocab_size=120, seed=0, min_len=6) -> dict:
    """A batch of random ids (non-special), random lengths in ``[min_len, seq_len]``, slots partly unused.

    Example:
    >>> make_batch(batch_size=2, seq_len=8)["token_ids"].shape
    (2, 8)
    """
    rng = np.random.default_rng(seed)
    lengths, padding_mask = _lengths_and_mask(rng, batch_size, seq_len, min_len)
    original = rng.integers(FIRST_ID, vocab_size, (batch_size, seq_len)).astype("int32") * padding_mask
    return _masked(original, padding_mask, lengths, num_predictions, rng)


def pattern_batch(batch_size=8, seq_len=16, num_predictions=4, vocab_size=120, seed=0, min_len=6) -> dict:
    """A batch as :func:`make_batch` whose rows repeat a motif of one or two random tokens
    (``a a a ...`` or ``a b a b ...``), so that a masked token is fixed by the tokens around it."""
    rng = np.random.default_rng(seed)
    lengths, padding_mask = _lengths_and_mask(rng, batch_size, seq_len, min_len)
    motifs = FIRST_ID + rng.integers(0, vocab_size - FIRST_ID, (batch_size, MAX_PERIOD))
    periods = rng.integers(1, MAX_PERIOD + 1, (batch_size, 1))
    original = np.take_along_axis(motifs, np.arange(seq_len)[None, :] % periods, 1).astype("int32") * padding_mask
    return _masked(original, padding_mask, lengths, num_predictions, rng)


def clean(batch: dict) -> dict:
    """The batch before masking, without mask fields (what ``data.masking="none"`` yields)."""
    ids = batch["token_ids"].copy()
    used = batch["mask_weights"] > 0
    rows = np.repeat(np.arange(len(ids))[:, None], used.shape[1], 1)
    ids[rows[used], batch["mask_positions"][used]] = batch["mask_ids"][used]
    return {"token_ids": ids, "padding_mask": batch["padding_mask"].copy()}
