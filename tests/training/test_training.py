"""Runtime units: strategy choice, TPU resolution, XLA decision, schedule, AdamW decay exclusion, precision."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import step_reference as ref
from helpers.batches import pattern_batch
from helpers.training import build_distiller, global_batches, slices_dataset_fn

from keras_distil import ConfigError, TrainConfig
from keras_distil.training import (
    Trainer,
    WarmupLinearDecay,
    choose_strategy,
    decide_jit,
    make_strategy,
    read_tf_config,
    tpu_address,
    warmup_steps,
)


def _cluster(n):
    return {"cluster": {"worker": [f"127.0.0.1:{2000 + i}" for i in range(n)]}, "task": {"type": "worker", "index": 0}}


@pytest.mark.parametrize("requested, tf_config, gpus, tpu, want", [
    ("auto", None, 0, None, "default"),
    ("auto", None, 1, None, "default"),
    ("auto", None, 4, None, "mirrored"),
    ("auto", _cluster(2), 0, None, "multiworker"),
    ("auto", _cluster(1), 2, None, "mirrored"),  # a one-task TF_CONFIG is not a cluster
    ("auto", _cluster(2), 8, "local", "multiworker"),
    ("auto", None, 0, "local", "tpu"),
    ("mirrored", None, 0, None, "mirrored"),
    ("default", _cluster(2), 4, None, "default"),
])
def test_choose_strategy(requested, tf_config, gpus, tpu, want):
    kind, reason = choose_strategy(requested, tf_config=tf_config, num_gpus=gpus, tpu=tpu)
    assert kind == want and reason


def test_strategy_errors_name_what_is_missing():
    with pytest.raises(ConfigError, match="multiworker needs TF_CONFIG"):
        choose_strategy("multiworker", tf_config=None, num_gpus=0, tpu=None)
    with pytest.raises(ConfigError, match="tpu needs --tpu"):
        choose_strategy("tpu", tf_config=None, num_gpus=0, tpu=None)
    with pytest.raises(ConfigError, match="train.strategy.*accepted"):
        choose_strategy("horovod", tf_config=None, num_gpus=0, tpu=None)
    with pytest.raises(ConfigError, match="TF_CONFIG: not valid JSON"):
        read_tf_config({"TF_CONFIG": "{worker"})
    assert read_tf_config({"TF_CONFIG": json.dumps(_cluster(2))})["task"]["index"] == 0
    assert read_tf_config({}) is None


def test_tpu_resolution_order_and_failure_here():
    assert tpu_address("local", {"TPU_NAME": "pod"}) == "local"
    assert tpu_address(None, {"TPU_NAME": "pod", "COLAB_TPU_ADDR": "10.0.0.2:8470"}) == "pod"
    assert tpu_address(None, {"COLAB_TPU_ADDR": "10.0.0.2:8470"}) == "grpc://10.0.0.2:8470"
    assert tpu_address(None, {}) is None
    with pytest.raises(ConfigError, match="--tpu local: no TPU could be reached"):
        make_strategy("tpu", tpu="local", environ={})


def test_jit_decision_and_reason():
    cpu = dict(on_cpu=True, precision="float32")
    assert decide_jit("auto", strategy_kind="mirrored", num_replicas=2, **cpu) == (
        False, "MirroredStrategy on logical CPUs: XLA fails (resource on CPU:1 accessed from CPU:0)")
    assert decide_jit("auto", strategy_kind="default", num_replicas=1, **cpu)[0] is False
    assert decide_jit("auto", strategy_kind="default", num_replicas=1, on_cpu=False, precision="float32")[0]
    assert decide_jit("auto", strategy_kind="default", num_replicas=1, on_cpu=True,
                      precision="mixed_bfloat16")[0] is False
    assert decide_jit("auto", strategy_kind="multiworker", num_replicas=2, **cpu)[0] is False
    assert decide_jit("auto", strategy_kind="tpu", num_replicas=8, on_cpu=False, precision="mixed_bfloat16")[0]
    assert decide_jit("off", strategy_kind="tpu", num_replicas=8, **cpu) == (False, "train.jit_compile=off")
    with pytest.raises(ConfigError, match="train.jit_compile"):
        decide_jit("maybe", strategy_kind="default", num_replicas=1, **cpu)


def test_warmup_then_linear_decay_matches_formula():
    train = TrainConfig(learning_rate=5e-4, warmup_prop=0.05)
    total = 1000
    w = warmup_steps(train, total)
    assert w == 50  # ceil(0.05 * 1000), as the DistilBERT reference
    schedule = WarmupLinearDecay(5e-4, total, w)
    for step in (0, 1, 25, 49, 50, 51, 500, 999, 1000, 1200):
        want = 5e-4 * (step / w if step < w else max(0.0, (total - step) / (total - w)))
        assert float(schedule(step)) == pytest.approx(want, rel=1e-6, abs=1e-12), step
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(70)) == float(schedule(70))


def test_adamw_betas_and_decay_exclude_biases_and_layer_norms():
    train = TrainConfig(learning_rate=1e-2, warmup_prop=0.0, weight_decay=0.1)
    strategy = tf.distribute.get_strategy()
    distiller = build_distiller(strategy, train, 10)
    opt = distiller.optimizer
    assert (opt.beta_1, opt.beta_2, opt.epsilon, opt.global_clipnorm) == (0.9, 0.98, 1e-6, 5.0)
    variables = distiller.student.trainable_variables
    before = [v.numpy().copy() for v in variables]
    # Zero gradients: Adam's step is 0, so only the decoupled decay (lr * wd * w) moves a weight.
    opt.apply([tf.zeros_like(v) for v in variables], variables)
    decayed, kept = [], []
    for v, b in zip(variables, before):
        after = v.numpy()
        if np.allclose(after, b * (1 - 1e-2 * 0.1), rtol=1e-6, atol=0) and np.abs(b).max() > 0:
            decayed.append(v.path)
        elif np.array_equal(after, b):
            kept.append(v.path)
        else:
            raise AssertionError(f"{v.path}: neither decayed nor kept")
    assert all(p.endswith(("bias", "gamma", "beta")) for p in kept)
    assert not any(p.endswith(("bias", "gamma", "beta")) for p in decayed)
    assert any("layer_norm" in p for p in kept) and any(p.endswith("kernel") for p in decayed)
    assert any(p.endswith("embeddings") for p in decayed)


@pytest.fixture
def precision_policy():
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="module")
def float32_reference(confident_teacher):
    """The first step's batch and, from the float32 models, its terms in numpy and the norm of its tape
    gradient (tests/helpers/step_reference.py): what the mixed-precision steps must come close to. The
    confident teacher is trained (once per session, by the fixture) before any test sets a mixed policy."""
    batches = global_batches(pattern_batch, 2, 8, seed=4)
    models = build_distiller(tf.distribute.get_strategy(), TrainConfig(), 2)
    paper = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0}  # the Distiller's default objective
    want = ref.reference_logs(models.teacher, models.student, batches[:1], paper)
    want["grad_norm"] = ref.global_norm(ref.tape_gradient(models.teacher, models.student, batches[:1], paper))
    return batches, want


# Same weights, lower-precision activations, float32 losses: close to the float32 references, not equal.
# Measured on the confident teacher's pattern batch (ce 1.1, mlm 0.49, cos 0.15, grad_norm 53): bfloat16
# (8-bit mantissa) within 4e-3, float16 within 1e-4.
@pytest.mark.parametrize("policy, rel", [("mixed_bfloat16", 1e-2), ("mixed_float16", 1e-3)])
def test_mixed_precision_trains_with_float32_losses(policy, rel, precision_policy, float32_reference):
    batches, want = float32_reference
    strategy = tf.distribute.get_strategy()
    train = TrainConfig(learning_rate=1e-3, warmup_prop=0.0, mixed_precision=policy)
    keras.config.set_dtype_policy(policy)
    distiller = build_distiller(strategy, train, 2)
    assert distiller.student.dtype_policy.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in distiller.student.trainable_variables)
    assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    trainer = Trainer(distiller, strategy, 1, console=False)
    if policy == "mixed_float16":
        # At Keras' initial loss scale 2^15 this teacher's first scaled gradient overflows float16: dynamic loss
        # scaling skips that step and halves the scale (grad_norm is logged inf). Start at 2^10 so that the
        # compared step is a real one.
        distiller.optimizer.dynamic_scale.assign(2.0 ** 10)
    before = [v.numpy().copy() for v in distiller.student.trainable_variables]
    got = trainer.fit(slices_dataset_fn(batches, 8))
    assert max(float(np.abs(v.numpy() - b).max()) for v, b in zip(distiller.student.trainable_variables, before)) > 0
    assert min(want[key] for key in ("ce", "mlm", "cos")) > 0.1  # non-trivial values: rel is a real check
    for key in ("loss", "ce", "mlm", "cos", "grad_norm"):
        assert got[key] == pytest.approx(want[key], rel=rel, abs=0), key


def test_run_log_writes_the_mean_since_the_last_write(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from keras_distil.training.observe import RunLog

    log = RunLog(str(tmp_path), total_steps=5, log_every=2, console=False)
    for step, loss in enumerate([1.0, 3.0, 5.0, 7.0, 9.0], start=1):
        log.step(step, {"loss": loss, "hidden_mse": 2 * loss, "tokens": 10.0}, learning_rate=1e-3)
    log.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()

    def written(tag):
        return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]

    assert written("loss/total") == [(2, 2.0), (4, 6.0), (5, 9.0)]  # steps 1-2, 3-4, then the last one
    assert written("loss/hidden_mse") == [(2, 4.0), (4, 12.0), (5, 18.0)]  # every Distiller term is logged
