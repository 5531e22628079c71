"""Distillation step throughput: keras-distil's Distiller against keras.distillation.Distiller, with MFU.

    python benchmarks/train_step.py [--steps 10] [--quick]

Teacher 4 layers / hidden 256 / 4 heads / FFN 1024, student 2 layers (every other teacher layer),
vocab 30522, seq 128, batch 16, 15 % of tokens masked (20 prediction slots). For each variant: seconds
per step (median), sequences/s, tokens/s, model FLOPs per step and MFU = achieved FLOP/s over a
tf.linalg.matmul ceiling measured in the same run. Writes benchmarks/results/train_step.json.

Model FLOPs count the matmuls the model needs (teacher forward once, student forward + backward =
3x its forward), not what an implementation happens to execute: the vocabulary projection counts at
every position for ``ce_positions="all"`` and at the masked positions only for ``"masked"``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, matmul_ceiling_gflops, print_table, time_calls, write_json  # noqa: E402

from keras_distil import BertMLM, Distiller, ModelConfig, student_from_teacher  # noqa: E402

FULL = dict(vocab_size=30522, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
            max_position_embeddings=512, dropout=0.1)
QUICK = dict(FULL, vocab_size=2000, hidden_size=64, num_heads=2, intermediate_size=128)


def encoder_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward matmul FLOPs of one transformer block per token: QKV+output, FFN, attention scores+context."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    return 8 * h * h + 4 * h * i + 4 * seq_len * h


def head_flops_per_position(cfg: ModelConfig) -> float:
    """MLM head forward FLOPs per projected position: transform dense + tied decoder."""
    return 2 * cfg.hidden_size * cfg.hidden_size + 2 * cfg.hidden_size * cfg.vocab_size


def step_flops(teacher_cfg, student_cfg, batch, seq_len, projected_positions) -> float:
    """Teacher forward + 3 x student forward, for ``projected_positions`` head positions per batch."""
    tokens = batch * seq_len

    def forward(cfg):
        return (cfg.num_layers * tokens * encoder_flops_per_token(cfg, seq_len)
                + projected_positions * head_flops_per_position(cfg))

    return forward(teacher_cfg) + 3 * forward(student_cfg)


def synthetic_batch(vocab, batch, seq_len, predictions, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000 % vocab, vocab, (batch, seq_len)).astype("int32")
    positions = np.sort(np.stack([rng.choice(np.arange(1, seq_len - 1), predictions, replace=False)
                                  for _ in range(batch)]), axis=1).astype("int32")
    return {
        "token_ids": ids,
        "padding_mask": np.ones((batch, seq_len), "int32"),
        "mask_positions": positions,
        "mask_ids": np.take_along_axis(ids, positions, 1),
        "mask_weights": np.ones((batch, predictions), "float32"),
    }


def functional(inner, seq_len: int, predictions: int | None):
    """``inner`` as a functional model that returns the logits alone (what keras.distillation expects),
    its last hidden states on a layer named "hidden" (keras.distillation finds features by layer name).
    ``predictions``: logits at that many mask positions; None: at every position."""
    shapes = {"token_ids": seq_len, "padding_mask": seq_len}
    if predictions:
        shapes["mask_positions"] = predictions
    inputs = {k: keras.Input((n,), dtype="int32", name=k) for k, n in shapes.items()}
    sequence = inner.backbone({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"],
                               "segment_ids": keras.ops.zeros_like(inputs["token_ids"])})["sequence_output"]
    hidden = keras.layers.Identity(name="hidden")(sequence)
    if predictions:
        hidden = keras.ops.take_along_axis(hidden, keras.ops.expand_dims(inputs["mask_positions"], -1), axis=1)
    logits = inner.mlm_head(hidden, token_embedding=inner.backbone.token_embedding)
    return keras.Model(inputs, logits)


def ours(teacher, student, batch, ce_positions, jit):
    distiller = Distiller(teacher, student, {"ce_positions": ce_positions})
    distiller.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
    return lambda: distiller.train_on_batch(batch)


def keras_builtin(teacher, student, batch, ce_positions):
    """The same objective through keras.distillation: soft targets, student MLM loss, cosine on hidden states."""
    seq_len, predictions = batch["token_ids"].shape[1], batch["mask_positions"].shape[1]
    masked = ce_positions == "masked"
    kd = keras.distillation.Distiller(
        teacher=functional(teacher, seq_len, predictions if masked else None),
        student=functional(student, seq_len, predictions if masked else None),
        distillation_losses=[
            # Its default loss="kl_divergence" skips the softmax and T^2 (see STACK-NOTES): pass the class.
            keras.distillation.LogitsDistillation(temperature=2.0, loss=keras.losses.KLDivergence()),
            keras.distillation.FeatureDistillation(loss="cosine_similarity", teacher_layer_name="hidden",
                                                   student_layer_name="hidden"),
        ],
        distillation_loss_weights=[5.0, 1.0],  # alpha_ce, alpha_cos
        student_loss_weight=2.0 / 8.0,  # alpha_mlm / (alpha_ce + alpha_mlm + alpha_cos); must lie in [0, 1]
    )
    kd.compile(optimizer=keras.optimizers.Adam(1e-4),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {k: batch[k] for k in ("token_ids", "padding_mask", "mask_positions")}
    if not masked:
        del x["mask_positions"]
    y = batch["mask_ids"] if masked else batch["token_ids"]
    return lambda: kd.train_on_batch(x, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (tracing, XLA compile)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    parser.add_argument("--no-xla", action="store_true", help="skip the jit_compile=True variants")
    parser.add_argument("--out", default=None, help="folder for train_step.json (default benchmarks/results)")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    teacher = BertMLM(QUICK if args.quick else FULL, name="teacher")
    student = student_from_teacher(teacher)
    predictions = max(1, round(0.15 * args.seq_len))
    batch = synthetic_batch(teacher.model_config.vocab_size, args.batch, args.seq_len, predictions)
    ceiling = matmul_ceiling_gflops(512 if args.quick else 2048)

    variants = []
    for ce_positions in ("all", "masked"):
        variants.append(("keras.distillation", ce_positions, False,
                         lambda cp=ce_positions: keras_builtin(teacher, student, batch, cp)))
        for jit in (False,) if args.no_xla else (False, True):
            variants.append(("keras-distil", ce_positions, jit,
                             lambda cp=ce_positions, j=jit: ours(teacher, student, batch, cp, j)))

    rows = []
    for name, ce_positions, jit, make in variants:
        seconds = time_calls(make(), args.steps, args.warmup)
        projected = args.batch * (args.seq_len if ce_positions == "all" else predictions)
        flops = step_flops(teacher.model_config, student.model_config, args.batch, args.seq_len, projected)
        rows.append({
            "implementation": name, "ce_positions": ce_positions, "xla": jit,
            "s_per_step": seconds, "seq_per_s": args.batch / seconds,
            "tokens_per_s": args.batch * args.seq_len / seconds,
            "gflop_per_step": flops / 1e9, "mfu": flops / seconds / 1e9 / ceiling,
        })
    for row in rows:
        base = next(r for r in rows if r["implementation"] == "keras.distillation"
                    and r["ce_positions"] == row["ce_positions"])
        row["speedup_vs_keras"] = base["s_per_step"] / row["s_per_step"]

    print(f"\nmatmul ceiling: {ceiling:.0f} GFLOP/s (float32, tf.linalg.matmul)")
    print_table(rows, [("implementation", "implementation", "s"), ("ce_positions", "CE on", "s"),
                       ("xla", "XLA", ""), ("s_per_step", "s/step", ".3f"), ("seq_per_s", "seq/s", ".1f"),
                       ("tokens_per_s", "tokens/s", ".0f"), ("gflop_per_step", "GFLOP/step", ".1f"),
                       ("mfu", "MFU", ".1%"), ("speedup_vs_keras", "x keras", ".2f")])
    path = write_json("train_step", {
        "config": {"teacher": teacher.model_config.to_dict(), "student_layers": student.model_config.num_layers,
                   "batch": args.batch, "seq_len": args.seq_len, "predictions_per_seq": predictions,
                   "steps": args.steps, "warmup": args.warmup, "quick": args.quick},
        "machine": machine_info(), "matmul_ceiling_gflops": ceiling, "results": rows,
    }, args.out)
    print(f"\nwrote {path}")
    return rows


if __name__ == "__main__":
    main()
