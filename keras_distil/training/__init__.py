"""The training runtime: strategies, optimiser and schedule, the distributed step, the loop with
checkpoints and resume, and the TensorBoard / console logs; whole runs from a recipe: ``distill`` and
``pretrain`` (see docs/runtime.md). ``keras-distil distill`` / ``pretrain`` are :mod:`keras_distil.cli.distill`."""

from keras_distil.training.loop import Trainer, TrainingDiverged
from keras_distil.training.optim import (
    NO_DECAY,
    WarmupLinearDecay,
    build_optimizer,
    decide_jit,
    set_precision,
    use_presummed_gradients,
    warmup_steps,
)
from keras_distil.training.resume import Checkpoints
from keras_distil.training.run import distill, pretrain
from keras_distil.training.step import make_train_step
from keras_distil.training.strategy import (
    STRATEGIES,
    choose_strategy,
    make_strategy,
    read_tf_config,
    strategy_kind,
    tpu_address,
    worker_info,
)

__all__ = [
    "NO_DECAY", "STRATEGIES", "Checkpoints", "Trainer", "TrainingDiverged", "WarmupLinearDecay", "build_optimizer",
    "choose_strategy", "decide_jit", "distill", "make_strategy", "make_train_step", "pretrain", "read_tf_config", "set_precision",
    "strategy_kind", "tpu_address", "use_presummed_gradients", "warmup_steps", "worker_info",
]
