"""Gradient accumulation: first-step (trace) time and per-sequence step time against ``k``.

    python benchmarks/accumulation.py [--ks 1 4 16 64] [--micro-batch 8] [--steps 3] [--label NAME]

A 4-layer/128 teacher and its 2-layer student (vocab 8192, seq 128, soft targets at the masked positions)
are trained for a few optimizer steps of ``k`` micro-batches each through the runtime's Trainer. The
first step includes tracing; ``per-seq ms`` is the median step time after it divided by the sequences
per step. Prints a table and writes ``results/accumulation[-LABEL].json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine_info, print_table, write_json  # noqa: E402

from keras_distil import BertMLM, DistillConfig, Distiller, TrainConfig, student_from_teacher  # noqa: E402
from keras_distil.training import Trainer, build_optimizer  # noqa: E402

MODEL = dict(vocab_size=8192, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512,
             max_position_embeddings=128, dropout=0.1)
SEQ, PREDICTIONS = 128, 20


def dataset_fn(micro_batch: int):
    rng = np.random.default_rng(0)
    n = micro_batch * 16
    data = {"token_ids": rng.integers(5, MODEL["vocab_size"], (n, SEQ), dtype=np.int32),
            "padding_mask": np.ones((n, SEQ), np.int32),
            "mask_positions": np.sort(rng.integers(1, SEQ - 1, (n, PREDICTIONS)), axis=1).astype(np.int32),
            "mask_ids": rng.integers(5, MODEL["vocab_size"], (n, PREDICTIONS), dtype=np.int32),
            "mask_weights": np.ones((n, PREDICTIONS), np.float32)}
    return lambda ctx: tf.data.Dataset.from_tensor_slices(data).batch(micro_batch, drop_remainder=True).repeat()


def timed(make_train_step, times: list):
    """``make_train_step`` whose steps append their wall time (until the logs are on the host) to ``times``."""
    def make(*args, **kwargs):
        step = make_train_step(*args, **kwargs)

        def call(*batches):
            start = time.perf_counter()
            out = {key: value.numpy() for key, value in step(*batches).items()}
            times.append(time.perf_counter() - start)
            return out
        return call
    return make


def measure(k: int, micro_batch: int, steps: int) -> dict:
    import keras_distil.training.loop as loop

    keras.utils.set_random_seed(0)
    teacher = BertMLM(MODEL, name="teacher")
    distiller = Distiller(teacher, student_from_teacher(teacher), DistillConfig(ce_positions="masked"))
    distiller.compile(optimizer=build_optimizer(TrainConfig(), steps))
    trainer = Trainer(distiller, tf.distribute.get_strategy(), steps, micro_batches=k, console=False)
    times, original = [], loop.make_train_step
    loop.make_train_step = timed(original, times)
    try:
        trainer.fit(dataset_fn(micro_batch))
    finally:
        loop.make_train_step = original
    later = sorted(times[1:])
    median = later[len(later) // 2] if later else float("nan")
    return {"k": k, "micro_batch": micro_batch, "sequences_per_step": k * micro_batch,
            "first_step_s": times[0], "step_s": median, "per_seq_ms": 1000 * median / (k * micro_batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    rows = [measure(k, args.micro_batch, args.steps) for k in args.ks]
    print_table(rows, [("k", "k", "d"), ("sequences_per_step", "seq/step", "d"),
                       ("first_step_s", "first step s", ".1f"), ("step_s", "step s", ".2f"),
                       ("per_seq_ms", "per-seq ms", ".1f")])
    name = "accumulation" + (f"-{args.label}" if args.label else "")
    print("written:", write_json(name, {"machine": machine_info(), "rows": rows, "label": args.label}))


if __name__ == "__main__":
    main()
