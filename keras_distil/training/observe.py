"""What a run shows while it trains: TensorBoard scalars and hyperparameters, and a console progress bar.

TensorBoard (``RUN/logs``): ``loss/total`` and ``loss/<term>`` for each active term, ``learning_rate``,
``grad_norm`` (global, before clipping), ``tokens_per_sec`` (real tokens, all replicas); the run's
configuration as TensorBoard hyperparameters (HParams tab) and as JSON text. Only the chief writes.
Console: a Keras progress bar (loss terms, ETA) updated every step on a terminal, every ``log_every``
steps otherwise (one line each, readable in a log file).
"""

from __future__ import annotations

import json
import sys
import time

import keras
import tensorflow as tf

from keras_distil.distiller import TERMS

# Every loss term the Distiller can log, under loss/<term>; the total under loss/total.
SCALAR_NAMES = {"loss": "loss/total", **{term: f"loss/{term}" for term in TERMS}, "grad_norm": "grad_norm"}


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"train": {"seed": 1}}`` -> ``{"train.seed": 1}``; lists and None become strings (HParams types)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


class RunLog:
    """Writes scalars every ``log_every`` steps and drives the progress bar.

    A written loss value is the mean over the optimizer steps since the previous write, not the last
    step's alone: every step counts, and the curves are not the noise of single batches (one batch of
    32 short sequences swings the MLM loss by a nat).
    """

    def __init__(self, logdir: str | None, total_steps: int, log_every: int, start_step: int = 0,
                 hparams: dict | None = None, console: bool = True):
        self.writer = tf.summary.create_file_writer(logdir) if logdir else None
        self.total_steps = total_steps
        self.log_every = log_every
        self.interactive = console and sys.stdout.isatty()
        self.console = console
        # Counted from the first step of this process, so that the ETA of a resumed run is right.
        self.bar = (keras.utils.Progbar(max(total_steps - start_step, 1), stateful_metrics=["step", *SCALAR_NAMES])
                    if console else None)
        self._mark = (time.perf_counter(), start_step)
        self._tokens = 0.0
        self._sums: dict[str, float] = {}
        self._steps = 0
        self.start_step = start_step
        if self.writer is not None and hparams:
            self._write_hparams(hparams)

    def _write_hparams(self, config: dict) -> None:
        from tensorboard.plugins.hparams import api as hp

        with self.writer.as_default():
            hp.hparams(flatten(config))
            tf.summary.text("config", "```\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```", step=0)
        self.writer.flush()

    def step(self, step: int, logs: dict, learning_rate: float) -> dict:
        """Record the logs of optimizer step ``step`` (1-based); returns what was written when it was."""
        self._tokens += float(logs.get("tokens", 0.0))
        values = {k: float(v) for k, v in logs.items() if k in SCALAR_NAMES}
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._steps += 1
        due = step % self.log_every == 0 or step == self.total_steps
        if self.interactive:
            self.bar.update(step - self.start_step, [("step", step), *values.items()])
        if not due:
            return {}
        values = {key: total / self._steps for key, total in self._sums.items()}
        self._sums, self._steps = {}, 0
        now = time.perf_counter()
        elapsed = max(now - self._mark[0], 1e-9)
        values["tokens_per_sec"] = self._tokens / elapsed
        values["learning_rate"] = learning_rate
        self._mark, self._tokens = (now, step), 0.0
        if self.writer is not None:
            with self.writer.as_default():
                for key, value in values.items():
                    tf.summary.scalar(SCALAR_NAMES.get(key, key), value, step=step)
            self.writer.flush()
        if self.console and not self.interactive:
            self.bar.update(step - self.start_step,
                            [("step", step), *((k, v) for k, v in values.items() if k in SCALAR_NAMES)])
        return values

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
