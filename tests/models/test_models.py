"""BertMLM against a numpy BERT (Hugging Face's math), and student initialisation from the teacher."""

import math
import re

import keras
import numpy as np
import pytest
from helpers.batches import TINY_MODEL, make_batch

from keras_distil.config import ConfigError
from keras_distil.models.bert import BertMLM
from keras_distil.models.student import build_student, default_student_layers, student_from_teacher


@pytest.fixture(scope="module")
def teacher():
    keras.utils.set_random_seed(3)
    model = BertMLM(TINY_MODEL)
    # Non-trivial LayerNorm and bias values, so that a swapped or skipped weight shows.
    rng = np.random.default_rng(3)
    for w in model.weights:
        if w.path.endswith(("gamma", "beta", "bias")):
            w.assign(w.numpy() + rng.normal(0, 0.1, w.shape).astype("float32"))
    return model


def _ln(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def numpy_bert(model, token_ids, padding_mask):
    """Hugging Face BertForMaskedLM's forward pass in numpy, from the Keras weights."""
    w = {v.path: v.numpy().astype("float64") for v in model.weights}
    L = token_ids.shape[1]
    x = w["token_embedding/embeddings"][token_ids] + w["position_embedding/embeddings"][:L] + w["segment_embedding/embeddings"][0]
    x = _ln(x, w["embeddings_layer_norm/gamma"], w["embeddings_layer_norm/beta"])
    bias = np.where(padding_mask[:, None, None, :] > 0, 0.0, -1e9)
    for i in range(model.model_config.num_layers):
        p = f"transformer_layer_{i}/"
        a = p + "self_attention_layer/"
        q, k, v = (np.einsum("bld,dhk->bhlk", x, w[a + n + "/kernel"]) + w[a + n + "/bias"].transpose(0, 1)[None, :, None]
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = probs @ v
        attn = np.einsum("bhlk,hkd->bld", ctx, w[a + "attention_output/kernel"]) + w[a + "attention_output/bias"]
        x = _ln(x + attn, w[p + "self_attention_layer_norm/gamma"], w[p + "self_attention_layer_norm/beta"])
        h = _gelu(x @ w[p + "feedforward_intermediate_dense/kernel"] + w[p + "feedforward_intermediate_dense/bias"])
        h = h @ w[p + "feedforward_output_dense/kernel"] + w[p + "feedforward_output_dense/bias"]
        x = _ln(x + h, w[p + "feedforward_layer_norm/gamma"], w[p + "feedforward_layer_norm/beta"])
    h = _gelu(x @ w["mlm_head/transform_dense/kernel"] + w["mlm_head/transform_dense/bias"])
    h = _ln(h, w["mlm_head/transform_layer_norm/gamma"], w["mlm_head/transform_layer_norm/beta"])
    logits = h @ w["token_embedding/embeddings"].T + w["mlm_head/output_bias"]
    return x, logits


def _inputs(batch, positions=False):
    keys = ("token_ids", "padding_mask") + (("mask_positions",) if positions else ())
    return {k: batch[k] for k in keys}


def test_forward_matches_numpy_hf_bert(teacher):
    batch = make_batch(batch_size=3, seq_len=12, vocab_size=TINY_MODEL["vocab_size"])
    out = teacher(_inputs(batch))
    hidden, logits = numpy_bert(teacher, batch["token_ids"], batch["padding_mask"])
    real = batch["padding_mask"].astype(bool)
    assert np.abs(out["hidden"].numpy()[real] - hidden[real]).max() < 1e-4
    assert np.abs(out["logits"].numpy()[real] - logits[real]).max() < 1e-4


def test_masked_position_logits_equal_gathered_full_logits(teacher):
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    full = teacher(_inputs(batch))["logits"].numpy()
    at = teacher(_inputs(batch, positions=True))["logits"].numpy()
    want = np.take_along_axis(full, batch["mask_positions"][..., None], axis=1)
    assert at.shape == (8, 4, TINY_MODEL["vocab_size"])
    np.testing.assert_allclose(at, want, atol=1e-5)


def test_padding_content_does_not_change_real_tokens(teacher):
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    other = dict(batch, token_ids=np.where(batch["padding_mask"] > 0, batch["token_ids"], 7))
    a, b = teacher(_inputs(batch))["hidden"].numpy(), teacher(_inputs(other))["hidden"].numpy()
    real = batch["padding_mask"].astype(bool)
    np.testing.assert_allclose(a[real], b[real], atol=1e-5)


def test_student_copies_chosen_layers_and_embeddings(teacher):
    student = student_from_teacher(teacher, layers=[1, 3])
    assert student.model_config.num_layers == 2
    assert student.model_config.hidden_size == teacher.model_config.hidden_size
    t, s = teacher.backbone, student.backbone
    for name in ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"):
        for a, b in zip(getattr(s, name).weights, getattr(t, name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for si, ti in ((0, 1), (1, 3)):
        sw, tw = s.transformer_layers[si].weights, t.transformer_layers[ti].weights
        assert len(sw) == len(tw) == 16
        for a, b in zip(sw, tw):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(student.mlm_head.weights, teacher.mlm_head.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_student_with_all_teacher_layers_reproduces_teacher_exactly(teacher):
    student = student_from_teacher(teacher, layers=list(range(4)))
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    a, b = teacher(_inputs(batch, True)), student(_inputs(batch, True))
    np.testing.assert_array_equal(a["hidden"].numpy(), b["hidden"].numpy())
    np.testing.assert_array_equal(a["logits"].numpy(), b["logits"].numpy())


def test_default_layers_every_other():
    assert default_student_layers(12) == [0, 2, 4, 6, 8, 10]
    assert default_student_layers(4) == [0, 2]


@pytest.mark.parametrize("layers, match", [([0, 4], r"\[4\] out of range.*4 layers"), ([-1], "out of range"),
                                           ([1, 1], "repeats"), ([], "empty")])
def test_bad_layer_lists_raise(teacher, layers, match):
    with pytest.raises(ConfigError, match=match):
        student_from_teacher(teacher, layers=layers)


def _arrays(model):
    return [w.numpy() for w in model.weights]


def test_random_student_has_the_teacher_layers_shapes_and_fresh_weights(teacher):
    copied = student_from_teacher(teacher, layers=[1, 3])
    fresh = build_student(teacher, layers=[1, 3], init="random", seed=11)
    assert fresh.model_config == copied.model_config and fresh.model_config.num_layers == 2
    assert fresh.mlm_head is not None and fresh.dtype_policy.name == teacher.dtype_policy.name
    assert [w.shape for w in fresh.weights] == [w.shape for w in copied.weights]
    # Every matrix differs from the teacher's (LayerNorms and biases start at BERT's constants; the
    # fixture's teacher has perturbed ones, so those differ too).
    for w, a, b in zip(fresh.weights, _arrays(fresh), _arrays(copied)):
        assert not np.allclose(a, b), w.path
    again = build_student(teacher, layers=[1, 3], init="random", seed=11)
    for a, b in zip(_arrays(fresh), _arrays(again)):
        np.testing.assert_array_equal(a, b)
    other = build_student(teacher, layers=[1, 3], init="random", seed=12)
    kernels = [i for i, w in enumerate(fresh.weights) if w.path.endswith(("kernel", "embeddings"))]
    assert kernels and all(not np.allclose(_arrays(fresh)[i], _arrays(other)[i]) for i in kernels)


def test_random_student_follows_the_teachers_depth_and_head():
    headless = BertMLM(TINY_MODEL, with_mlm_head=False)
    student = build_student(headless, init="random", seed=1)  # default: half the teacher's 4 layers
    assert student.model_config.num_layers == 2 and student.mlm_head is None and not student.with_mlm_head
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    assert student(_inputs(batch))["hidden"].shape == (8, 16, TINY_MODEL["hidden_size"])


def test_student_init_is_checked(teacher):
    with pytest.raises(ConfigError, match=re.escape("distill.student_init: got 'scratch'; accepted: 'teacher' | 'random'")):
        build_student(teacher, init="scratch")
    with pytest.raises(ConfigError, match="distill.student_layers"):
        build_student(teacher, layers=[0, 9], init="random")


def test_keras_round_trip_keeps_numerics_and_frozen_state(teacher, tmp_path):
    teacher.trainable = False
    try:
        teacher.save(tmp_path / "t.keras")
        loaded = keras.saving.load_model(tmp_path / "t.keras")
    finally:
        teacher.trainable = True
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    np.testing.assert_array_equal(teacher(_inputs(batch))["logits"].numpy(), loaded(_inputs(batch))["logits"].numpy())
    assert loaded.trainable_weights == []


def test_pooler_is_frozen(teacher):
    paths = {w.path for w in teacher.trainable_weights}
    assert not any("pooled_dense" in p for p in paths)
    assert "mlm_head/output_bias" in paths
