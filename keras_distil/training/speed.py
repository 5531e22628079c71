"""The speed knobs (``train.mixed_precision``, ``train.teacher_precision``, ``train.jit_compile``) resolved for
the device present: "auto" follows what was measured (benchmarks/train_step.py, docs/runtime.md).

bfloat16 pays where the hardware multiplies it natively: CPUs with AVX512_BF16 or AMX (about 1.9x the float32
matmul rate here), NVIDIA GPUs from compute capability 8.0 (Ampere), and TPUs. Elsewhere it is emulated and
slower, so "auto" stays in float32 there, and in models narrower than 256, where the casts and the
element-wise work outweigh the faster matmuls (:data:`BFLOAT16_MIN_WIDTH`).

- ``train.teacher_precision``: the frozen teacher needs no gradient and no optimizer state, so it can hold its
  weights in bfloat16 and compute in it (half its memory; no per-step weight casts). Its soft targets move by
  a KL of 1.6e-5 nats per masked token at T=2 against float32 (benchmarks/precision_effect.py).
- ``train.mixed_precision``: the student computes in bfloat16 with float32 variables and optimizer state
  (Keras' ``mixed_bfloat16``); the losses are computed in float32 (losses.py).
"""

from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf

from keras_distil.config import ConfigError, TrainConfig
from keras_distil.training.optim import PRECISIONS, decide_jit
from keras_distil.training.strategy import on_cpu, strategy_kind

TEACHER_PRECISIONS = ("float32", "bfloat16")
# Narrower models stay float32 under "auto": the step measured 0.93x at 64 wide and 0.96x at 128 (the
# quickstart) in bfloat16, 1.19x at 256, 1.39x at 384 (all-MiniLM-L6-v2) and 1.5x at 768 (BERT-base).
BFLOAT16_MIN_WIDTH = 256


@dataclasses.dataclass(frozen=True)
class RuntimeChoice:
    """What a run uses, each knob resolved (see :func:`resolve_runtime`).

    Args:
      policy: the Keras dtype policy the student is built and trained under.
      teacher_precision: the teacher's Keras dtype policy ("float32" or "bfloat16").
      jit_compile: whether the step is XLA-compiled.
      reasons: knob name -> why it was resolved so (logged at the start of a run).
    """

    policy: str
    teacher_precision: str
    jit_compile: bool
    reasons: dict


@functools.cache
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bfloat16(strategy: tf.distribute.Strategy) -> tuple[bool, str]:
    """``(native, reason)``: whether the strategy's devices multiply bfloat16 natively.

    Args:
      strategy: the run's ``tf.distribute.Strategy``.

    Example:
    >>> native, reason = fast_bfloat16(tf.distribute.get_strategy())
    >>> isinstance(native, bool) and bool(reason)
    True
    """
    kind = strategy_kind(strategy)
    if kind == "tpu":
        return True, "TPU"
    if not on_cpu(strategy):
        gpus = tf.config.list_physical_devices("GPU")
        capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability") or (0, 0)
                        for g in gpus]
        if capabilities and min(capabilities) >= (8, 0):
            return True, f"GPU compute capability {'.'.join(map(str, min(capabilities)))} (>= 8.0)"
        return False, "GPU older than compute capability 8.0: bfloat16 is emulated"
    flags = _cpu_flags() & {"avx512_bf16", "amx_bf16"}
    if flags:
        return True, f"CPU with {', '.join(sorted(flags))}"
    return False, "CPU without AVX512_BF16 / AMX: bfloat16 is emulated"


def _auto_bfloat16(native: bool, why: str, width: int | None) -> tuple[bool, str]:
    if not native:
        return False, why
    if width is not None and width < BFLOAT16_MIN_WIDTH:
        return False, f"{why}, but {width} wide: bfloat16 measured slower below {BFLOAT16_MIN_WIDTH}"
    return True, why


def resolve_runtime(train: TrainConfig, strategy: tf.distribute.Strategy, student_width: int | None = None,
                    teacher_width: int | None = None) -> RuntimeChoice:
    """The student's policy, the teacher's precision and XLA for ``train``'s knobs on ``strategy``'s devices.

    "auto" means bfloat16 where the devices multiply it natively and the model is at least
    :data:`BFLOAT16_MIN_WIDTH` wide; narrower models stay float32 (docs/runtime.md, "Speed").

    Args:
      train: the recipe's ``TrainConfig`` (``mixed_precision``, ``teacher_precision``, ``jit_compile``).
      strategy: the run's ``tf.distribute.Strategy``.
      student_width: the student's hidden size (None: not considered).
      teacher_width: the teacher's hidden size (None: not considered).

    Example:
    >>> choice = resolve_runtime(TrainConfig(mixed_precision="float32", teacher_precision="float32",
    ...                                      jit_compile="off"), tf.distribute.get_strategy())
    >>> choice.policy, choice.teacher_precision, choice.jit_compile
    ('float32', 'float32', False)
    """
    native, why = fast_bfloat16(strategy)
    reasons = {}

    def precision(knob: str, setting: str, accepted: tuple, bfloat16: str, width: int | None) -> str:
        """``setting`` of ``train.<knob>``, "auto" resolved (and its reason recorded)."""
        if setting == "auto":
            use, reason = _auto_bfloat16(native, why, width)
            setting = bfloat16 if use else "float32"
            reasons[f"train.{knob}"] = f"{setting} ({reason})"
        elif setting not in accepted:
            raise ConfigError(f"train.{knob}: got {setting!r}; accepted: auto, {', '.join(accepted)}")
        return setting

    policy = precision("mixed_precision", train.mixed_precision, PRECISIONS, "mixed_bfloat16", student_width)
    teacher = precision("teacher_precision", train.teacher_precision, TEACHER_PRECISIONS, "bfloat16", teacher_width)
    jit, jit_reason = decide_jit(train.jit_compile, strategy_kind=strategy_kind(strategy),
                                 num_replicas=strategy.num_replicas_in_sync, on_cpu=on_cpu(strategy), precision=policy)
    reasons["train.jit_compile"] = jit_reason
    return RuntimeChoice(policy, teacher, jit, reasons)
