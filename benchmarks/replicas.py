"""Replicas, workers, accumulation, XLA and precision on this machine: one training step of the runtime.

Every case runs in a fresh process (a multi-worker strategy and logical devices must be set before TF
starts) and times ``Trainer``'s step on the same global batch of hand-made data:

    1 device                     default strategy, batch B
    1 device + XLA               the same step jit-compiled
    1 device, mixed_bfloat16     activations in bfloat16
    2 replicas (logical CPUs)    MirroredStrategy over two logical CPU devices, B/2 each
    2 workers (127.0.0.1)        MultiWorkerMirroredStrategy, two processes, B/2 each (per-worker times)
    k micro-batches              gradient accumulation: k x B/k sequences per optimizer step

    .venv/bin/python benchmarks/replicas.py [--steps 8] [--batch 32] [--quick]

Prints a table and writes benchmarks/results/replicas.json. Speeds are medians of timed steps after
warm-up (tracing and XLA compilation are reported apart); on a shared 2-core machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODEL = dict(vocab_size=8192, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512,
             max_position_embeddings=128, dropout=0.1)
SEQ, PREDICTIONS = 128, 20

CASES = {
    "1 device": dict(strategy="default"),
    "1 device + XLA": dict(strategy="default", jit=True),
    "1 device, mixed_bfloat16": dict(strategy="default", precision="mixed_bfloat16"),
    "2 replicas (logical CPUs)": dict(strategy="mirrored", logical=2),
    "2 workers (127.0.0.1)": dict(strategy="multiworker"),
    "accumulate 2 x B/2": dict(strategy="default", micro=2),
    "accumulate 4 x B/4": dict(strategy="default", micro=4),
}


def _batches(n, batch, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(SEQ // 2, SEQ + 1, batch)
        padding = (np.arange(SEQ)[None] < lengths[:, None]).astype("int32")
        ids = rng.integers(5, MODEL["vocab_size"], (batch, SEQ)).astype("int32") * padding
        positions = np.sort(rng.integers(1, SEQ // 2, (batch, PREDICTIONS)), -1).astype("int32")
        out.append({"token_ids": ids, "padding_mask": padding, "mask_positions": positions,
                    "mask_ids": rng.integers(5, MODEL["vocab_size"], (batch, PREDICTIONS)).astype("int32"),
                    "mask_weights": np.ones((batch, PREDICTIONS), "float32")})
    return out


def run_case(spec: dict, steps: int, batch: int, warmup: int = 2) -> dict:
    """One case in this process; returns timings."""
    import tensorflow as tf

    if spec.get("logical"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical"])
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import keras
    from helpers.training import slices_dataset_fn

    from keras_distil import BertMLM, Distiller, TrainConfig, student_from_teacher
    from keras_distil.evaluation.timing import interleaved_median_seconds
    from keras_distil.training import Trainer, make_strategy, worker_info
    from keras_distil.training.step import make_train_step

    strategy = make_strategy(spec["strategy"])
    precision = spec.get("precision", "float32")
    keras.config.set_dtype_policy(precision)
    micro = spec.get("micro", 1)
    total = warmup + steps + 1
    with strategy.scope():
        keras.utils.set_random_seed(0)
        teacher = BertMLM(MODEL, name="teacher")
        distiller = Distiller(teacher, student_from_teacher(teacher))
        from keras_distil.training import build_optimizer

        distiller.compile(optimizer=build_optimizer(TrainConfig(mixed_precision=precision), total))
    trainer = Trainer(distiller, strategy, total, micro_batches=micro, console=False)
    dataset = strategy.distribute_datasets_from_function(slices_dataset_fn(_batches(4 * micro, batch // micro),
                                                                           batch // micro))
    iterator = iter(dataset)
    step = make_train_step(distiller, strategy, micro, bool(spec.get("jit")), dataset.element_spec)
    del trainer

    def one():
        out = step(*(next(iterator) for _ in range(micro)))
        return float(out["loss"])

    start = time.perf_counter()
    one()
    first = time.perf_counter() - start
    median = interleaved_median_seconds({"step": one}, steps, warmup - 1)["step"]
    task, chief = worker_info(strategy)
    return {"replicas": strategy.num_replicas_in_sync, "micro_batches": micro, "global_batch": batch,
            "first_step_s": first, "step_s": median, "sequences_per_s": batch / median,
            "tokens_per_s": batch * SEQ / median, "task": task, "chief": chief}


def spawn(name: str, args, workers: int = 1) -> dict:
    """Run a case in fresh process(es); for workers > 1, TF_CONFIG on loopback ports, the chief's numbers."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from helpers.training import run_local_workers

    cmd = [sys.executable, __file__, "--case", name, "--steps", str(args.steps), "--batch", str(args.batch)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    if workers > 1:
        runs = run_local_workers(lambda i: cmd, workers, timeout=1800, env=env)
    else:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        runs = [(proc.returncode, proc.stdout, proc.stderr)]
    results = []
    for returncode, out, err in runs:
        if returncode != 0:
            raise RuntimeError(f"case {name!r} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    chief = results[0]
    if workers > 1:
        chief["step_s_per_worker"] = [r["step_s"] for r in results]
    return chief


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per case (after 2 warm-up steps)")
    parser.add_argument("--batch", type=int, default=32, help="global batch (sequences per optimizer step)")
    parser.add_argument("--case", help="run one case in this process and print its JSON (internal)")
    parser.add_argument("--only", action="append", help="run only these cases (repeatable)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(CASES[args.case], args.steps, args.batch)))
        return 0
    sys.path.insert(0, HERE)
    from common import machine_info, print_table, write_json

    rows = []
    for name, spec in CASES.items():
        if args.only and name not in args.only:
            continue
        row = {"case": name, **spawn(name, args, workers=2 if spec["strategy"] == "multiworker" else 1)}
        rows.append(row)
        print(f"{name}: {row['step_s'] * 1000:.0f} ms/step", flush=True)
    base = next((r["step_s"] for r in rows if r["case"] == "1 device"), None)
    for row in rows:
        row["relative_speed"] = base / row["step_s"] if base else None
    print()
    print_table(rows, [("case", "case", ""), ("replicas", "replicas", "d"), ("micro_batches", "k", "d"),
                       ("step_s", "s/step", ".3f"), ("sequences_per_s", "seq/s", ".1f"),
                       ("tokens_per_s", "tok/s", ".0f"), ("relative_speed", "vs 1 device", ".2f"),
                       ("first_step_s", "first step s", ".1f")])
    payload = {"model": MODEL, "seq_len": SEQ, "global_batch": args.batch, "timed_steps": args.steps,
               "machine": machine_info(), "rows": rows}
    print(f"\nwrote {write_json('replicas' if not args.only else 'replicas-subset', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
