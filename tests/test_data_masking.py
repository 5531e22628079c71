"""Dynamic masking: rates, replacement ratios, special tokens and frequency smoothing, measured over
>= 10,000 sequences against the formulas of DistilBERT (numpy references, not earlier outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_distil.data import MaskingSpec, mask_tokens, sampling_probabilities, select_positions

V = 1000
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = (PAD, UNK, CLS, SEP, MASK)
SPEC = MaskingSpec(mask_id=MASK, max_predictions=20)


def make_batch(rng, batch, max_len, content, min_len=12):
    """[CLS] content [SEP] then padding; ``content(rng, n)`` draws n ids; lengths uniform in min_len..max_len."""
    ids = np.zeros((batch, max_len), np.int32)
    lengths = rng.integers(min_len, max_len + 1, batch)
    for b, n in enumerate(lengths):
        ids[b, 0], ids[b, n - 1] = CLS, SEP
        ids[b, 1:n - 1] = content(rng, n - 2)
    return ids, (np.arange(max_len)[None] < lengths[:, None]).astype(np.int32)


def run_masking(content, probabilities, n_batches=20, batch=512, max_len=64, seed=0, min_len=12):
    """Mask ``n_batches * batch`` sequences; return the inputs and outputs stacked as numpy."""
    rng = np.random.default_rng(seed)
    table = tf.constant(probabilities)
    fn = tf.function(lambda ids, pad, s: mask_tokens(ids, pad, table, s, SPEC))
    inputs, outputs = [], []
    for i in range(n_batches):
        ids, padding = make_batch(rng, batch, max_len, content, min_len)
        out = fn(ids, padding, tf.constant([seed, i], tf.int64))
        inputs.append((ids, padding))
        outputs.append({k: v.numpy() for k, v in out.items()})
    ids = np.concatenate([i for i, _ in inputs])
    padding = np.concatenate([p for _, p in inputs])
    out = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    return ids, padding, out


def uniform_content(rng, n):
    # Includes [UNK] (special: never masked) now and then, as real text does.
    ids = rng.integers(5, V, n)
    ids[rng.random(n) < 0.02] = UNK
    return ids


@pytest.fixture(scope="module")
def uniform_run():
    probabilities = sampling_probabilities(V, SPECIAL, np.ones(V, np.int64), smoothing=0.7)
    return run_masking(uniform_content, probabilities)


def test_mask_rate_is_015_of_real_tokens(uniform_run):
    ids, padding, out = uniform_run
    candidates = ((padding == 1) & ~np.isin(ids, SPECIAL)).sum(axis=1)
    selected = out["mask_weights"].sum(axis=1)
    assert len(ids) >= 10_000
    rate = selected.sum() / candidates.sum()
    assert abs(rate - 0.15) < 0.005, rate
    # Exact-count-ish: every sequence gets floor or ceil of 0.15 * n predictions.
    target = 0.15 * candidates
    assert np.all((selected >= np.floor(target)) & (selected <= np.ceil(target)))


def test_replacement_ratios_are_80_10_10(uniform_run):
    ids, _, out = uniform_run
    used = out["mask_weights"] > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], used.shape)
    original = ids[rows[used], out["mask_positions"][used]]
    after = out["token_ids"][rows[used], out["mask_positions"][used]]
    masked = np.mean(after == MASK)
    kept = np.mean(after == original)
    rand = np.mean((after != MASK) & (after != original))
    # A random replacement equals the original with probability 1/995: 0.1 * (1 - 1/995) is still 0.1 +- 0.01.
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(rand - 0.1) < 0.01, (masked, kept, rand)
    assert not np.isin(after[(after != MASK) & (after != original)], SPECIAL).any()


def test_no_special_token_or_padding_is_ever_selected(uniform_run):
    ids, padding, out = uniform_run
    used = out["mask_weights"] > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], used.shape)
    positions = out["mask_positions"][used]
    assert not np.isin(ids[rows[used], positions], SPECIAL).any()
    assert padding[rows[used], positions].all()


def test_labels_and_untouched_positions(uniform_run):
    ids, padding, out = uniform_run
    used = out["mask_weights"] > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], used.shape)
    np.testing.assert_array_equal(out["mask_ids"][used], ids[rows[used], out["mask_positions"][used]])
    assert (out["mask_ids"][~used] == 0).all() and (out["mask_positions"][~used] == 0).all()
    changed = np.zeros_like(ids, bool)
    changed[rows[used], out["mask_positions"][used]] = True
    np.testing.assert_array_equal(out["token_ids"][~changed], ids[~changed])
    np.testing.assert_array_equal(out["padding_mask"], padding)
    assert (out["segment_ids"] == 0).all()
    # Positions increase within the used slots (a set, no duplicates).
    for p, u in zip(out["mask_positions"][:200], used[:200], strict=True):
        assert np.all(np.diff(p[u]) > 0)
    assert {k: v.dtype.name for k, v in out.items()} == {
        "token_ids": "int32", "padding_mask": "int32", "segment_ids": "int32", "mask_positions": "int32",
        "mask_ids": "int32", "mask_weights": "float32"}


def test_selection_rate_ratio_follows_the_smoothing_formula():
    frequent, rare = 10, 11  # a frequent and a rare token; fillers 100..999 share the rare count
    counts = np.full(V, 100, np.int64)
    counts[frequent] = 10_000
    probabilities = sampling_probabilities(V, SPECIAL, counts, smoothing=0.7)

    def content(rng, n):
        # The same mix in every sequence (31 frequent, 4 rare, 27 fillers, shuffled): the per-sequence
        # scale of the inclusion probabilities is then the same everywhere, so the batch-wide rate ratio
        # is the per-sequence one (with a varying mix, token-rich sequences would weigh in differently).
        ids = np.concatenate([np.full(31, frequent), np.full(4, rare), rng.integers(100, V, n - 35)])
        return rng.permutation(ids)

    ids, _, out = run_masking(content, probabilities, seed=1, min_len=64)
    used = out["mask_weights"] > 0
    selected = out["mask_ids"][used]
    rate = {t: np.sum(selected == t) / np.sum(ids == t) for t in (frequent, rare)}
    predicted = (counts[rare] / counts[frequent]) ** -0.7  # = 25.1
    measured = rate[rare] / rate[frequent]
    assert abs(measured / predicted - 1) < 0.10, (measured, predicted)


def test_probability_table_is_the_smoothing_formula():
    counts = np.array([5, 0, 7, 9, 3, 0, 1, 10, 1000, 8])
    got = sampling_probabilities(10, (0, 2, 4), counts, smoothing=0.7)
    expected = np.maximum(counts, 1) ** -0.7
    expected[[0, 2, 4]] = 0
    np.testing.assert_allclose(got, expected / expected.sum(), rtol=1e-6)
    uniform = sampling_probabilities(10, (0, 2, 4))
    np.testing.assert_allclose(uniform, np.where(np.isin(np.arange(10), (0, 2, 4)), 0, 1 / 7), rtol=1e-6)
    mapping = sampling_probabilities(10, (0,), {8: 1000, 1: 5}, smoothing=1.0)
    assert mapping[8] == pytest.approx(mapping[9] / 1000) and mapping[1] == pytest.approx(mapping[9] / 5)


def test_short_sequences_get_at_least_one_prediction_and_heavy_tokens_are_capped():
    probabilities = np.full(V, 1.0, np.float32)
    probabilities[list(SPECIAL)] = 0
    probabilities[7] = 1e6  # far more than its share: inclusion capped at 1
    ids = tf.constant([[CLS, 20, 21, SEP, PAD, PAD], [CLS, 7, 30, 31, 32, SEP]] * 500, tf.int32)
    padding = tf.cast(ids != PAD, tf.int32)
    for i in range(3):
        positions, used = select_positions(ids, padding, tf.constant(probabilities), tf.constant([5, i], tf.int64),
                                           0.15, 20)
        counts = used.numpy().sum(axis=1)
        assert (counts[0::2] == 1).all()  # 0.15 * 2 rounds to 0, but a sequence with real tokens gets one
        assert (counts[1::2] == 1).all()  # 0.15 * 4 = 0.6 -> at least one ...
        assert (positions.numpy()[1::2, 0] == 1).all()  # ... and it is always the capped heavy token


def test_same_seed_same_masks_other_seed_other_masks():
    rng = np.random.default_rng(3)
    ids, padding = make_batch(rng, 64, 64, uniform_content)
    table = sampling_probabilities(V, SPECIAL)
    a = mask_tokens(ids, padding, table, tf.constant([1, 2], tf.int64), SPEC)
    b = mask_tokens(ids, padding, table, tf.constant([1, 2], tf.int64), SPEC)
    c = mask_tokens(ids, padding, table, tf.constant([1, 3], tf.int64), SPEC)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert not np.array_equal(a["mask_positions"].numpy(), c["mask_positions"].numpy())
