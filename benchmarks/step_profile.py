"""Where the distillation step's time goes: an op-level breakdown from a ``tf.profiler`` trace.

    python benchmarks/step_profile.py [--config small|base] [--steps 5]

The step of benchmarks/train_step.py (same shapes, objective and batch) is traced for ``--steps`` steps after
warm-up, in float32 (the old default) and with the defaults chosen on this device. The trace's op events
(``/host:CPU`` plane, TensorFlow executor threads) are summed per op type and grouped: matmuls (``MatMul``,
``BatchMatMul``, ``Einsum``, oneDNN's ``_Mkl*MatMul`` / ``_Fused*``), element-wise and reductions, softmax,
layer norm, gathers and scatters, casts, the optimizer update, and the rest. For the matmuls the achieved
GFLOP/s (the step's model FLOPs over the matmul time) is set beside the ``tf.linalg.matmul`` ceiling: the share
of the step that is not matmul is what keeps MFU below the ceiling. Op times summed over the two executor
threads can exceed the wall time when ops overlap. Writes benchmarks/results/step_profile_<config>.json.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine_info, matmul_ceiling_gflops, print_table, time_calls, write_json  # noqa: E402
from train_step import (  # noqa: E402
    CANDIDATES,
    CONFIGS,
    compute_dtype,
    default_variant,
    ours,
    step_flops,
    synthetic_batch,
)

from keras_distil import BertMLM, student_from_teacher  # noqa: E402

# op type -> group, first match wins (substrings of the TF / oneDNN op type)
GROUPS = [
    ("matmul", ("MatMul", "Einsum", "Conv")),
    ("softmax", ("Softmax",)),
    ("layer norm", ("LayerNorm", "FusedBatchNorm", "Rsqrt")),
    ("gather / scatter", ("Gather", "Scatter", "UnsortedSegment", "TensorScatter", "ResourceGather")),
    ("cast", ("Cast",)),
    ("optimizer update", ("ResourceApply", "AssignSub", "AssignAdd", "AssignVariable", "ReadVariable")),
    ("element-wise / reduction", ("Mul", "Add", "Sub", "Div", "Erf", "Tanh", "Exp", "Log", "Sqrt", "Pow", "Square",
                                  "Maximum", "Minimum", "Sum", "Mean", "Max", "Neg", "Relu", "Select", "BiasAdd",
                                  "Sigmoid", "Reciprocal", "Less", "Greater", "Equal", "Where")),
]


def group_of(op_type: str) -> str:
    for group, needles in GROUPS:
        if any(n in op_type for n in needles):
            return group
    return "other (copies, reshapes, control)"


def op_seconds(trace_dir: str) -> dict[str, float]:
    """Seconds per op type summed over the TensorFlow executor threads of the trace in ``trace_dir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals = collections.Counter()
    for path in glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if plane.name != "/host:CPU":
                continue
            for line in plane.lines:
                if not line.name.startswith("tf_Compute") and not line.name.startswith("tf_inter_op"):
                    continue
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if ":" in name and "::" not in name:  # "<op name>:<op type>"; not the executor's own events
                        totals[name.rsplit(":", 1)[1]] += event.duration_ps * 1e-12
    return dict(totals)


def profile(label, step, steps, flops, ceiling) -> tuple[list[dict], dict]:
    seconds = time_calls(step, steps, warmup=3)
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        ops = op_seconds(trace_dir)
    by_group = collections.Counter()
    for op_type, s in ops.items():
        by_group[group_of(op_type)] += s / steps
    busy = sum(by_group.values())
    rows = [{"variant": label, "group": g, "ms_per_step": s * 1e3, "share": s / busy}
            for g, s in by_group.most_common()]
    matmul = by_group.get("matmul", 0.0)
    summary = {"variant": label, "s_per_step": seconds, "op_seconds_per_step": busy, "matmul_seconds": matmul,
               "matmul_gflops": flops / matmul / 1e9 if matmul else None, "ceiling_gflops": ceiling,
               "top_ops": sorted(((k, v / steps * 1e3) for k, v in ops.items()), key=lambda kv: -kv[1])[:15]}
    return rows, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=tuple(CONFIGS), default="small")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    model_dict, batch_size = CONFIGS[args.config]
    teacher = BertMLM(model_dict, name="teacher")
    student = student_from_teacher(teacher)
    predictions = max(1, round(0.15 * args.seq_len))
    batch = synthetic_batch(teacher.model_config.vocab_size, batch_size, args.seq_len, predictions)
    batch["segment_ids"] = np.zeros_like(batch["token_ids"])
    flops = step_flops(teacher.model_config, student.model_config, batch_size, args.seq_len, batch_size * predictions)
    ceilings = {"float32": matmul_ceiling_gflops(2048), "bfloat16": matmul_ceiling_gflops(2048, dtype=tf.bfloat16)}
    default, _ = default_variant()
    variants = {"before (float32)": CANDIDATES["before (float32)"], "default": default}
    rows, summaries = [], []
    for label, variant in variants.items():
        ceiling = ceilings[compute_dtype(variant["policy"])]
        r, s = profile(label, ours(teacher, student, batch, variant), args.steps, flops, ceiling)
        rows += r
        summaries.append({**s, **variant})
    print_table(rows, [("variant", "variant", "s"), ("group", "op group", "s"), ("ms_per_step", "ms/step", ".1f"),
                       ("share", "share of op time", ".1%")])
    print()
    print_table(summaries, [("variant", "variant", "s"), ("s_per_step", "wall s/step", ".3f"),
                            ("op_seconds_per_step", "op s/step", ".3f"), ("matmul_seconds", "matmul s/step", ".3f"),
                            ("matmul_gflops", "matmul GFLOP/s", ".0f"), ("ceiling_gflops", "ceiling", ".0f")])
    path = write_json(f"step_profile_{args.config}", {"machine": machine_info(), "config": args.config,
                                                      "ceilings": ceilings, "groups": rows, "summaries": summaries},
                      args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
