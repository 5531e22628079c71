"""The distributed step: accumulation and replicas give the effective batch's update on one device."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_batch
from test_runtime_support import build_distiller, global_batches, max_diff, slices_dataset_fn, weights

from keras_distil import TrainConfig
from keras_distil.training import Trainer

TRAIN = TrainConfig(learning_rate=1e-2, warmup_prop=0.0)


def _train(strategy, batches, micro_batch, k, steps, train=TRAIN, **kw):
    distiller = build_distiller(strategy, train, steps)
    trainer = Trainer(distiller, strategy, steps, micro_batches=k, console=False,
                      hparams={"train": train.to_dict()}, **kw)
    logs = trainer.fit(slices_dataset_fn(batches, micro_batch))
    return weights(distiller.student), logs


def _events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def test_four_micro_batches_of_8_equal_one_batch_of_32(tmp_path):
    # Uneven padding and masks: a mean of micro-batch means would differ from the 32-batch mean.
    batches = global_batches(make_batch, 2, 32, seed=3)
    default = tf.distribute.get_strategy()
    whole, whole_logs = _train(default, batches, 32, 1, 2)
    accumulated, acc_logs = _train(default, batches, 8, 4, 2, logdir=str(tmp_path / "logs"), log_every=1)
    diff = max_diff(whole, accumulated)
    print(f"4x8 vs 1x32 after 2 AdamW steps: max |dw| = {diff:.2e}")
    assert diff <= 1e-5
    for key in ("loss", "ce", "mlm", "cos", "grad_norm", "tokens", "masked"):
        assert acc_logs[key] == pytest.approx(whole_logs[key], rel=1e-5), key
    # The weights moved: the comparison is not between two untouched models.
    untouched = weights(build_distiller(default, TRAIN, 2).student)
    assert max_diff(untouched, whole) > 1e-3

    # TensorBoard: every loss term, the learning rate, the gradient norm, tokens/s, the hyperparameters.
    events = _events(tmp_path / "logs")
    for tag in ("loss/total", "loss/ce", "loss/mlm", "loss/cos", "learning_rate", "grad_norm", "tokens_per_sec"):
        assert [step for step, _ in events[tag]] == [1, 2], tag
    assert float(events["loss/total"][-1][1]) == pytest.approx(acc_logs["loss"], rel=1e-6)
    # No warm-up, linear decay over 2 steps: 1e-2 then 0.5e-2.
    assert [float(v) for _, v in events["learning_rate"]] == pytest.approx([1e-2, 1e-2 * 0.5])
    assert all(float(v) > 0 for _, v in events["tokens_per_sec"])
    assert "config" in events and "_hparams_/session_start_info" in events


def test_two_replicas_with_clipping_equal_one_device():
    # Clipping at 0.05 is active (gradient norms here are ~1): clipping each replica's partial gradient
    # before the cross-replica sum would give a different update.
    train = TrainConfig(learning_rate=1e-2, warmup_prop=0.0, max_grad_norm=0.05)
    batches = global_batches(make_batch, 2, 16, seed=5)
    single, single_logs = _train(tf.distribute.get_strategy(), batches, 16, 1, 2, train)
    # ReductionToOneDevice: collective all-reduces of two MirroredStrategy objects in one process share
    # instance keys, and a later strategy in the same pytest process then fails with a shape mismatch.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    two, two_logs = _train(mirrored, batches, 8, 2, 2, train)  # 2 replicas x 2 micro-batches of 4
    diff = max_diff(single, two)
    print(f"2 replicas x 2 micro-batches vs 1 device: max |dw| = {diff:.2e}, grad norm {single_logs['grad_norm']:.3f}")
    assert single_logs["grad_norm"] > 0.05 * 4
    assert diff <= 1e-5
    assert two_logs["loss"] == pytest.approx(single_logs["loss"], rel=1e-5)


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
