"""The training runtime's public API (implemented in :mod:`keras_distil.training`; see docs/runtime.md).

Strategies (``make_strategy``: auto | default | mirrored | multiworker | tpu), the optimiser and schedule
(``build_optimizer``, ``WarmupLinearDecay``), the XLA decision (``decide_jit``), mixed precision
(``set_precision``), the distributed step (``make_train_step``) and the loop with checkpoints, resume,
TensorBoard and NaN stop (``Trainer``); whole runs from a recipe: ``distill`` and ``pretrain``.
"""

from keras_distil.training import *  # noqa: F403
from keras_distil.training import __all__ as _training_all
from keras_distil.training.run import distill, pretrain

__all__ = [*_training_all, "distill", "pretrain"]
