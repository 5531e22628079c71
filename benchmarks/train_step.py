"""Distillation step throughput: keras-distil's step against a hand-written Keras step and keras.distillation.

    python benchmarks/train_step.py [--config small|base|both] [--steps 12] [--quick]

Two configurations, vocabulary 30522, sequence 128, 15 % of tokens masked (19 prediction slots):
``small``: teacher 4 layers / hidden 256 / 4 heads / FFN 1024, batch 16; ``base``: BERT-base (12 / 768 / 12 /
3072), batch 8. The student has half the teacher's layers (every other one). The loss is 5 KL(T=2) + 2 MLM +
1 cosine, soft targets and MLM at the masked positions; every row uses AdamW(1e-4) and the same batch.

Rows, timed in turns (each round runs every row once; the median over rounds, so that load from other
processes falls on all rows alike):
- hand-written: a ``tf.function`` + ``GradientTape`` step over KerasHub's ``BertMaskedLM``, as a user writes it;
- keras.distillation: Keras' own ``Distiller`` with the same three terms;
- keras-distil rows: the step ``keras-distil distill`` runs (``make_train_step``), before (float32, no XLA: the
  old default; the fused vocabulary terms of losses.py are in every row), the teacher alone in bfloat16, and the
  default chosen on this device (``train.mixed_precision``, ``train.teacher_precision`` and
  ``train.jit_compile`` = auto); ``--xla`` adds the XLA candidates.

MFU = the step's model FLOPs at the ceiling of the precision each part computes in (tf.linalg.matmul, float32
and bfloat16, measured in the same run) over the measured time. Model FLOPs count the matmuls the model
needs (teacher forward once, student forward + backward = 3x its forward; the vocabulary projection at the
masked positions), not what an implementation happens to execute. Writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine_info, matmul_ceiling_gflops, print_table, write_json  # noqa: E402

from keras_distil import BertMLM, Distiller, ModelConfig, TrainConfig, student_from_teacher  # noqa: E402
from keras_distil.evaluation.timing import interleaved_median_seconds  # noqa: E402
from keras_distil.models.bert import precision_copy  # noqa: E402
from keras_distil.training import make_train_step  # noqa: E402
from keras_distil.training.optim import precision_policy  # noqa: E402
from keras_distil.training.speed import resolve_runtime  # noqa: E402

SMALL = dict(vocab_size=30522, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
             max_position_embeddings=512, dropout=0.1)
BASE = dict(SMALL, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)
QUICK = dict(SMALL, vocab_size=2000, hidden_size=64, num_heads=2, intermediate_size=128)
CONFIGS = {"small": (SMALL, 16), "base": (BASE, 8)}
OBJECTIVE = {"ce_positions": "masked", "temperature": 2.0, "alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0}
LEARNING_RATE = 1e-4

# keras-distil's step under each speed knob: the student's Keras policy, the teacher's, XLA.
CANDIDATES = {
    "before (float32)": {"policy": "float32", "teacher": "float32", "xla": False},
    "teacher bfloat16": {"policy": "float32", "teacher": "bfloat16", "xla": False},
    "XLA": {"policy": "float32", "teacher": "float32", "xla": True},
    "mixed_bfloat16 + teacher bfloat16 + XLA": {"policy": "mixed_bfloat16", "teacher": "bfloat16", "xla": True},
}


def encoder_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward matmul FLOPs of one transformer block per token: QKV+output, FFN, attention scores+context."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    return 8 * h * h + 4 * h * i + 4 * seq_len * h


def head_flops_per_position(cfg: ModelConfig) -> float:
    """MLM head forward FLOPs per projected position: transform dense + tied decoder."""
    return 2 * cfg.hidden_size * cfg.hidden_size + 2 * cfg.hidden_size * cfg.vocab_size


def forward_flops(cfg, batch, seq_len, projected_positions) -> float:
    """One forward pass: every block at every token, the MLM head at ``projected_positions`` positions."""
    return (cfg.num_layers * batch * seq_len * encoder_flops_per_token(cfg, seq_len)
            + projected_positions * head_flops_per_position(cfg))


def step_flops(teacher_cfg, student_cfg, batch, seq_len, projected_positions) -> float:
    """Teacher forward + 3 x student forward, for ``projected_positions`` head positions per batch."""
    return (forward_flops(teacher_cfg, batch, seq_len, projected_positions)
            + 3 * forward_flops(student_cfg, batch, seq_len, projected_positions))


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


def ours(teacher, student, batch, variant):
    """keras-distil's distributed step (what ``keras-distil distill`` runs: ``make_train_step`` under the default
    strategy), with ``variant``'s student policy, teacher precision and XLA setting."""
    policy, teacher_dtype, jit = variant["policy"], variant["teacher"], variant["xla"]
    with precision_policy(policy):
        student = precision_copy(student, policy)
        distiller = Distiller(precision_copy(teacher, teacher_dtype), student, OBJECTIVE)
        distiller.compile(optimizer=keras.optimizers.AdamW(LEARNING_RATE))
        step = make_train_step(distiller, tf.distribute.get_strategy(), 1, jit)
    inputs = {k: tf.constant(v) for k, v in batch.items()}
    return lambda: step(inputs)["loss"].numpy()


def hand_written(teacher, student, batch):
    """What a user writes without the toolkit: KerasHub ``BertMaskedLM`` teacher and student, one
    ``tf.function`` with a ``GradientTape``, the same loss (5 KL(T=2) + 2 MLM + 1 cosine), AdamW. Plain, not
    tuned to lose: logits at the masked positions only, the teacher outside the tape."""
    t_lm, s_lm = keras_hub_masked_lm(teacher), keras_hub_masked_lm(student)
    optimizer = keras.optimizers.AdamW(LEARNING_RATE)
    temperature = OBJECTIVE["temperature"]

    def forward(model, x, training):
        hidden = model.backbone({k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")},
                                training=training)["sequence_output"]
        return hidden, model.masked_lm_head(hidden, mask_positions=x["mask_positions"])

    @tf.function
    def step(x):
        t_hidden, t_logits = forward(t_lm, x, False)
        weights = x["mask_weights"] / tf.reduce_sum(x["mask_weights"])
        padding = tf.cast(x["padding_mask"], tf.float32)
        with tf.GradientTape() as tape:
            s_hidden, s_logits = forward(s_lm, x, True)
            soft = tf.nn.softmax(t_logits / temperature)
            kl = tf.reduce_sum(soft * (tf.nn.log_softmax(t_logits / temperature)
                                       - tf.nn.log_softmax(s_logits / temperature)), -1) * temperature**2
            mlm = keras.losses.sparse_categorical_crossentropy(x["mask_ids"], s_logits, from_logits=True)
            cos = 1.0 + keras.losses.cosine_similarity(t_hidden, s_hidden)  # keras' is -cos
            loss = (OBJECTIVE["alpha_ce"] * tf.reduce_sum(kl * weights)
                    + OBJECTIVE["alpha_mlm"] * tf.reduce_sum(mlm * weights)
                    + OBJECTIVE["alpha_cos"] * tf.reduce_sum(cos * padding) / tf.reduce_sum(padding))
        grads = tape.gradient(loss, s_lm.trainable_variables)
        optimizer.apply_gradients(zip(grads, s_lm.trainable_variables))
        return loss

    inputs = {k: tf.constant(v) for k, v in batch.items()}
    return lambda: step(inputs).numpy()


def keras_hub_masked_lm(model):
    """KerasHub's own ``BertMaskedLM`` of ``model``'s shape (random weights: only the cost matters here)."""
    cfg = model.model_config
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=cfg.vocab_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
        hidden_dim=cfg.hidden_size, intermediate_dim=cfg.intermediate_size, dropout=cfg.dropout,
        max_sequence_length=cfg.max_position_embeddings)
    return keras_hub.models.BertMaskedLM(backbone, preprocessor=None)


def keras_builtin(teacher, student, batch):
    """The same objective through keras.distillation: soft targets, student MLM loss, cosine on hidden states."""
    seq_len, predictions = batch["token_ids"].shape[1], batch["mask_positions"].shape[1]
    kd = keras.distillation.Distiller(
        teacher=functional(teacher, seq_len, predictions),
        student=functional(student, seq_len, predictions),
        distillation_losses=[
            # Its default loss="kl_divergence" skips the softmax and T^2 (see STACK-NOTES): pass the class.
            keras.distillation.LogitsDistillation(temperature=OBJECTIVE["temperature"],
                                                  loss=keras.losses.KLDivergence()),
            keras.distillation.FeatureDistillation(loss="cosine_similarity", teacher_layer_name="hidden",
                                                   student_layer_name="hidden"),
        ],
        distillation_loss_weights=[OBJECTIVE["alpha_ce"], OBJECTIVE["alpha_cos"]],
        # alpha_mlm / (alpha_ce + alpha_mlm + alpha_cos): keras.distillation wants it in [0, 1]
        student_loss_weight=OBJECTIVE["alpha_mlm"] / 8.0,
    )
    kd.compile(optimizer=keras.optimizers.AdamW(LEARNING_RATE),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {k: batch[k] for k in ("token_ids", "padding_mask", "mask_positions")}
    return lambda: kd.train_on_batch(x, batch["mask_ids"])


def default_variant() -> tuple[dict, dict]:
    """The keras-distil row with every knob at its default (auto), as resolved on this device, and the reasons."""
    choice = resolve_runtime(TrainConfig(), tf.distribute.get_strategy())
    return {"policy": choice.policy, "teacher": choice.teacher_precision, "xla": choice.jit_compile}, choice.reasons


def compute_dtype(policy: str) -> str:
    """The dtype a Keras dtype policy computes in ("mixed_bfloat16" -> "bfloat16")."""
    return keras.DTypePolicy(policy).compute_dtype


def ideal_seconds(teacher_cfg, student_cfg, batch, seq_len, predictions, teacher_dtype, student_dtype, ceilings):
    """The step at the matmul ceiling of the precision each model computes in (FLOPs / ceiling, summed)."""
    projected = batch * predictions
    teacher = forward_flops(teacher_cfg, batch, seq_len, projected)
    student = 3 * forward_flops(student_cfg, batch, seq_len, projected)
    return (teacher / ceilings[compute_dtype(teacher_dtype)] + student / ceilings[compute_dtype(student_dtype)]) / 1e9


def bench_config(name, model_dict, batch_size, args, ceilings) -> list[dict]:
    keras.utils.set_random_seed(0)
    teacher = BertMLM(model_dict, name="teacher")
    student = student_from_teacher(teacher)
    predictions = max(1, round(0.15 * args.seq_len))
    batch = synthetic_batch(teacher.model_config.vocab_size, batch_size, args.seq_len, predictions)
    batch["segment_ids"] = np.zeros_like(batch["token_ids"])
    default, reasons = default_variant()
    # XLA rows only on request: on this CPU they lost in every configuration (XLA's CPU matmuls are not
    # oneDNN's, and bfloat16 ones are emulated), and their compiler's spinning threads slow the next row.
    variants = {k: v for k, v in CANDIDATES.items() if args.xla or not v["xla"]}
    variants[f"default ({default['policy']}, teacher {default['teacher']}, XLA {'on' if default['xla'] else 'off'})"] \
        = default
    calls = {"hand-written GradientTape": hand_written(teacher, student, batch),
             "keras.distillation": keras_builtin(teacher, student, batch)}
    settings = {"hand-written GradientTape": {"policy": "float32", "teacher": "float32", "xla": False},
                "keras.distillation": {"policy": "float32", "teacher": "float32", "xla": False}}
    for label, variant in variants.items():
        calls[f"keras-distil {label}"] = ours(teacher, student, batch, variant)
        settings[f"keras-distil {label}"] = variant
    seconds = interleaved_median_seconds(calls, args.steps, args.warmup)
    flops = step_flops(teacher.model_config, student.model_config, batch_size, args.seq_len,
                       batch_size * predictions)
    rows = []
    for label, s in seconds.items():
        v = settings[label]
        ideal = ideal_seconds(teacher.model_config, student.model_config, batch_size, args.seq_len, predictions,
                              v["teacher"], v["policy"], ceilings)
        rows.append({"config": name, "implementation": label, "student_policy": v["policy"],
                     "teacher_precision": v["teacher"], "xla": v["xla"], "s_per_step": s,
                     "tokens_per_s": batch_size * args.seq_len / s, "gflop_per_step": flops / 1e9,
                     "mfu": ideal / s, "mfu_fp32_ceiling": flops / s / 1e9 / ceilings["float32"],
                     "x_hand_written": seconds["hand-written GradientTape"] / s,
                     "x_keras_distillation": seconds["keras.distillation"] / s})
    for row in rows:
        row["default_reasons"] = reasons if row["implementation"].startswith("keras-distil default") else None
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=("small", "base", "both"), default="both")
    parser.add_argument("--steps", type=int, default=12, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds (tracing, XLA compile)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    parser.add_argument("--xla", action="store_true", help="add the jit_compile=True candidates")
    parser.add_argument("--out", default=None, help="folder for train_step.json (default benchmarks/results)")
    args = parser.parse_args(argv)

    n = 512 if args.quick else 2048
    ceilings = {"float32": matmul_ceiling_gflops(n), "bfloat16": matmul_ceiling_gflops(n, dtype=tf.bfloat16)}
    ceilings["float16"] = ceilings["float32"]  # not used on CPU
    configs = {"quick": (QUICK, 4)} if args.quick else \
        {k: v for k, v in CONFIGS.items() if args.config in (k, "both")}
    rows = []
    for name, (model_dict, batch_size) in configs.items():
        rows += bench_config(name, model_dict, batch_size, args, ceilings)

    print(f"\nmatmul ceilings (tf.linalg.matmul {n}^2): float32 {ceilings['float32']:.0f} GFLOP/s, "
          f"bfloat16 {ceilings['bfloat16']:.0f} GFLOP/s")
    print_table(rows, [("config", "config", "s"), ("implementation", "implementation", "s"),
                       ("s_per_step", "s/step", ".3f"), ("tokens_per_s", "tokens/s", ".0f"),
                       ("gflop_per_step", "GFLOP/step", ".1f"), ("mfu", "MFU (own precision)", ".1%"),
                       ("x_hand_written", "x hand-written", ".2f"),
                       ("x_keras_distillation", "x keras.distillation", ".2f")])
    reasons = next((r["default_reasons"] for r in rows if r["default_reasons"]), None)
    if reasons:
        print("\ndefault on this device: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    path = write_json("train_step", {
        "config": {"configs": {k: {"teacher": v[0], "batch": v[1]} for k, v in configs.items()},
                   "seq_len": args.seq_len, "predictions_per_seq": max(1, round(0.15 * args.seq_len)),
                   "objective": OBJECTIVE, "steps": args.steps, "warmup": args.warmup, "quick": args.quick},
        "machine": machine_info(), "matmul_ceiling_gflops": ceilings, "results": rows,
    }, args.out)
    print(f"\nwrote {path}")
    return rows


if __name__ == "__main__":
    main()
