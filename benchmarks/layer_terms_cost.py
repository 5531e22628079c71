"""What the layer-wise terms cost per training step, and proof that the default step does no extra work.

    python benchmarks/layer_terms_cost.py [--configs default narrow layer-wise] [--steps 12]

A teacher of 4 layers x 256 (4 heads, vocabulary 30,522) and a 2-layer student, batch 16 x 128 tokens,
masked LM objective (5 CE + 2 MLM + 1 cos), AdamW, the runtime's fused step (``make_train_step``), on this
machine's CPU. Configurations:

* ``default``: the student of the teacher's width (copied layers), no layer-wise term;
* ``narrow``: a student 128 wide, the cosine through the learned projection;
* ``layer-wise``: the narrow student plus every layer-wise term on the mapped layers.

For each: the traced step's op count and matmul count (deterministic: equal counts mean equal work) and the
median step time after warm-up, the configurations interleaved over ``--rounds`` rounds. Run it at two
commits to compare the default step before and after a change (``--configs default`` works on commits that
predate the layer-wise terms). Prints a table and writes benchmarks/results/layer_terms_cost.json.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine_info, print_table, write_json  # noqa: E402

TEACHER = dict(vocab_size=30522, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
               max_position_embeddings=128, dropout=0.1)
BATCH, LENGTH, PREDICTIONS = 16, 128, 20
LAYER_WISE = {"alpha_layer_mse": 1.0, "alpha_attention": 1.0, "alpha_value_relation": 1.0,
              "alpha_embedding_mse": 1.0, "relation_layers": "mapped"}


def build(name: str):
    import keras
    import tensorflow as tf

    from keras_distil import Distiller
    from keras_distil.models.bert import build_mlm_model
    from keras_distil.models.student import build_student
    from keras_distil.training.step import make_train_step

    keras.utils.set_random_seed(0)
    teacher = build_mlm_model(TEACHER)
    if name == "default":
        student, config = build_student(teacher), {}
    else:
        from keras_distil.config import StudentConfig

        student = build_student(teacher, init="random", seed=0, shape=StudentConfig(hidden_size=128))
        config = LAYER_WISE if name == "layer-wise" else {}
    distiller = Distiller(teacher, student, config)
    distiller.compile(optimizer=keras.optimizers.AdamW(1e-4))
    spec = {"token_ids": tf.TensorSpec([BATCH, LENGTH], tf.int32),
            "padding_mask": tf.TensorSpec([BATCH, LENGTH], tf.int32),
            "mask_positions": tf.TensorSpec([BATCH, PREDICTIONS], tf.int32),
            "mask_ids": tf.TensorSpec([BATCH, PREDICTIONS], tf.int32),
            "mask_weights": tf.TensorSpec([BATCH, PREDICTIONS], tf.float32)}
    step = make_train_step(distiller, tf.distribute.get_strategy(), 1, element_spec=spec)
    rng = tf.random.Generator.from_seed(1)
    batch = {"token_ids": rng.uniform([BATCH, LENGTH], 5, TEACHER["vocab_size"], tf.int32),
             "padding_mask": tf.ones([BATCH, LENGTH], tf.int32),
             "mask_positions": tf.tile(tf.range(0, LENGTH, LENGTH // PREDICTIONS)[None, :PREDICTIONS], [BATCH, 1]),
             "mask_ids": rng.uniform([BATCH, PREDICTIONS], 5, TEACHER["vocab_size"], tf.int32),
             "mask_weights": tf.ones([BATCH, PREDICTIONS], tf.float32)}
    graph = step.get_concrete_function(spec).graph
    ops = collections.Counter(op.type for op in graph.get_operations())
    for function in graph._functions.values():
        if hasattr(function, "graph"):
            ops.update(op.type for op in function.graph.get_operations())
    counts = {"ops": sum(ops.values()), "matmuls": sum(v for k, v in ops.items() if "MatMul" in k or "Einsum" in k)}
    return (lambda: step(batch)), counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["default", "narrow", "layer-wise"])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="layer_terms_cost", help="results file name")
    args = parser.parse_args()

    built = {name: build(name) for name in args.configs}
    times = {name: [] for name in args.configs}
    for _ in range(args.rounds):
        for name, (run, _) in built.items():
            for _ in range(args.warmup):
                run()["loss"].numpy()
            for _ in range(args.steps):
                start = time.perf_counter()
                run()["loss"].numpy()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[args.configs[0]])
    rows = [{"config": name, **counts, "step_s": statistics.median(times[name]),
             "vs_first": statistics.median(times[name]) / base} for name, (_, counts) in built.items()]
    print_table(rows, [("config", "config", "s"), ("ops", "graph ops", "d"), ("matmuls", "matmuls", "d"),
                       ("step_s", "median step s", ".3f"), ("vs_first", f"x {args.configs[0]}", ".2f")])
    print(f"wrote {write_json(args.name, {'machine': machine_info(), 'teacher': TEACHER, 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
