"""The Distiller: loss values against numpy, learning from the teacher, saving and resuming, checks.

Every test that trains or evaluates uses the session's confident teacher (tests/helpers/confident_teacher.py)
on pattern batches, where every term is of MLM's order. The fit path's 2 replicas == 1 device (update size
and every term against numpy and a tape gradient) is in test_step_terms_numpy.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import step_reference as ref
from helpers.batches import TINY_MODEL, make_batch, pattern_batch

from keras_distil import BertMLM, ConfigError, Distiller, student_from_teacher


def _models(build_teacher, layers=None, with_mlm_head=True):
    teacher = build_teacher()
    if not with_mlm_head:
        # The same trained encoder without its head (an encoder-only checkpoint). Built from the headed weights:
        # build_teacher(with_mlm_head=False) would train the session's teacher a second time (~25 s).
        trained = {v.path: v for v in teacher.weights}
        teacher = BertMLM(TINY_MODEL, with_mlm_head=False, name="teacher")
        for variable in teacher.weights:
            variable.assign(trained[variable.path])
    return teacher, student_from_teacher(teacher, layers)


def _dataset(batch, repeat=1):
    return tf.data.Dataset.from_tensors(batch).repeat(repeat)


def _stacked(batches):
    return tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in batches]) for k in batches[0]})


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("ce_positions", ["all", "masked"])
def test_loss_terms_match_numpy(confident_teacher, ce_positions):
    teacher, student = _models(confident_teacher)  # student: layers 0 and 2, every term of MLM's order
    alphas = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "alpha_mse": 0.5, "alpha_hidden_mse": 0.3}
    distiller = Distiller(teacher, student, {**alphas, "ce_positions": ce_positions})
    distiller.compile(optimizer="sgd")
    batch = pattern_batch(seed=3, min_len=3)
    got = distiller.evaluate(_dataset(batch), return_dict=True, verbose=0)
    want = ref.reference_logs(teacher, student, [batch], alphas, ce_positions)
    assert set(got) == {"loss", "ce", "mlm", "cos", "mse", "hidden_mse"}
    for key in got:
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=0), key
    assert min(got.values()) > 0.05  # no vanishing term


def test_student_learns_from_the_teacher_and_the_teacher_is_untouched(confident_teacher):
    """With the masked-LM term off (and the training batches' labels blanked: nothing but the teacher to
    learn from) the soft-target and cosine terms fall on held-out rows and the student's top-1 agrees with
    the teacher's at the masked slots far more often."""
    teacher, student = _models(confident_teacher, layers=[0])  # one layer: far from the teacher at first
    before = _weights(teacher)
    distiller = Distiller(teacher, student, {"ce_positions": "masked", "alpha_mlm": 0.0})
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    train = [pattern_batch(batch_size=16, seed=100 + i) for i in range(8)]
    for batch in train:
        batch["mask_ids"] = np.zeros_like(batch["mask_ids"])
    held_out = pattern_batch(batch_size=32, seed=0)

    def measure():
        terms = distiller.evaluate(_dataset(held_out), return_dict=True, verbose=0)
        inputs = {k: held_out[k] for k in ("token_ids", "padding_mask", "mask_positions")}
        used = held_out["mask_weights"] > 0
        s, t = (np.asarray(m(inputs)["logits"]).argmax(-1)[used] for m in (student, teacher))
        return terms, float((s == t).mean())

    (terms0, agree0), history = measure(), distiller.fit(_stacked(train), epochs=2, verbose=0).history
    terms1, agree1 = measure()
    print(f"held out: ce {terms0['ce']:.3f} -> {terms1['ce']:.3f}, cos {terms0['cos']:.3f} -> {terms1['cos']:.3f}, "
          f"top-1 agreement {agree0:.2f} -> {agree1:.2f}")
    assert set(history) == {"loss", "ce", "cos"}
    assert terms1["ce"] < 0.3 * terms0["ce"] and terms1["cos"] < 0.85 * terms0["cos"]
    assert agree0 < 0.7 and agree1 > 0.95
    assert _max_diff(before, _weights(teacher)) == 0.0
    assert not any("pooled_dense" in w.path for w in distiller.trainable_weights)
    assert {id(w) for w in distiller.trainable_weights} == {id(w) for w in student.trainable_weights}


def test_keras_save_load_continue_equals_uninterrupted(tmp_path, confident_teacher):
    batches = [pattern_batch(seed=s) for s in range(4)]

    teacher, student = _models(confident_teacher)
    straight = Distiller(teacher, student)
    straight.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = straight.fit(_stacked(batches), epochs=1, verbose=0).history
    assert min(history[key][0] for key in ("ce", "mlm", "cos")) > 0.05  # every term carries weight

    teacher, student = _models(confident_teacher)
    first = Distiller(teacher, student)
    first.compile(optimizer=keras.optimizers.Adam(1e-3))
    first.fit(_stacked(batches[:2]), epochs=1, verbose=0)
    first.save(tmp_path / "distiller.keras")
    resumed = keras.saving.load_model(tmp_path / "distiller.keras")
    assert int(resumed.optimizer.iterations) == 2
    resumed.fit(_stacked(batches[2:]), epochs=1, verbose=0)
    assert _max_diff(_weights(straight.student), _weights(resumed.student)) <= 1e-6
    assert _max_diff(_weights(straight.student), _weights(student_from_teacher(teacher))) > 1e-3  # it trained


@pytest.mark.parametrize("key", ["alpha_cos", "alpha_hidden_mse"])
def test_hidden_state_terms_of_a_narrower_student_go_through_a_projection(key, confident_teacher):
    """Across widths the last-layer terms compare the student's states mapped to the teacher's width by a
    learned projection (tests/test_layer_terms.py checks the values); same width: no projection."""
    teacher = confident_teacher()
    narrow = BertMLM(dict(TINY_MODEL, hidden_size=16, num_layers=2))
    distiller = Distiller(teacher, narrow, {"alpha_cos": 0.0, key: 1.0})
    assert distiller.projections.names == ["last"]
    assert distiller.projections.maps["last"].kernel.shape == (16, TINY_MODEL["hidden_size"])
    assert Distiller(teacher, narrow, {"alpha_cos": 0.0, key: 0.0}).projections is None
    assert Distiller(teacher, BertMLM(dict(TINY_MODEL, num_layers=2)), {key: 1.0}).projections is None


def test_encoder_only_teacher_allows_cosine_only(confident_teacher):
    teacher, student = _models(confident_teacher, with_mlm_head=False)
    with pytest.raises(ConfigError, match="no MLM head.*only alpha_cos and alpha_hidden_mse"):
        Distiller(teacher, student)
    distiller = Distiller(teacher, student, {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 1})
    distiller.compile(optimizer="adam")
    history = distiller.fit(_dataset(pattern_batch(), 2), verbose=0).history
    assert set(history) == {"loss", "cos"}
    assert history["cos"][0] > 0.05  # the copied layers 0 and 2 are far from the teacher's last states


def test_encoder_only_teacher_trains_with_cosine_and_hidden_mse(confident_teacher):
    teacher, student = _models(confident_teacher, with_mlm_head=False)  # layers 0 and 2 of 4
    before = _weights(teacher)
    distiller = Distiller(teacher, student, {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 1, "alpha_hidden_mse": 1})
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    batch = pattern_batch()
    start = distiller.evaluate(_dataset(batch), return_dict=True, verbose=0)
    assert start["hidden_mse"] > 0.1 and start["cos"] > 0.05  # of MLM's order: a real objective
    history = distiller.fit(_dataset(batch, 8), epochs=2, verbose=0).history
    assert set(history) == {"loss", "cos", "hidden_mse"}
    assert all(np.isfinite(v) for values in history.values() for v in values)
    assert history["hidden_mse"][-1] < 0.8 * history["hidden_mse"][0] and history["loss"][-1] < history["loss"][0]
    assert _max_diff(before, _weights(teacher)) == 0.0


def test_the_teacher_runs_in_inference_mode_even_with_dropout():
    """(make mutants D08) The soft targets and hidden states the student is trained
    on are the teacher's inference outputs, so a teacher with dropout gives the same targets every step."""
    tf.keras.utils.set_random_seed(3)
    teacher = BertMLM(dict(TINY_MODEL, dropout=0.3))
    distiller = Distiller(teacher, student_from_teacher(teacher),
                          {"alpha_ce": 1.0, "alpha_mlm": 1.0, "alpha_cos": 1.0, "ce_positions": "masked"})
    batch = make_batch(seed=2)
    inputs = distiller._model_inputs(batch)
    want = teacher(inputs, training=False)
    for _ in range(2):
        got = distiller.teacher_outputs(inputs)
        for key in ("logits", "hidden"):
            np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    # The same teacher in training mode does differ here: the check above could fail.
    assert np.abs(teacher(inputs, training=True)["hidden"].numpy() - want["hidden"].numpy()).max() > 1e-2


def test_compile_refuses_a_loss_or_metrics_it_would_ignore(confident_teacher):
    teacher = confident_teacher()
    distiller = Distiller(teacher, student_from_teacher(teacher))
    for kwargs in ({"loss": "mse"}, {"metrics": ["accuracy"]}, {"loss_weights": [1.0]}):
        with pytest.raises(ConfigError, match=r"Distiller.compile: (loss|metrics|loss_weights) would be ignored"):
            distiller.compile(optimizer="adam", **kwargs)
    distiller.compile(optimizer="adam", jit_compile=False)  # the optimizer and runtime options are taken
    assert distiller.optimizer is not None
