"""Optimiser, learning-rate schedule, mixed precision and the XLA decision.

DistilBERT's recipe: AdamW (betas 0.9 / 0.98, eps 1e-6, weight decay 0 with biases and LayerNorm
excluded), linear warm-up over ``warmup_prop`` of the optimizer steps then linear decay to 0, and
global-norm clipping at 5.0.

Clipping and the cross-replica sum: Keras clips inside ``optimizer.apply`` *before* its own
all-reduce, so under a strategy each replica would clip its partial gradient by its own norm. The
training step (step.py) therefore sums the gradients over replicas itself and the optimizer's
all-reduce is switched off (:func:`use_presummed_gradients`): clipping then sees the global gradient.
"""

from __future__ import annotations

import contextlib
import logging
import math

import keras
import tensorflow as tf

from keras_distil import compat
from keras_distil.config import ConfigError, TrainConfig

logger = logging.getLogger("keras_distil.training")

# Variable names (Keras 3 short names) never decayed: every bias (incl. the MLM output bias) and
# LayerNorm's scale and offset, as Hugging Face's ["bias", "LayerNorm.weight"].
NO_DECAY = ["bias", "gamma", "beta"]


@keras.saving.register_keras_serializable(package="keras_distil")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * step / warmup`` for ``step < warmup``, then ``peak * (total - step) / (total - warmup)``,
    never below 0: Hugging Face's ``get_linear_schedule_with_warmup``, ``step`` counted from 0."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = step / float(max(1, self.warmup_steps))
        decay = (self.total_steps - step) / float(max(1, self.total_steps - self.warmup_steps))
        factor = tf.where(step < self.warmup_steps, warm, tf.maximum(0.0, decay))
        return self.peak * factor

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def warmup_steps(train: TrainConfig, total_steps: int) -> int:
    """``ceil(warmup_prop * total_steps)``, as the DistilBERT reference."""
    return int(math.ceil(train.warmup_prop * total_steps))


def build_optimizer(train: TrainConfig, total_steps: int):
    """AdamW with the schedule and clipping of ``train``; wrapped for loss scaling under mixed_float16."""
    schedule = WarmupLinearDecay(train.learning_rate, total_steps, warmup_steps(train, total_steps))
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, beta_1=train.adam_beta_1, beta_2=train.adam_beta_2, epsilon=train.adam_epsilon,
        weight_decay=train.weight_decay, global_clipnorm=train.max_grad_norm or None)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    if train.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer):
    """The optimizer that holds the schedule and the slots (the LossScaleOptimizer's inner one)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def loss_scale(optimizer):
    """The current loss scale (1.0 without loss scaling)."""
    scale = getattr(optimizer, "dynamic_scale", None)
    return tf.constant(1.0) if scale is None else tf.cast(scale, tf.float32)


def current_learning_rate(optimizer) -> float:
    """The learning rate of the last applied step (the schedule at ``iterations - 1``)."""
    inner = inner_optimizer(optimizer)
    lr = compat.optimizer_learning_rate(inner)  # the schedule object, or a variable
    if callable(lr):
        return float(lr(max(int(inner.iterations.numpy()) - 1, 0)))
    return float(keras.ops.convert_to_numpy(lr))


def use_presummed_gradients(optimizer) -> None:
    """Make ``optimizer.apply`` take gradients already summed over replicas (see module docstring).

    Keras 3.15's TF optimizer all-reduces in a private method; this replaces it on this instance by the
    identity (:func:`keras_distil.compat.replace_gradient_all_reduce`, which fails with the versions named
    when the method is gone). Tested: 2 replicas == 1 device with clipping active (tests/training/test_training.py).
    """
    for opt in {id(o): o for o in (optimizer, inner_optimizer(optimizer))}.values():
        compat.replace_gradient_all_reduce(opt, lambda grads_and_vars: list(grads_and_vars))


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@contextlib.contextmanager
def precision_policy(policy: str):
    """Keras' global dtype policy set to ``policy`` inside the block (:func:`set_precision`), and put back
    as it was after it, so that a run does not change the policy of the models its caller builds next.

    Example:
    >>> with precision_policy("mixed_bfloat16"):
    ...     inside = keras.config.dtype_policy().name
    >>> inside, keras.config.dtype_policy().name
    ('mixed_bfloat16', 'float32')
    """
    previous = keras.config.dtype_policy()
    set_precision(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy (before the models are built). Losses stay float32 (losses.py)."""
    if policy not in PRECISIONS:
        raise ConfigError(f"train.mixed_precision: got {policy!r}; accepted: {', '.join(PRECISIONS)}")
    keras.config.set_dtype_policy(policy)


def decide_jit(setting: str, *, strategy_kind: str, num_replicas: int, on_cpu: bool,
               precision: str) -> tuple[bool, str]:
    """``(use_xla, reason)`` for ``train.jit_compile`` = on | off | auto. Pure; the reason is logged.

    auto follows measurements (benchmarks/replicas.py, docs/runtime.md): XLA fails under MirroredStrategy
    on logical CPUs (a resource on CPU:1 read from CPU:0); multi-worker collectives are left outside XLA;
    on a CPU it did not pay (benchmarks/train_step.py: float32 0.583 vs 0.564 s/step small, 3.51 vs 3.46 s
    BERT-base; under mixed_bfloat16 0.627 vs 0.476 s and 3.75 vs 2.36 s: XLA's CPU matmuls are not oneDNN's,
    and it compiles once per bucket length); TPUs always compile; a single accelerator gets it (not measurable
    here).
    """
    if setting == "on":
        return True, "train.jit_compile=on"
    if setting == "off":
        return False, "train.jit_compile=off"
    if setting != "auto":
        raise ConfigError(f"train.jit_compile: got {setting!r}; accepted: 'auto', 'on', 'off'")
    if strategy_kind == "tpu":
        return True, "TPU: XLA always"
    if strategy_kind == "multiworker":
        return False, "multi-worker: collectives kept outside XLA"
    if num_replicas > 1 and on_cpu:
        return False, "MirroredStrategy on logical CPUs: XLA fails (resource on CPU:1 accessed from CPU:0)"
    if num_replicas > 1:
        return False, "multi-replica GPU step: not verified with XLA on this stack"
    if on_cpu:
        return False, (f"CPU ({precision}): XLA measured slower per step (its CPU matmuls are not oneDNN's), "
                       "and it compiles once per bucket length")
    return True, "one accelerator: XLA fuses the step's element-wise work"
