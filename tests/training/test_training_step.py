"""The distributed step through the Trainer: accumulation and replicas give the effective batch's update on
one device, in size as well as direction (plain SGD: the update is the gradient), with the confident teacher
(every term of MLM's order, tests/helpers/confident_teacher.py) on pattern batches."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import step_reference as ref
from helpers.batches import make_batch, pattern_batch
from helpers.training import build_distiller, global_batches, read_events, slices_dataset_fn, weights

from keras_distil import TrainConfig
from keras_distil.training import Trainer, WarmupLinearDecay

pytestmark = pytest.mark.usefixtures("confident_teacher")  # asserts the teacher's confidence once
TRAIN = TrainConfig(learning_rate=1e-2, warmup_prop=0.0)
# The Distiller's default objective (the paper's), as the tape reference writes it.
PAPER = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0}


def _sgd(peak, steps, clipnorm=None):
    """Plain SGD (no momentum) on the runtime's schedule: no warm-up, linear decay over ``steps``."""
    return lambda: keras.optimizers.SGD(WarmupLinearDecay(peak, steps, 0), global_clipnorm=clipnorm)


def _train(strategy, batches, micro_batch, k, steps, optimizer, **kw):
    distiller = build_distiller(strategy, TRAIN, steps, optimizer=optimizer)
    before = weights(distiller.student)
    trainer = Trainer(distiller, strategy, steps, micro_batches=k, console=False,
                      hparams={"train": TRAIN.to_dict()}, **kw)
    logs = trainer.fit(slices_dataset_fn(batches, micro_batch))
    return [a - b for a, b in zip(weights(distiller.student), before)], logs


def test_four_micro_batches_of_8_equal_one_batch_of_32(tmp_path):
    # Uneven padding and masks: a mean of micro-batch means would differ from the 32-batch mean, and with
    # SGD a sum of micro-batch gradients of the wrong scale moves the weights by the wrong amount.
    batches = global_batches(pattern_batch, 2, 32, seed=3)
    default = tf.distribute.get_strategy()
    whole, whole_logs = _train(default, batches, 32, 1, 2, _sgd(0.02, 2))
    accumulated, acc_logs = _train(default, batches, 8, 4, 2, _sgd(0.02, 2), logdir=str(tmp_path / "logs"),
                                   log_every=1)
    error = ref.relative_error(accumulated, whole)
    print(f"4x8 vs 1x32 after 2 SGD steps: |update| {ref.global_norm(whole):.3f}, relative difference {error:.1e}")
    assert error <= 1e-5
    assert ref.global_norm(whole) > 0.5  # the weights moved: the comparison is not between untouched models
    for key in ("loss", "ce", "mlm", "cos", "grad_norm", "tokens", "masked"):
        assert acc_logs[key] == pytest.approx(whole_logs[key], rel=1e-5), key
    assert min(acc_logs[key] for key in ("ce", "mlm", "cos")) > 0.05  # every term carries weight

    # TensorBoard: every loss term, the learning rate, the gradient norm, tokens/s, the hyperparameters.
    events = read_events(tmp_path / "logs")
    for tag in ("loss/total", "loss/ce", "loss/mlm", "loss/cos", "learning_rate", "grad_norm", "tokens_per_sec"):
        assert [step for step, _ in events[tag]] == [1, 2], tag
    assert float(events["loss/total"][-1][1]) == pytest.approx(acc_logs["loss"], rel=1e-6)
    # No warm-up, linear decay over 2 steps: 0.02 then 0.01.
    assert [float(v) for _, v in events["learning_rate"]] == pytest.approx([0.02, 0.01])
    assert all(float(v) > 0 for _, v in events["tokens_per_sec"])
    assert "config" in events and "_hparams_/session_start_info" in events


# Learning rates giving updates of norm ~1: a smaller update loses relative precision in ``after - before``.
@pytest.mark.parametrize("clipnorm, lr", [(None, 0.02), (0.5, 2.0)], ids=["no-clipping", "clipping"])
def test_two_replicas_times_two_micro_batches_step_by_the_whole_batch_gradient(clipnorm, lr):
    """One step of 2 replicas x 2 micro-batches of 4 rows against the gradient of the 16 rows on one device,
    from a tape in the test. Without clipping the update is ``-lr * g``; with clipping active (here
    ``|g|`` ~ 10 > 0.5) it is ``-lr * 0.5 * g / |g|``: clipping each replica's partial gradient before the
    cross-replica sum, or averaging instead of summing over replicas, would give another update."""
    batches = global_batches(pattern_batch, 1, 16, seed=5)
    mirrored = ref.two_cpu_replicas()
    # Soft targets at the masked slots, normalised by the slot count (the 4x8 test above takes them on all tokens).
    distiller = build_distiller(mirrored, TRAIN, 1, distill={"ce_positions": "masked"},
                                optimizer=_sgd(lr, 2, clipnorm))  # decay over 2 steps: lr at step 0
    want_logs = ref.reference_logs(distiller.teacher, distiller.student, batches, PAPER, "masked")
    grad = ref.tape_gradient(distiller.teacher, distiller.student, batches, PAPER, "masked")
    norm = ref.global_norm(grad)
    before = [v.numpy().copy() for v in distiller.student.trainable_variables]
    logs = Trainer(distiller, mirrored, 1, micro_batches=2, console=False).fit(slices_dataset_fn(batches, 8))
    update = [v.numpy() - b for v, b in zip(distiller.student.trainable_variables, before)]
    scale = 1.0 if clipnorm is None else clipnorm / norm
    want = [-lr * scale * g for g in grad]
    error = ref.relative_error(update, want)
    print(f"2 replicas x 2 micro-batches vs tape: |g| {norm:.3f}, relative update error {error:.1e}")
    assert logs["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert clipnorm is None or norm > 4 * clipnorm  # clipping is active
    assert error <= 1e-5
    for key in ("loss", "ce", "mlm", "cos", "tokens", "masked"):
        assert logs[key] == pytest.approx(want_logs[key], rel=1e-5), key


def test_loss_logs_match_numpy_token_weighted_mean():
    """The logged MLM term of an accumulated step is the token-weighted mean over the effective batch."""
    batches = global_batches(make_batch, 1, 16, seed=9)
    strategy = tf.distribute.get_strategy()
    pre = build_distiller(strategy, TRAIN, 1, pretrain=True)
    student = pre.student
    b = batches[0]
    out = student({k: b[k] for k in ("token_ids", "padding_mask", "mask_positions")})
    logits = out["logits"].numpy().astype("float64")
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, b["mask_ids"][..., None].astype(int), -1)[..., 0]
    want = float((nll * b["mask_weights"]).sum() / b["mask_weights"].sum())
    logs = Trainer(pre, strategy, 1, micro_batches=4, console=False).fit(slices_dataset_fn(batches, 4))
    assert logs["mlm"] == pytest.approx(want, rel=1e-5)
    assert logs["masked"] == float(b["mask_weights"].sum())
    assert logs["tokens"] == float(b["padding_mask"].sum())
