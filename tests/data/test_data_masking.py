"""Dynamic masking: rates, replacement ratios, special tokens and frequency smoothing, measured over
>= 10,000 sequences against the formulas of DistilBERT (numpy references, not earlier outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_distil.data import MaskingSpec, mask_tokens, sampling_probabilities
from keras_distil.data.masking import select_positions

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


def run_masking(content, probabilities, n_batches=20, batch=512, max_len=64, seed=0, min_len=12, spec=SPEC):
    """Mask ``n_batches * batch`` sequences; return the inputs and outputs stacked as numpy."""
    rng = np.random.default_rng(seed)
    table = tf.constant(probabilities)
    fn = tf.function(lambda ids, pad, s: mask_tokens(ids, pad, table, s, spec))
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


# ---- uneven 80/10/10 ratios: keep and random told apart ------------------------------------------
# A small vocabulary: 20 replacement candidates (ids 5..24), so a random replacement lands on the original
# token with probability 1/20, large enough to be measured and accounted for. For each selected slot
# (independent uniform draws per slot):
#   P(after == [MASK])                  = word_mask
#   P(after == original)                = word_keep + word_rand / |candidates|
#   P(after is another candidate)       = word_rand * (1 - 1 / |candidates|)
SMALL_V = 25
CANDIDATES = np.arange(5, SMALL_V)


def small_vocabulary_content(rng, n):
    ids = rng.integers(5, SMALL_V, n)
    ids[rng.random(n) < 0.02] = UNK
    return ids


def masked_outcomes(ratios, n_batches=8):
    """(original, after) of every selected slot of ``n_batches * 512`` sequences masked with ``ratios``."""
    word_mask, word_keep, word_rand = ratios
    spec = MaskingSpec(mask_id=MASK, max_predictions=20, word_mask=word_mask, word_keep=word_keep,
                       word_rand=word_rand)
    probabilities = sampling_probabilities(SMALL_V, SPECIAL)
    ids, _, out = run_masking(small_vocabulary_content, probabilities, n_batches=n_batches, seed=7, spec=spec)
    used = out["mask_weights"] > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], used.shape)
    positions = out["mask_positions"][used]
    np.testing.assert_array_equal(out["mask_ids"][used], ids[rows[used], positions])  # labels: the originals
    return ids[rows[used], positions], out["token_ids"][rows[used], positions]


def assert_rate(measured_count, n, p, what, sigmas=5.0):
    """``measured_count / n`` within ``sigmas`` binomial standard errors of ``p`` (exact when p is 0 or 1)."""
    se = np.sqrt(p * (1 - p) / n)
    rate = measured_count / n
    assert abs(rate - p) <= sigmas * se + 1e-12, f"{what}: {rate:.5f} vs {p:.5f} (n={n}, se={se:.5f})"


@pytest.mark.parametrize("ratios", [(0.5, 0.2, 0.3), (0.8, 0.0, 0.2), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0),
                                    (0.2, 0.7, 0.1)], ids=lambda r: "/".join(map(str, r)))
def test_uneven_replacement_ratios_follow_the_formula(ratios):
    word_mask, word_keep, word_rand = ratios
    original, after = masked_outcomes(ratios)
    n = len(original)
    assert n > 20_000
    assert (original >= 5).all()  # only candidates are ever selected
    chance = 1 / len(CANDIDATES)  # a random replacement that happens to be the original
    expected = {"[MASK]": word_mask, "unchanged": word_keep + word_rand * chance,
                "other token": word_rand * (1 - chance)}
    measured = {"[MASK]": np.sum(after == MASK), "unchanged": np.sum(after == original),
                "other token": np.sum((after != MASK) & (after != original))}
    # Swapping keep and random moves "unchanged" by |keep - rand| * (1 - 1/20), at least 0.095 for every case
    # here, against a tolerance of 5 standard errors (at most 0.016 with n > 20,000).
    for what, p in expected.items():
        assert_rate(measured[what], n, p, what)
    replaced = after[(after != MASK) & (after != original)]
    assert np.isin(replaced, CANDIDATES).all()  # never a special token, never out of the vocabulary


def test_random_replacements_are_uniform_over_the_candidates_and_ignore_the_original():
    original, after = masked_outcomes((0.0, 0.0, 1.0))
    n = len(original)
    assert not (after == MASK).any()
    counts = np.array([np.sum(after == c) for c in CANDIDATES])
    assert counts.sum() == n  # every replacement is a candidate
    for c, count in zip(CANDIDATES, counts):
        assert_rate(count, n, 1 / len(CANDIDATES), f"replacement {c}")
    # Independent of the original: for each original token, its replacement is still uniform, so it is
    # kept with probability 1/20 (not 0: a replacement that avoided the original would be biased).
    for token in CANDIDATES[:5]:
        rows = original == token
        assert_rate(np.sum(after[rows] == token), rows.sum(), 1 / len(CANDIDATES), f"original {token} kept")


def test_keep_only_leaves_the_text_as_it_was():
    """word_keep = 1: every selected slot is a prediction target, but no token changes."""
    spec = MaskingSpec(mask_id=MASK, max_predictions=20, word_mask=0.0, word_keep=1.0, word_rand=0.0)
    rng = np.random.default_rng(5)
    ids, padding = make_batch(rng, 256, 64, uniform_content)
    out = mask_tokens(ids, padding, sampling_probabilities(V, SPECIAL), tf.constant([4, 2], tf.int64), spec)
    np.testing.assert_array_equal(out["token_ids"].numpy(), ids)
    # ... while the usual number of slots was selected (the check above is not vacuous).
    target = 0.15 * ((padding == 1) & ~np.isin(ids, SPECIAL)).sum(axis=1)
    selected = out["mask_weights"].numpy().sum(axis=1)
    assert np.all((selected >= np.floor(target)) & (selected <= np.ceil(target))) and selected.min() >= 1


def test_no_special_token_or_padding_is_ever_selected(uniform_run):
    ids, padding, out = uniform_run
    used = out["mask_weights"] > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], used.shape)
    positions = out["mask_positions"][used]
    assert not np.isin(ids[rows[used], positions], SPECIAL).any()
    assert padding[rows[used], positions].all()


def test_padding_is_read_from_the_padding_mask_not_from_the_ids():
    """Positions beyond a row's length are never selected nor changed, even when they hold ordinary ids
    (a batch padded with something other than [PAD], or a reused buffer)."""
    rng = np.random.default_rng(6)
    ids, padding = make_batch(rng, 512, 64, uniform_content)
    ids = np.where(padding == 1, ids, rng.integers(5, V, ids.shape)).astype(np.int32)  # no [PAD] left
    out = mask_tokens(ids, padding, sampling_probabilities(V, SPECIAL), tf.constant([6, 0], tf.int64), SPEC)
    used = out["mask_weights"].numpy() > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], used.shape)
    assert padding[rows[used], out["mask_positions"].numpy()[used]].all()
    np.testing.assert_array_equal(out["token_ids"].numpy()[padding == 0], ids[padding == 0])
    candidates = ((padding == 1) & ~np.isin(ids, SPECIAL)).sum(axis=1)
    target = 0.15 * candidates  # counted over the real tokens only
    assert np.all((used.sum(axis=1) >= np.floor(target)) & (used.sum(axis=1) <= np.ceil(target)))


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


def test_a_binding_cap_keeps_every_position_equally_likely():
    """0.15 * 100 tokens = 15 > max_predictions 10: every row gets exactly 10, drawn over the whole row (a
    target left at 15 and cut to the first 10 slots would favour early positions)."""
    spec = MaskingSpec(mask_id=MASK, max_predictions=10)
    rng = np.random.default_rng(8)
    ids, padding = make_batch(rng, 2048, 102, lambda r, n: r.integers(5, V, n), min_len=102)  # 100 real tokens
    out = mask_tokens(ids, padding, sampling_probabilities(V, SPECIAL), tf.constant([8, 0], tf.int64), spec)
    used = out["mask_weights"].numpy() > 0
    assert (used.sum(axis=1) == 10).all()
    relative = (out["mask_positions"].numpy()[used] - 1) / 99.0  # 0: first real token, 1: last
    n = len(relative)
    assert_rate(np.sum(relative < 0.5), n, 0.5, "selections in the first half")
    assert abs(relative.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n), relative.mean()


def np_inclusion_probabilities(weights, target):
    """Reference: ``pi = min(1, c * w)`` with ``sum(pi) = target``, capping until no new token is capped."""
    capped = np.zeros(len(weights), bool)
    while True:
        free = np.where(capped, 0.0, weights)
        pi = np.where(capped, 1.0, free * (target - capped.sum()) / free.sum())
        if not (pi[~capped] >= 1).any():
            return np.minimum(pi, 1.0)
        capped |= pi >= 1


def test_capping_redistributes_the_excess_over_several_rounds():
    """Two heavy tokens (weight 1000), three medium (50), 35 light (1); 40 candidates, target 6. Capping the
    heavy ones moves their excess to the medium ones, which then exceed 1 and are capped in turn: the row
    still gets 6 predictions, the rest going to the light tokens (1/35 each)."""
    heavy, medium = [7, 8], [9, 10, 11]
    table = np.ones(V, np.float32)
    table[list(SPECIAL)] = 0
    table[heavy], table[medium] = 1000.0, 50.0
    weights = np.array([1000.0] * 2 + [50.0] * 3 + [1.0] * 35)
    pi = np_inclusion_probabilities(weights, 6.0)
    np.testing.assert_allclose(pi, [1] * 5 + [1 / 35] * 35)  # three rounds: heavy, then medium, then the rest
    rng = np.random.default_rng(9)
    rows = 4096
    ids = np.zeros((rows, 42), np.int32)
    ids[:, 0], ids[:, -1] = CLS, SEP
    for b in range(rows):
        ids[b, 1:-1] = rng.permutation(heavy + medium + list(rng.choice(np.arange(20, V), 35, replace=False)))
    positions, used = select_positions(ids, np.ones_like(ids), tf.constant(table), tf.constant([9, 1], tf.int64),
                                       0.15, 20)
    positions, used = positions.numpy(), used.numpy()
    assert (used.sum(axis=1) == 6).all()
    chosen = np.take_along_axis(ids, positions, axis=1)[used]
    per_row = np.take_along_axis(ids, positions, axis=1) * used
    for token in heavy + medium:
        assert ((per_row == token).sum(axis=1) == 1).all(), token  # inclusion probability 1
    assert np.sum(chosen >= 20) == rows  # the one remaining prediction of each row: a light token


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
