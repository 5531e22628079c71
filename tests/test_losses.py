"""Each loss against an independent numpy formula, with padding and empty-mask edge cases."""

import numpy as np
import pytest
import tensorflow as tf

from keras_distil import losses

TOL = 1e-5


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_weighted_mean(v, w):
    return float((v * w).sum() / w.sum()) if w.sum() > 0 else 0.0


def np_soft_ce(s, t, T, w):
    lp_t, lp_s = np_log_softmax(t / T), np_log_softmax(s / T)
    kl = (np.exp(lp_t) * (lp_t - lp_s)).sum(-1)
    return T * T * np_weighted_mean(kl, w)


def np_mlm(labels, logits, w):
    lp = np_log_softmax(logits)
    nll = -np.take_along_axis(lp, labels[..., None], -1)[..., 0]
    return np_weighted_mean(nll, w)


def np_cos(hs, ht, mask):
    cos = (hs * ht).sum(-1) / (np.linalg.norm(hs, axis=-1) * np.linalg.norm(ht, axis=-1))
    return np_weighted_mean(1 - cos, mask)


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    B, L, V, H = 3, 7, 50, 16
    mask = (np.arange(L)[None] < np.array([[7], [4], [2]])).astype("float32")
    return dict(
        s=rng.normal(0, 3, (B, L, V)).astype("float32"),
        t=rng.normal(0, 3, (B, L, V)).astype("float32"),
        hs=rng.normal(size=(B, L, H)).astype("float32"),
        ht=rng.normal(size=(B, L, H)).astype("float32"),
        labels=rng.integers(0, V, (B, L)).astype("int32"),
        mask=mask,
        weights=(mask * rng.integers(0, 2, (B, L))).astype("float32"),
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.5])
def test_soft_target_ce_matches_numpy(data, temperature):
    got = losses.soft_target_cross_entropy(data["s"], data["t"], temperature, data["mask"])
    want = np_soft_ce(data["s"], data["t"], temperature, data["mask"])
    assert abs(float(got) - want) <= TOL * max(1, abs(want))


def test_soft_target_ce_is_zero_when_student_equals_teacher(data):
    got = losses.soft_target_cross_entropy(data["t"], data["t"], 2.0, data["mask"])
    assert abs(float(got)) < 1e-6


def test_soft_target_ce_is_stable_for_huge_logits(data):
    big = data["s"] * 1e4  # exp() would overflow without log-softmax
    got = float(losses.soft_target_cross_entropy(big, data["t"] * 1e4, 2.0, data["mask"]))
    want = np_soft_ce(big.astype("float64"), (data["t"] * 1e4).astype("float64"), 2.0, data["mask"])
    assert np.isfinite(got) and abs(got - want) <= 1e-5 * abs(want)


def test_mlm_cross_entropy_matches_numpy(data):
    got = losses.mlm_cross_entropy(data["labels"], data["s"], data["weights"])
    assert abs(float(got) - np_mlm(data["labels"], data["s"], data["weights"])) <= TOL


def test_mlm_cross_entropy_uses_fractional_weights(data):
    w = data["weights"] * 0.25 + data["mask"] * 0.5
    got = losses.mlm_cross_entropy(data["labels"], data["s"], w)
    assert abs(float(got) - np_mlm(data["labels"], data["s"], w)) <= TOL


def test_cosine_loss_matches_numpy_and_ignores_padding(data):
    got = losses.cosine_loss(data["hs"], data["ht"], data["mask"])
    assert abs(float(got) - np_cos(data["hs"], data["ht"], data["mask"])) <= TOL
    garbage = data["hs"].copy()
    garbage[data["mask"] == 0] = 1e6  # padded positions must not matter
    assert abs(float(losses.cosine_loss(garbage, data["ht"], data["mask"])) - float(got)) <= TOL


def test_logits_mse_matches_numpy(data):
    got = losses.logits_mse(data["s"], data["t"], data["mask"])
    want = np_weighted_mean(((data["s"] - data["t"]) ** 2).mean(-1), data["mask"])
    assert abs(float(got) - want) <= TOL * max(1, want)


def np_hidden_mse(hs, ht, mask):
    """Mean over non-pad tokens of the mean over hidden dims of (h_s - h_t)^2, in float64."""
    per_token = ((hs.astype("float64") - ht.astype("float64")) ** 2).mean(-1)
    return float((per_token * mask).sum() / mask.sum())


def test_hidden_mse_matches_numpy_and_ignores_padding(data):
    mask = data["mask"]  # rows of 7, 4 and 2 real tokens: a plain mean over tokens would differ
    want = np_hidden_mse(data["hs"], data["ht"], mask)
    got = float(losses.hidden_mse(data["hs"], data["ht"], mask))
    assert abs(got - want) <= TOL * max(1, want)
    unweighted_rows = np.mean([np_hidden_mse(data["hs"][b], data["ht"][b], mask[b]) for b in range(3)])
    assert abs(unweighted_rows - want) > 10 * TOL  # the uneven padding is actually tested
    garbage = data["hs"].copy()
    garbage[mask == 0] = 1e6
    assert abs(float(losses.hidden_mse(garbage, data["ht"], mask)) - got) <= TOL * max(1, want)
    assert float(losses.hidden_mse(data["ht"], data["ht"], mask)) == 0.0


def test_empty_masks_give_zero_not_nan(data):
    zero = np.zeros_like(data["mask"])
    values = [
        losses.soft_target_cross_entropy(data["s"], data["t"], 2.0, zero),
        losses.mlm_cross_entropy(data["labels"], data["s"], zero),
        losses.cosine_loss(data["hs"], data["ht"], zero),
        losses.logits_mse(data["s"], data["t"], zero),
        losses.hidden_mse(data["hs"], data["ht"], zero),
    ]
    assert [float(v) for v in values] == [0.0] * 5


def test_empty_mask_has_finite_zero_gradient(data):
    s = tf.Variable(data["s"])
    with tf.GradientTape() as tape:
        loss = losses.mlm_cross_entropy(data["labels"], s, np.zeros_like(data["mask"]))
    grad = tape.gradient(loss, s)
    assert np.all(np.isfinite(grad.numpy())) and float(tf.reduce_max(tf.abs(grad))) == 0.0


def test_zero_vectors_give_cosine_distance_one():
    z = np.zeros((1, 2, 4), "float32")
    assert float(losses.cosine_loss(z, z, np.ones((1, 2), "float32"))) == pytest.approx(1.0)


def test_losses_are_float32_under_half_precision_inputs(data):
    s16, t16 = tf.constant(data["s"], tf.bfloat16), tf.constant(data["t"], tf.bfloat16)
    got = losses.soft_target_cross_entropy(s16, t16, 2.0, data["mask"])
    assert got.dtype == tf.float32
    want = np_soft_ce(s16.numpy().astype("float32"), t16.numpy().astype("float32"), 2.0, data["mask"])
    assert abs(float(got) - want) <= TOL * max(1, want)


def np_cosine_distance(a, b, eps=1e-8):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=-1), eps) * np.maximum(np.linalg.norm(b, axis=-1), eps)
    return 1.0 - (a * b).sum(-1) / norms


@pytest.mark.parametrize("scale", [1e-3, 0.1, 1.0, 30.0])
def test_cosine_distance_does_not_depend_on_the_vectors_scale(scale):
    """(make mutants L08) The clamp only guards zero vectors; a cosine of vectors of
    norm 0.1 is still their cosine (mean-pooled or normalised embeddings can be that small)."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 3, 5, 8)).astype("float32")
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    got = losses.cosine_distance_per_token(a * scale, b * scale).numpy()
    np.testing.assert_allclose(got, np_cosine_distance(a, b), atol=1e-5)
    same = losses.cosine_distance_per_token(a * scale, a * scale * 2).numpy()
    np.testing.assert_allclose(same, 0.0, atol=1e-5)


def np_softmax(x):
    return np.exp(np_log_softmax(x))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_soft_targets_and_mlm_match_numpy_values_and_gradients(data, temperature, dtype):
    """The fused pass (the Distiller's default path) against numpy: per-token values, and the gradient of
    a weighted sum against the closed forms T (softmax(s/T) - softmax(t/T)) and softmax(s) - onehot."""
    s = tf.cast(tf.constant(data["s"]), dtype)
    s64 = np.asarray(tf.cast(s, tf.float32), np.float64)  # what the function sees after the cast
    a, b = data["mask"], data["weights"]
    with tf.GradientTape() as tape:
        tape.watch(s)
        kl, ce = losses.soft_targets_and_mlm_per_token(s, data["t"], data["labels"], temperature)
        total = tf.reduce_sum(kl * a) + 3.0 * tf.reduce_sum(ce * b)
    grad_tensor = tape.gradient(total, s)
    grad = np.asarray(tf.cast(grad_tensor, tf.float32))
    lp_t, lp_s = np_log_softmax(data["t"] / temperature), np_log_softmax(s64 / temperature)
    want_kl = temperature**2 * (np.exp(lp_t) * (lp_t - lp_s)).sum(-1)
    want_ce = -np.take_along_axis(np_log_softmax(s64), data["labels"][..., None], -1)[..., 0]
    np.testing.assert_allclose(kl, want_kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ce, want_ce, rtol=1e-5, atol=1e-5)
    onehot = np.eye(s64.shape[-1])[data["labels"]]
    want_grad = (a[..., None] * temperature * (np_softmax(s64 / temperature) - np.exp(lp_t))
                 + 3.0 * b[..., None] * (np_softmax(s64) - onehot))
    np.testing.assert_allclose(grad, want_grad, atol=1e-5 if dtype == "float32" else 2e-2)
    assert grad_tensor.dtype == s.dtype  # the logits' own dtype flows back into the bfloat16 graph


def test_fused_soft_targets_and_mlm_equal_the_separate_terms_and_their_autodiff(data):
    s = tf.constant(data["s"])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(s)
        kl, ce = losses.soft_targets_and_mlm_per_token(s, data["t"], data["labels"], 2.0)
        fused = tf.reduce_sum(kl * data["mask"]) + tf.reduce_sum(ce * data["weights"])
        separate = (tf.reduce_sum(losses.soft_target_kl_per_token(s, data["t"], 2.0) * data["mask"])
                    + tf.reduce_sum(losses.mlm_cross_entropy_per_token(data["labels"], s) * data["weights"]))
    assert abs(float(fused) - float(separate)) <= 1e-5 * abs(float(separate))
    np.testing.assert_allclose(tape.gradient(fused, s), tape.gradient(separate, s), atol=1e-6)
