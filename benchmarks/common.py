"""Shared helpers for the benchmarks: timing, the matmul ceiling, tables and JSON output."""

from __future__ import annotations

import json
import os
import platform
import time

import tensorflow as tf

from keras_distil.evaluation.timing import interleaved_median_seconds

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def time_calls(fn, steps: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` untimed calls (``fn`` must block until done):
    the library's timer (keras_distil.evaluation.timing) with one callable."""
    return interleaved_median_seconds({"fn": fn}, steps, warmup)["fn"]


def matmul_ceiling_gflops(n: int = 2048, steps: int = 10, dtype=tf.float32) -> float:
    """Achievable dense matmul GFLOP/s on this machine: ``tf.linalg.matmul`` of two n x n matrices."""
    a = tf.random.normal((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b)[0, :1], tf.float32)))
    seconds = time_calls(lambda: matmul().numpy(), steps, warmup=2)
    return 2 * n**3 / seconds / 1e9


def machine_info() -> dict:
    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        "devices": [d.name for d in tf.config.list_logical_devices()],
    }


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as an aligned table; ``columns`` is (key, header, format spec)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([format(row[key], spec) if row.get(key) is not None else "-" for key, _, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for i, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, payload: dict, out_dir: str | None = None) -> str:
    """Write ``payload`` to ``<out_dir>/<name>.json`` atomically and return the path."""
    out_dir = out_dir or RESULTS_DIR
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    return path


def timed_run(out: str, run) -> dict:
    """``run()`` (a ``distill`` or ``pretrain`` into the run folder ``out``) and its wall time, or the record of
    a finished run in ``out`` (an interrupted benchmark resumes): ``train_seconds``, ``steps``, ``final_loss``,
    ``strategy``, kept in ``out/benchmark_timing.json``."""
    timing = os.path.join(out, "benchmark_timing.json")
    if os.path.exists(timing) and os.path.isdir(os.path.join(out, "student", "keras_hub")):
        with open(timing, encoding="utf-8") as f:
            return json.load(f)
    start = time.perf_counter()
    result = run()
    record = {"steps": result["steps"], "train_seconds": round(time.perf_counter() - start, 1),
              "final_loss": result["loss"], "strategy": result["strategy"]}
    with open(timing, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return record
