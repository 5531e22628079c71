"""Latency: the median wall time of compiled forwards that take turns on the same batch."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from keras_distil.evaluation.forward import model_inputs


def median_latencies(forwards: dict, batch, runs: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median wall seconds of each ``forwards[name](batch)`` over ``runs``, after ``warmup`` untimed calls.

    The models take turns within every run, so a machine whose load changes during the measurement
    slows them all alike and the speed ratios stay meaningful."""
    inputs = model_inputs(batch)

    def call(forward):
        tf.nest.map_structure(lambda t: t.numpy(), forward(inputs))

    for _ in range(warmup):
        for forward in forwards.values():
            call(forward)
    times = {name: [] for name in forwards}
    for _ in range(runs):
        for name, forward in forwards.items():
            start = time.perf_counter()
            call(forward)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}
