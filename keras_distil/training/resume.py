"""Resuming a training run: its training state checkpointed every N steps, restored exactly at start.

(Not to be confused with the model checkpoints a run reads and writes: :mod:`keras_distil.models.checkpoint_formats`.)

A checkpoint holds the student (weights and dropout seed states), the optimizer (slots, iteration
count, loss scale) and the step counter; the input is repositioned from the step counter (loop.py), so
a resumed run sees the batches and masks it would have seen.
``tf.train.CheckpointManager`` writes the data files under temporary names and then rewrites its
``checkpoint`` index file atomically, so a run killed while saving leaves the previous checkpoint as
the latest; it keeps the last ``keep`` checkpoints.

Under MultiWorkerMirroredStrategy every worker must take part in saving (variables are read with
collectives): the chief writes the run's folder, the others a scratch folder they delete.
"""

from __future__ import annotations

import logging
import os
import shutil

import tensorflow as tf

logger = logging.getLogger("keras_distil.training")


def seed_states(model) -> list:
    """The model's random-seed state variables (dropout): Keras keeps them out of ``model.weights`` and
    tf.train.Checkpoint does not find them through the model, so they are saved by name order."""
    return [v.value for v in model.variables if v.path.endswith("seed_generator_state")]


class Checkpoints:
    """The run's checkpoint folder: ``restore()`` the latest at start, ``save(step)`` as training goes."""

    def __init__(self, directory: str, keep: int, *, student, optimizer, step: tf.Variable,
                 is_chief: bool = True, task_index: int = 0, projections=None):
        # ``projections``: a narrower student's learned maps to the teacher's width (layer_terms.py), which
        # train with it; absent from runs without them, so their checkpoints keep their layout.
        extra = {} if projections is None else {"projections": projections}
        self.checkpoint = tf.train.Checkpoint(student=student, optimizer=optimizer, step=step,
                                              seeds=seed_states(student), **extra)
        self.directory = directory
        self.is_chief = is_chief
        write_dir = directory if is_chief else os.path.join(directory, "..", f".scratch-worker-{task_index}")
        self.write_dir = os.path.normpath(write_dir)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir, max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore(self) -> str | None:
        """Restore the latest checkpoint of the run folder, if any; returns its path."""
        path = self.latest
        if path is not None:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            logger.info("resumed from %s (step %d)", path, int(self.checkpoint.step))
        return path

    def save(self, step: int) -> str:
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return path
