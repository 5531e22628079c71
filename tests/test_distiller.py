"""The Distiller: loss values against numpy, training behaviour, strategies, saving and resuming."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_MODEL, make_batch
from test_losses import np_cos, np_hidden_mse, np_mlm, np_soft_ce

from keras_distil import BertMLM, ConfigError, Distiller, student_from_teacher


def _models(seed=0, layers=None):
    keras.utils.set_random_seed(seed)
    teacher = BertMLM(TINY_MODEL, name="teacher")
    return teacher, student_from_teacher(teacher, layers)


def _dataset(batch, repeat=1):
    return tf.data.Dataset.from_tensors(batch).repeat(repeat)


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("ce_positions", ["all", "masked"])
def test_loss_terms_match_numpy(ce_positions):
    teacher, student = _models()
    # Perturb the student so that every term is non-zero.
    for w in student.trainable_weights:
        w.assign(w.numpy() * 1.1)
    cfg = {"ce_positions": ce_positions, "alpha_mse": 0.5, "alpha_hidden_mse": 0.3}
    distiller = Distiller(teacher, student, cfg)
    distiller.compile(optimizer="sgd")
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    got = distiller.evaluate(_dataset(batch), return_dict=True, verbose=0)

    inputs = {k: batch[k] for k in ("token_ids", "padding_mask")}
    t, s = teacher(inputs), student(inputs)
    tl, sl = t["logits"].numpy(), s["logits"].numpy()
    pos = batch["mask_positions"][..., None]
    masked_t, masked_s = np.take_along_axis(tl, pos, 1), np.take_along_axis(sl, pos, 1)
    if ce_positions == "all":
        ce_args, w = (sl, tl), batch["padding_mask"].astype("float32")
    else:
        ce_args, w = (masked_s, masked_t), batch["mask_weights"]
    want = {
        "ce": np_soft_ce(*ce_args, 2.0, w),
        "mlm": np_mlm(batch["mask_ids"], masked_s, batch["mask_weights"]),
        "cos": np_cos(s["hidden"].numpy(), t["hidden"].numpy(), batch["padding_mask"]),
        "mse": float((((ce_args[0] - ce_args[1]) ** 2).mean(-1) * w).sum() / w.sum()),
        "hidden_mse": np_hidden_mse(s["hidden"].numpy(), t["hidden"].numpy(), batch["padding_mask"]),
    }
    want["loss"] = 5 * want["ce"] + 2 * want["mlm"] + want["cos"] + 0.5 * want["mse"] + 0.3 * want["hidden_mse"]
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert got["hidden_mse"] == pytest.approx(want["hidden_mse"], rel=1e-5)


def test_loss_falls_and_teacher_is_untouched():
    teacher, student = _models()
    before = _weights(teacher)
    distiller = Distiller(teacher, student, {"ce_positions": "masked"})
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = distiller.fit(_dataset(make_batch(vocab_size=TINY_MODEL["vocab_size"]), 30), epochs=3, verbose=0)
    losses = history.history["loss"]
    assert set(history.history) == {"loss", "ce", "mlm", "cos"}
    assert losses[-1] < 0.7 * losses[0]
    assert _max_diff(before, _weights(teacher)) == 0.0
    assert not any("pooled_dense" in w.path for w in distiller.trainable_weights)
    assert {id(w) for w in distiller.trainable_weights} == {id(w) for w in student.trainable_weights}


def _one_step(strategy, batch, ce_positions):
    with strategy.scope():
        teacher, student = _models(seed=7)
        distiller = Distiller(teacher, student, {"ce_positions": ce_positions, "alpha_hidden_mse": 0.5})
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(_dataset(batch), epochs=1, verbose=0)
    return _weights(student), history.history


@pytest.mark.parametrize("ce_positions", ["all", "masked"])
def test_mirrored_two_replicas_equal_one_device(ce_positions):
    # Uneven lengths and masks across the two halves of the batch: the global normalisation matters.
    batch = make_batch(batch_size=8, vocab_size=TINY_MODEL["vocab_size"], seed=5, min_len=3)
    single_w, single_h = _one_step(tf.distribute.get_strategy(), batch, ce_positions)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    mirrored_w, mirrored_h = _one_step(mirrored, batch, ce_positions)
    assert _max_diff(single_w, mirrored_w) <= 1e-5
    assert set(single_h) == set(mirrored_h) == {"loss", "ce", "mlm", "cos", "hidden_mse"}
    for key in single_h:
        assert mirrored_h[key][0] == pytest.approx(single_h[key][0], rel=1e-5), key


def test_keras_save_load_continue_equals_uninterrupted(tmp_path):
    batches = [make_batch(vocab_size=TINY_MODEL["vocab_size"], seed=s) for s in range(4)]

    def data(part):
        return tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in part]) for k in part[0]})

    teacher, student = _models(seed=11)
    straight = Distiller(teacher, student)
    straight.compile(optimizer=keras.optimizers.Adam(1e-3))
    straight.fit(data(batches), epochs=1, verbose=0)

    teacher, student = _models(seed=11)
    first = Distiller(teacher, student)
    first.compile(optimizer=keras.optimizers.Adam(1e-3))
    first.fit(data(batches[:2]), epochs=1, verbose=0)
    first.save(tmp_path / "distiller.keras")
    resumed = keras.saving.load_model(tmp_path / "distiller.keras")
    assert int(resumed.optimizer.iterations) == 2
    resumed.fit(data(batches[2:]), epochs=1, verbose=0)
    assert _max_diff(_weights(straight.student), _weights(resumed.student)) <= 1e-6


@pytest.mark.parametrize("key", ["alpha_cos", "alpha_hidden_mse"])
def test_hidden_state_terms_need_equal_widths(key):
    teacher, _ = _models()
    narrow = BertMLM(dict(TINY_MODEL, hidden_size=16, num_layers=2))
    config = {"alpha_cos": 0.0, key: 1.0}
    with pytest.raises(ConfigError, match=f"distill.{key}: .*width is 32 and the student's 16; set {key} to 0"):
        Distiller(teacher, narrow, config)
    Distiller(teacher, narrow, {**config, key: 0.0})  # fine without the hidden-state terms


def test_encoder_only_teacher_allows_cosine_only():
    keras.utils.set_random_seed(0)
    teacher = BertMLM(TINY_MODEL, with_mlm_head=False)
    student = student_from_teacher(teacher)
    with pytest.raises(ConfigError, match="no MLM head.*only alpha_cos and alpha_hidden_mse"):
        Distiller(teacher, student)
    distiller = Distiller(teacher, student, {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 1})
    distiller.compile(optimizer="adam")
    history = distiller.fit(_dataset(make_batch(vocab_size=TINY_MODEL["vocab_size"]), 2), verbose=0)
    assert set(history.history) == {"loss", "cos"}


def test_encoder_only_teacher_trains_with_cosine_and_hidden_mse():
    keras.utils.set_random_seed(0)
    teacher = BertMLM(TINY_MODEL, with_mlm_head=False)
    student = student_from_teacher(teacher)  # layers 0 and 2 of 4: far from the teacher's outputs
    before = _weights(teacher)
    distiller = Distiller(teacher, student, {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 1, "alpha_hidden_mse": 1})
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    batch = make_batch(vocab_size=TINY_MODEL["vocab_size"])
    history = distiller.fit(_dataset(batch, 8), epochs=2, verbose=0).history
    assert set(history) == {"loss", "cos", "hidden_mse"}
    assert all(np.isfinite(v) for values in history.values() for v in values)
    assert history["hidden_mse"][-1] < history["hidden_mse"][0] and history["loss"][-1] < history["loss"][0]
    assert _max_diff(before, _weights(teacher)) == 0.0
