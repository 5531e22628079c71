"""The training loop: distributed data in, optimizer steps, logs, checkpoints, resume, NaN stop.

:class:`Trainer` works for a :class:`~keras_distil.distiller.Distiller` or a
:class:`~keras_distil.distiller.Pretrainer` built and compiled under ``strategy.scope()``, and a
``dataset_fn(input_context) -> tf.data.Dataset`` of per-replica batches (as
``keras_distil.data.build_training_dataset``). One call of :meth:`Trainer.fit` trains to ``total_steps``
optimizer steps, resuming from the latest checkpoint of ``checkpoint_dir`` when there is one.
"""

from __future__ import annotations

import logging
import math

import tensorflow as tf

from keras_distil.distiller import COUNT_KEYS
from keras_distil.errors import KerasDistilError
from keras_distil.training.observe import RunLog
from keras_distil.training.optim import current_learning_rate, inner_optimizer
from keras_distil.training.resume import Checkpoints
from keras_distil.training.step import make_train_step
from keras_distil.training.strategy import worker_info

logger = logging.getLogger("keras_distil.training")


class TrainingDiverged(KerasDistilError, RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class Trainer:
    """Run optimizer steps of ``model`` under ``strategy``.

    Args:
      model: a compiled Distiller or Pretrainer (variables created under ``strategy.scope()``).
      strategy: the ``tf.distribute.Strategy``.
      total_steps: optimizer steps in all (a resumed run counts the steps already done).
      micro_batches: gradient-accumulation steps: micro-batches summed per optimizer step.
      checkpoint_dir / checkpoint_every / keep_checkpoints: where and how often to checkpoint; None: never.
      logdir / log_every: TensorBoard folder (None: none) and the logging period in steps.
      jit_compile: XLA-compile the per-replica step.
      hparams: the run's configuration, written to TensorBoard.
      console: show the progress bar.
    """

    def __init__(self, model, strategy, total_steps: int, *, micro_batches: int = 1,
                 checkpoint_dir: str | None = None, checkpoint_every: int = 500, keep_checkpoints: int = 3,
                 logdir: str | None = None, log_every: int = 50, jit_compile: bool = False,
                 hparams: dict | None = None, console: bool = True):
        self.model = model
        self.strategy = strategy
        self.total_steps = int(total_steps)
        self.micro_batches = int(micro_batches)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.logdir = logdir
        self.log_every = log_every
        self.jit_compile = jit_compile
        self.hparams = hparams
        self.console = console
        self.task_index, self.is_chief = worker_info(strategy)
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            # Slots exist before a restore (Keras variables are not restored lazily).
            inner_optimizer(model.optimizer).build(model.trained_variables)
            if hasattr(model.optimizer, "inner_optimizer"):
                model.optimizer.build(model.trained_variables)

    def _checkpoints(self) -> Checkpoints | None:
        if self.checkpoint_dir is None:
            return None
        return Checkpoints(self.checkpoint_dir, self.keep_checkpoints, student=self.model.student,
                           projections=getattr(self.model, "projections", None), optimizer=self.model.optimizer,
                           step=self.step, is_chief=self.is_chief, task_index=self.task_index)

    def _distributed_data(self, dataset_fn, done_steps: int):
        """The distributed dataset, positioned after the batches of ``done_steps`` steps.

        Resume skips what was consumed (each input pipeline feeds ``replicas / pipelines`` replicas ``k``
        batches per step). The pipeline is deterministic given its seed and masks each batch with a
        seed derived from the batch's index, so the resumed run sees the same batches and masks. (tf.data
        iterators of distributed datasets are not checkpointable under MultiWorkerMirroredStrategy: one
        mechanism for every strategy.)
        """
        replicas = self.strategy.num_replicas_in_sync

        def positioned(ctx):
            dataset = dataset_fn(ctx)
            per_step = self.micro_batches * replicas // max(ctx.num_input_pipelines, 1)
            return dataset.skip(done_steps * per_step) if done_steps else dataset

        return self.strategy.distribute_datasets_from_function(positioned)

    def fit(self, dataset_fn) -> dict:
        """Train to ``total_steps``; returns the last logs (floats) and ``step``, ``resumed_from``.

        ``dataset_fn(input_context)``: a deterministic ``tf.data.Dataset`` of per-replica batches, repeated.
        """
        checkpoints = self._checkpoints()
        resumed_from = checkpoints.restore() if checkpoints is not None else None
        start = int(self.step.numpy())
        dataset = self._distributed_data(dataset_fn, start)
        iterator = iter(dataset)
        train_step = make_train_step(self.model, self.strategy, self.micro_batches, self.jit_compile,
                                     dataset.element_spec)
        log = RunLog(self.logdir if self.is_chief else None, self.total_steps, self.log_every, start,
                     self.hparams if start == 0 else None, console=self.console and self.is_chief)
        last_saved = resumed_from
        logs = {}
        try:
            for step in range(start + 1, self.total_steps + 1):
                batches = tuple(next(iterator) for _ in range(self.micro_batches))
                out = train_step(*batches)
                logs = {k: float(v) for k, v in out.items()}
                if not math.isfinite(logs["loss"]):
                    raise TrainingDiverged(
                        f"step {step}: the loss is {logs['loss']} (terms: "
                        f"{ {k: v for k, v in logs.items() if k not in COUNT_KEYS} }); training stopped. "
                        f"Last good checkpoint: {last_saved or 'none written yet'} (left as it was). Run the same "
                        "command again with --resume-with-changes and a lower --set train.learning_rate=... (or "
                        "train.max_grad_norm, or train.mixed_precision=float32): it resumes from that checkpoint"
                        + ("" if last_saved else " (none yet: the run starts afresh)") + ".")
                self.step.assign(step)
                log.step(step, logs, current_learning_rate(self.model.optimizer))
                if checkpoints is not None and (step % self.checkpoint_every == 0 or step == self.total_steps):
                    last_saved = checkpoints.save(step)
        finally:
            log.close()
        return {**logs, "step": int(self.step.numpy()), "resumed_from": resumed_from}
