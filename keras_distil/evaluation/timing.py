"""Latency: the median wall time of calls that take turns, so that a machine whose load changes during the
measurement slows them all alike and their ratios stay meaningful. The one timer of the project (the
benchmarks use it too)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_distil.evaluation.forward import model_inputs


def interleaved_median_seconds(calls: dict[str, Callable[[], object]], runs: int = 10,
                               warmup: int = 2) -> dict[str, float]:
    """Median wall seconds of each ``calls[name]()`` over ``runs`` rounds, after ``warmup`` untimed rounds.

    Within every round the calls take turns (each once, in order), so load from other processes on a shared
    machine falls on all of them alike. Each call must block until its work is done (e.g. fetch its
    result with ``.numpy()``).

    Args:
      calls: name -> a callable taking no argument.
      runs: timed rounds (the median is over these).
      warmup: untimed rounds first (tracing, caches).

    Returns:
      name -> median seconds per call.

    Example:
    >>> seconds = interleaved_median_seconds({"sum": lambda: sum(range(1000))}, runs=5, warmup=1)
    >>> sorted(seconds), seconds["sum"] > 0
    (['sum'], True)
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def median_latencies(forwards: dict, batch, runs: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median wall seconds of each ``forwards[name](batch)`` over ``runs``, after ``warmup`` untimed calls,
    the models taking turns within every run (:func:`interleaved_median_seconds`)."""
    inputs = model_inputs(batch)

    def blocking(forward):
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), forward(inputs))

    return interleaved_median_seconds({name: blocking(forward) for name, forward in forwards.items()}, runs, warmup)
