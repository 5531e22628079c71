"""Sentence embeddings: pooling against numpy, the sentence-level terms through the Distiller against numpy
(with padding), clean batches without mask fields, and 2 replicas against 1 device."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.batches import TINY_MODEL, make_batch
from helpers.extras import real_teacher_path
from helpers.step_reference import two_cpu_replicas

from keras_distil import BertMLM, ConfigError, Distiller, student_from_teacher
from keras_distil.config import DistillConfig
from keras_distil.models.pooling import (
    PoolingError,
    SentencePooling,
    pool_hidden_states,
    read_sentence_pooling,
    resolve_pooling,
    write_sentence_transformers_files,
)

SENTENCE_ONLY = {"alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 0.0}


def np_pool(hidden, mask, mode, normalize):
    """sentence-transformers' Pooling + Normalize, written out in numpy."""
    hidden, m = hidden.astype(np.float64), mask.astype(np.float64)[..., None]
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = np.where(m > 0, hidden, -np.inf).max(axis=1)
    else:
        out = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


def np_sentence_terms(s_hidden, t_hidden, mask, mode, normalize):
    es, et = np_pool(s_hidden, mask, mode, normalize), np_pool(t_hidden, mask, mode, normalize)
    mse = ((es - et) ** 2).mean(-1).mean()
    cos = (es * et).sum(-1) / (np.linalg.norm(es, axis=-1) * np.linalg.norm(et, axis=-1))
    return float(mse), float((1 - cos).mean())


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
@pytest.mark.parametrize("normalize", [False, True])
def test_pooling_matches_numpy_with_padding(mode, normalize):
    rng = np.random.default_rng(3)
    hidden = rng.normal(size=(5, 9, 6)).astype("float32")
    lengths = np.array([9, 1, 4, 7, 2])
    mask = (np.arange(9)[None] < lengths[:, None]).astype("int32")
    got = pool_hidden_states(hidden, mask, SentencePooling(mode, normalize)).numpy()
    np.testing.assert_allclose(got, np_pool(hidden, mask, mode, normalize), atol=1e-6)


def test_pooling_of_an_empty_row_is_zero_not_nan():
    hidden = np.ones((2, 3, 4), "float32")
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    for mode in ("mean", "max"):
        got = pool_hidden_states(hidden, mask, SentencePooling(mode, True)).numpy()
        assert np.isfinite(got).all() and not got[1].any()


def test_sentence_transformers_files_round_trip(tmp_path):
    for pooling in (SentencePooling("mean", True, 256), SentencePooling("cls", False), SentencePooling("max", True)):
        folder = tmp_path / pooling.mode
        write_sentence_transformers_files(str(folder), pooling, 32, 64)
        expected = pooling if pooling.max_seq_length else SentencePooling(pooling.mode, pooling.normalize, 64)
        assert read_sentence_pooling(str(folder)) == expected
    assert read_sentence_pooling(str(tmp_path)) is None  # no modules.json: not a sentence-transformers folder


@pytest.mark.parametrize("config, message", [
    ({"pooling_mode_mean_sqrt_len_tokens": True}, "pooling_mode_mean_sqrt_len_tokens is not supported"),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, "exactly one of mean, CLS or max"),
    ({"pooling_mode_lasttoken": True}, "pooling_mode_lasttoken is not supported"),
])
def test_unsupported_pooling_is_named(tmp_path, config, message):
    write_sentence_transformers_files(str(tmp_path), SentencePooling("mean"), 32, 64)
    path = tmp_path / "1_Pooling" / "config.json"
    base = {k: False for k in json.loads(path.read_text()) if k.startswith("pooling_mode")}
    path.write_text(json.dumps({**base, **config}))
    with pytest.raises(PoolingError, match=f"{path}: .*{message}"):
        read_sentence_pooling(str(tmp_path))


def test_a_dense_module_is_refused(tmp_path):
    write_sentence_transformers_files(str(tmp_path), SentencePooling("mean"), 32, 64)
    modules = json.loads((tmp_path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(PoolingError, match="modules.json: modules sentence_transformers.models.Dense are not"):
        read_sentence_pooling(str(tmp_path))


def test_pooling_follows_the_teacher_unless_the_recipe_says_otherwise():
    teacher = SentencePooling("mean", True, 256)
    assert resolve_pooling(DistillConfig(), teacher) == teacher
    assert resolve_pooling(DistillConfig(), None) == SentencePooling("mean", False)
    assert resolve_pooling(DistillConfig(pooling="cls"), teacher) == SentencePooling("cls", True, 256)
    assert resolve_pooling(DistillConfig(normalize_embeddings=False), teacher) == SentencePooling("mean", False, 256)


# ---- the terms through the Distiller -----------------------------------------------------------------


def _models(seed=0, pooling=None):
    keras.utils.set_random_seed(seed)
    teacher = BertMLM(TINY_MODEL, with_mlm_head=False, pooling=pooling, name="teacher")
    student = student_from_teacher(teacher)
    rng = np.random.default_rng(seed)
    for w in student.trainable_weights:  # move the student well away from the copied layers: no term near 0
        value = w.numpy()
        w.assign(value + rng.normal(scale=0.5 * (value.std() + 0.05), size=value.shape).astype(value.dtype))
    return teacher, student


def clean_batch(seed=0, batch_size=8):
    """A clean-text batch (no mask fields), uneven padding, one row without any real token."""
    batch = make_batch(batch_size=batch_size, vocab_size=TINY_MODEL["vocab_size"], seed=seed, min_len=3)
    batch = {k: batch[k] for k in ("token_ids", "padding_mask")}
    batch["padding_mask"][-1] = 0
    batch["token_ids"][-1] = 0
    return batch


@pytest.mark.parametrize("mode, normalize", [("mean", True), ("cls", False), ("max", True)])
def test_sentence_terms_match_numpy(mode, normalize):
    teacher, student = _models(pooling=SentencePooling(mode, normalize))
    config = {**SENTENCE_ONLY, "alpha_sentence_mse": 3.0, "alpha_sentence_cos": 0.5, "alpha_hidden_mse": 0.2}
    distiller = Distiller(teacher, student, config)
    assert distiller.pooling == SentencePooling(mode, normalize)
    distiller.compile(optimizer="sgd")
    batch = clean_batch()
    got = distiller.evaluate(tf.data.Dataset.from_tensors(batch), return_dict=True, verbose=0)
    s, t = student(batch)["hidden"].numpy(), teacher(batch)["hidden"].numpy()
    # The empty row is not a sequence: it must not count in the means.
    real = batch["padding_mask"].sum(1) > 0
    mse, cos = np_sentence_terms(s[real], t[real], batch["padding_mask"][real], mode, normalize)
    mask = batch["padding_mask"].astype("float64")
    hidden_mse = float((((s - t) ** 2).mean(-1) * mask).sum() / mask.sum())
    assert set(got) == {"loss", "sentence_mse", "sentence_cos", "hidden_mse"}
    assert got["sentence_mse"] == pytest.approx(mse, rel=1e-5, abs=1e-7)
    assert got["sentence_cos"] == pytest.approx(cos, rel=1e-5, abs=1e-7)
    assert cos > 0.02 and mse > 0.02 * cos / TINY_MODEL["hidden_size"]  # far from 0: a real check
    assert got["loss"] == pytest.approx(3.0 * mse + 0.5 * cos + 0.2 * hidden_mse, rel=1e-5)


def test_sentence_terms_use_the_recipe_pooling_over_the_teachers():
    teacher, student = _models(pooling=SentencePooling("mean", True))
    distiller = Distiller(teacher, student, {**SENTENCE_ONLY, "alpha_sentence_cos": 1.0, "pooling": "cls",
                                             "normalize_embeddings": False})
    assert distiller.pooling == SentencePooling("cls", False)
    distiller.compile(optimizer="sgd")
    batch = clean_batch()
    got = distiller.evaluate(tf.data.Dataset.from_tensors(batch), return_dict=True, verbose=0)
    real = batch["padding_mask"].sum(1) > 0
    s, t = student(batch)["hidden"].numpy()[real], teacher(batch)["hidden"].numpy()[real]
    assert got["sentence_cos"] == pytest.approx(np_sentence_terms(s, t, batch["padding_mask"][real], "cls",
                                                                  False)[1], rel=1e-5)


def test_clean_batches_refuse_terms_at_masked_positions():
    keras.utils.set_random_seed(0)
    teacher = BertMLM(TINY_MODEL)
    distiller = Distiller(teacher, student_from_teacher(teacher))  # the paper's loss: alpha_mlm 2
    distiller.compile(optimizer="sgd")
    with pytest.raises(ConfigError, match="distill.alpha_mlm: the term needs masked positions, but the batches "
                                          "have no mask_positions, mask_ids, mask_weights"):
        distiller.evaluate(tf.data.Dataset.from_tensors(clean_batch()), verbose=0)


def test_soft_targets_on_all_tokens_work_on_clean_batches(confident_teacher):
    """ce_positions="all" needs no masked position: a headed teacher's soft targets on clean text, against
    numpy over every real token; training on them lowers the term."""
    from helpers.batches import clean, pattern_batch

    teacher = confident_teacher()
    student = student_from_teacher(teacher)
    distiller = Distiller(teacher, student, {"alpha_mlm": 0.0, "alpha_ce": 1.0, "alpha_cos": 0.0,
                                             "temperature": 2.0})
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    batch = clean(pattern_batch(seed=3))
    data = tf.data.Dataset.from_tensors(batch)
    before = distiller.evaluate(data, return_dict=True, verbose=0)
    t = teacher(batch)["logits"].numpy().astype("float64") / 2.0
    s = student(batch)["logits"].numpy().astype("float64") / 2.0
    log_pt = t - np.log(np.exp(t - t.max(-1, keepdims=True)).sum(-1, keepdims=True)) - t.max(-1, keepdims=True)
    log_ps = s - np.log(np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True)) - s.max(-1, keepdims=True)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(-1) * 4.0
    mask = batch["padding_mask"].astype("float64")
    assert before["ce"] == pytest.approx((kl * mask).sum() / mask.sum(), rel=1e-5) and before["ce"] > 0.1
    history = distiller.fit(data.repeat(20), verbose=0).history
    assert set(history) == {"loss", "ce"}
    assert distiller.evaluate(data, return_dict=True, verbose=0)["ce"] < 0.5 * before["ce"]


def _sgd_step(strategy, batch):
    with strategy.scope():
        teacher, student = _models(seed=7, pooling=SentencePooling("mean", True))
        distiller = Distiller(teacher, student, {**SENTENCE_ONLY, "alpha_sentence_mse": 50.0,
                                                 "alpha_sentence_cos": 1.0})
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    before = [w.numpy().copy() for w in student.trainable_weights]
    history = distiller.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    delta = [w.numpy() - b for w, b in zip(student.trainable_weights, before)]
    return delta, history


def test_two_replicas_equal_one_device_for_the_sentence_terms():
    """Plain SGD, no clipping: the update is the gradient itself, so its size is compared, not just its sign.
    Uneven padding across the halves (and an empty row) makes the global sequence count matter."""
    batch = clean_batch(seed=5)
    single, single_h = _sgd_step(tf.distribute.get_strategy(), batch)
    mirrored, mirrored_h = _sgd_step(two_cpu_replicas(), batch)
    assert max(float(np.abs(d).max()) for d in single) > 1e-4  # the step moved the weights
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=1e-4)
    for key in ("loss", "sentence_mse", "sentence_cos"):
        assert mirrored_h[key][0] == pytest.approx(single_h[key][0], rel=1e-5), key


def test_teacher_pooling_is_read_from_the_real_sentence_transformers_folder():
    assert read_sentence_pooling(real_teacher_path()) == SentencePooling("mean", True, 256)
