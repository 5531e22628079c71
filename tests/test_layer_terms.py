"""The layer-wise terms (TinyBERT, MiniLM: keras_distil/layer_terms.py) against numpy, across widths.

The references take nothing from keras_distil.losses or layer_terms: every layer's output comes from a
functional sub-model of KerasHub's backbone (not BertMLM's layer-by-layer forward), the attention
probabilities from Keras' own ``MultiHeadAttention(return_attention_scores=True)``, the values and
projections from the weights in numpy, and the KL, MSE and weighted means are written out here. The
teacher is the session's confident teacher (its attention is far from uniform, so the terms are not ~0 as
they are between two random models); the student is narrower and shallower, with the same or a different
head count.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import step_reference as ref
from helpers.batches import TINY_MODEL, clean, pattern_batch

from keras_distil import Distiller
from keras_distil.config import ConfigError, DistillConfig, StudentConfig
from keras_distil.layer_terms import LAYER_TERMS, uniform_layer_map
from keras_distil.models.student import build_student
from keras_distil.training.step import make_train_step

LAYER_ALPHAS = {"alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 1.0, "alpha_layer_mse": 1.5,
                "alpha_attention": 2.0, "alpha_value_relation": 3.0, "alpha_embedding_mse": 0.5}
REL = 1e-5


def narrow_student(teacher, heads: int, seed: int = 3):
    return build_student(teacher, init="random", seed=seed,
                         shape=StudentConfig(num_layers=2, hidden_size=TINY_MODEL["hidden_size"] // 2, num_heads=heads))


def batch_with_padding(rows: int = 6, seed: int = 11) -> dict:
    batch = clean(pattern_batch(batch_size=rows, seq_len=12, num_predictions=3, seed=seed, min_len=3))
    return batch


# ---- numpy references ------------------------------------------------------------------------------------


def layer_outputs(model, batch):
    """[embeddings, block 1, ..., block N] from a functional sub-model of the KerasHub backbone."""
    backbone = model.backbone
    names = ["embeddings_dropout"] + [layer.name for layer in backbone.transformer_layers]
    features = keras.Model(backbone.inputs, [backbone.get_layer(n).output for n in names])
    inputs = {"token_ids": batch["token_ids"], "segment_ids": np.zeros_like(batch["token_ids"]),
              "padding_mask": batch["padding_mask"]}
    return [np.asarray(x, np.float64) for x in features(inputs, training=False)]


def keras_attention_probs(model, index, x, padding):
    """Block ``index``'s attention probabilities [B, h, L, L] from Keras' MultiHeadAttention itself."""
    attention = model.backbone.transformer_layers[index]._self_attention_layer
    mask = np.broadcast_to(padding[:, None, :].astype(bool), (padding.shape[0],) * 1 + (padding.shape[1],) * 2)
    x = tf.constant(x, tf.float32)
    _, probs = attention(query=x, value=x, attention_mask=mask, return_attention_scores=True, training=False)
    return np.asarray(probs, np.float64)


def np_values(model, index, x):
    value = model.backbone.transformer_layers[index]._self_attention_layer._value_dense
    kernel, bias = (np.asarray(w, np.float64) for w in value.weights)
    return np.einsum("blh,hnd->blnd", x, kernel) + bias  # [B, L, heads, d]


def np_softmax_over_real_keys(scores, padding):
    keys = padding[:, None, None, :].astype(bool)
    scores = np.where(keys, scores, -np.inf)
    scores = scores - scores.max(-1, keepdims=True)
    e = np.where(keys, np.exp(scores), 0.0)
    return e / e.sum(-1, keepdims=True)


def np_kl(p_teacher, p_student, padding):
    """KL(t || s) over real keys, mean over heads -> [B, L]."""
    keys = padding[:, None, None, :].astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(keys & (p_teacher > 0), p_teacher * (np.log(p_teacher) - np.log(p_student)), 0.0)
    return terms.sum(-1).mean(1)


def np_value_relation(values, heads, padding):
    b, length = values.shape[:2]
    v = values.reshape(b, length, heads, -1)
    scores = np.einsum("bqhd,bkhd->bhqk", v, v) / np.sqrt(v.shape[-1])
    return np_softmax_over_real_keys(scores, padding)


def np_project(distiller, name, x):
    dense = distiller.projections.maps[name]
    kernel, bias = (np.asarray(w, np.float64) for w in dense.weights)
    return x @ kernel + bias


def weighted(values, padding):
    return float((values * padding).sum() / padding.sum())


def reference_terms(distiller, batch) -> dict:
    """Each layer-wise term of ``distiller`` on ``batch``, in numpy (relation_layers "mapped")."""
    teacher, student = distiller.teacher, distiller.student
    pad = batch["padding_mask"].astype(np.float64)
    t_layers, s_layers = layer_outputs(teacher, batch), layer_outputs(student, batch)
    layer_map = uniform_layer_map(len(s_layers) - 1, len(t_layers) - 1)
    narrower = student.model_config.hidden_size != teacher.model_config.hidden_size
    same_heads = student.model_config.num_heads == teacher.model_config.num_heads
    heads = teacher.model_config.num_heads

    def projected(name, x):
        return np_project(distiller, name, x) if narrower else x

    out = {"embedding_mse": weighted(((projected("embeddings", s_layers[0]) - t_layers[0]) ** 2).mean(-1), pad)}
    out["layer_mse"] = weighted(np.mean([((projected(f"layer_{j}", s_layers[j + 1]) - t_layers[i + 1]) ** 2).mean(-1)
                                         for j, i in enumerate(layer_map)], axis=0), pad)
    attention, values = [], []
    for j, i in enumerate(layer_map):
        p_s = keras_attention_probs(student, j, s_layers[j], pad)
        p_t = keras_attention_probs(teacher, i, t_layers[i], pad)
        if not same_heads:
            p_s, p_t = p_s.mean(1, keepdims=True), p_t.mean(1, keepdims=True)
        attention.append(np_kl(p_t, p_s, pad))
        values.append(np_kl(np_value_relation(np_values(teacher, i, t_layers[i]), heads, pad),
                            np_value_relation(np_values(student, j, s_layers[j]), heads, pad), pad))
    out["attention"] = weighted(np.mean(attention, axis=0), pad)
    out["value_relation"] = weighted(np.mean(values, axis=0), pad)
    return out


# ---- the terms against numpy --------------------------------------------------------------------------


@pytest.mark.parametrize("student_heads", [TINY_MODEL["num_heads"], 2], ids=["same-heads", "other-heads"])
def test_each_layer_term_matches_numpy(confident_teacher, student_heads):
    teacher = confident_teacher()
    student = narrow_student(teacher, student_heads)
    distiller = Distiller(teacher, student, {**LAYER_ALPHAS, "relation_layers": "mapped"})
    assert set(LAYER_TERMS) <= set(distiller.active_terms)
    batch = batch_with_padding()
    inputs = {k: tf.constant(batch[k]) for k in ("token_ids", "padding_mask")}
    terms = distiller.compute_terms(batch, distiller.student_outputs(inputs, training=False),
                                    distiller.teacher_outputs(inputs))
    want = reference_terms(distiller, batch)
    for name in LAYER_TERMS:
        assert float(terms[name]) == pytest.approx(want[name], rel=REL), name
        assert want[name] > 1e-3, (name, want)  # a vanishing term would check nothing


def test_last_relation_layers_compare_the_last_blocks_only(confident_teacher):
    teacher = confident_teacher()
    student = narrow_student(teacher, TINY_MODEL["num_heads"])
    config = {**LAYER_ALPHAS, "alpha_layer_mse": 0.0, "alpha_embedding_mse": 0.0}
    last = Distiller(teacher, student, config)  # relation_layers: "last" (MiniLM), the default
    assert last.layer_terms.relation_pairs == [(1, TINY_MODEL["num_layers"] - 1)]
    batch = batch_with_padding()
    pad = batch["padding_mask"].astype(np.float64)
    inputs = {k: tf.constant(batch[k]) for k in ("token_ids", "padding_mask")}
    terms = last.compute_terms(batch, last.student_outputs(inputs, False), last.teacher_outputs(inputs))
    t_layers, s_layers = layer_outputs(teacher, batch), layer_outputs(student, batch)
    n = TINY_MODEL["num_layers"] - 1
    want = weighted(np_kl(keras_attention_probs(teacher, n, t_layers[n], pad),
                          keras_attention_probs(student, 1, s_layers[1], pad), pad), pad)
    assert float(terms["attention"]) == pytest.approx(want, rel=REL)


def test_a_narrow_students_last_layer_terms_go_through_a_projection(confident_teacher):
    teacher = confident_teacher()
    student = narrow_student(teacher, 2)
    distiller = Distiller(teacher, student, {"alpha_ce": 1.0, "alpha_mlm": 0.0, "alpha_cos": 1.0,
                                             "alpha_hidden_mse": 1.0})
    assert distiller.projections.names == ["last"] and distiller.layer_terms is None
    batch = batch_with_padding()
    pad = batch["padding_mask"].astype(np.float64)
    inputs = {k: tf.constant(batch[k]) for k in ("token_ids", "padding_mask")}
    student_out = distiller.student_outputs(inputs, False)
    assert "layers" not in student_out  # no layer-wise term: no per-layer work
    terms = distiller.compute_terms(batch, student_out, distiller.teacher_outputs(inputs))
    hs = np_project(distiller, "last", np.asarray(student_out["hidden"], np.float64))
    ht = np.asarray(teacher(inputs)["hidden"], np.float64)
    cos = 1 - (hs * ht).sum(-1) / (np.linalg.norm(hs, axis=-1) * np.linalg.norm(ht, axis=-1))
    assert float(terms["cos"]) == pytest.approx(weighted(cos, pad), rel=REL)
    assert float(terms["hidden_mse"]) == pytest.approx(weighted(((hs - ht) ** 2).mean(-1), pad), rel=REL)
    # The projections train with the student but are not part of it.
    assert len(distiller.trained_variables) == len(student.trainable_variables) + 2
    assert not any("project" in v.path for v in student.weights)


def test_the_default_objective_builds_no_projection_and_asks_for_no_layers(confident_teacher):
    teacher = confident_teacher()
    distiller = Distiller(teacher, build_student(teacher), DistillConfig())
    assert distiller.layer_terms is None and distiller.projections is None
    assert distiller._layers_kwarg == {}
    assert distiller.trained_variables == distiller.student.trainable_variables


# ---- 1 device == 2 replicas == accumulation --------------------------------------------------------------


def one_step(replicas: int, k: int, teacher_fn, batch) -> tuple[dict, list]:
    strategy = tf.distribute.get_strategy() if replicas == 1 else ref.two_cpu_replicas()
    with strategy.scope():
        teacher = teacher_fn()
        student = narrow_student(teacher, 2)
        distiller = Distiller(teacher, student, {**LAYER_ALPHAS, "relation_layers": "mapped"})
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    before = [v.numpy().copy() for v in distiller.trained_variables]
    rows = len(batch["token_ids"]) // k
    parts = [{key: v[i * rows:(i + 1) * rows] for key, v in batch.items()} for i in range(k)]
    step = make_train_step(distiller, strategy, k)
    logs = step(*[ref.distribute(strategy, part) for part in parts])
    update = [v.numpy() - b for v, b in zip(distiller.trained_variables, before)]
    return {key: float(v) for key, v in logs.items()}, update


def test_layer_terms_agree_on_one_device_two_replicas_and_accumulated(confident_teacher):
    batch = batch_with_padding(rows=8, seed=5)
    order = np.argsort(batch["padding_mask"].sum(1), kind="stable")  # short rows on one replica
    batch = {key: v[order] for key, v in batch.items()}
    runs = {(r, k): one_step(r, k, confident_teacher, batch) for r, k in ((1, 1), (2, 2))}
    (logs, update) = runs[(1, 1)]
    for key, (other_logs, other_update) in runs.items():
        for name in ("loss", *LAYER_TERMS, "tokens"):
            assert other_logs[name] == pytest.approx(logs[name], rel=REL), (key, name)
        assert ref.relative_error(other_update, update) <= 1e-5, key  # projections included


# ---- the configuration's checks ----------------------------------------------------------------------------


def test_a_layer_map_of_the_wrong_length_or_range_is_refused(confident_teacher):
    teacher = confident_teacher()
    student = narrow_student(teacher, 2)
    with pytest.raises(ConfigError, match=r"distill.layer_map: \[1\] has 1 entries; the student has 2"):
        Distiller(teacher, student, {**LAYER_ALPHAS, "layer_map": [1]})
    with pytest.raises(ConfigError, match=r"distill.layer_map: \[7\] out of range"):
        Distiller(teacher, student, {**LAYER_ALPHAS, "layer_map": [0, 7]})


def test_relation_heads_must_divide_both_widths(confident_teacher):
    teacher = confident_teacher()
    with pytest.raises(ConfigError, match="distill.relation_heads: 3 does not divide the teacher's width"):
        Distiller(teacher, narrow_student(teacher, 2), {**LAYER_ALPHAS, "relation_heads": 3})


def test_a_student_width_that_does_not_divide_into_its_heads_is_refused(confident_teacher):
    teacher = confident_teacher()
    with pytest.raises(ConfigError, match="student.num_heads: a student 12 wide does not divide into 5 heads"):
        build_student(teacher, init="random", shape=StudentConfig(hidden_size=12, num_heads=5))
    with pytest.raises(ConfigError, match="student.hidden_size: a student 10 wide does not divide into 4 heads"):
        build_student(teacher, init="random", shape=StudentConfig(hidden_size=10))
    with pytest.raises(ConfigError, match="student.num_layers: got 3, but distill.student_layers"):
        build_student(teacher, [0, 2], shape=StudentConfig(num_layers=3))
