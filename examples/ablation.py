"""Ablation of the quickstart's distillation, beside the DistilBERT paper's Table 4.

    python examples/ablation.py [quickstart flags: --out runs/quickstart --student-steps N --set KNOB=V ...]

Reuses the quickstart's cached corpus, vocabulary and teacher under ``--out`` (building them first when
missing), then distils four more students with the quickstart's settings, changing one thing each:
without L_ce (alpha_ce 0), without L_cos (alpha_cos 0), without L_mlm (alpha_mlm 0), and from random
weights instead of the teacher's layers (all three losses; distill.student_init "random"). Each variant
is a cached stage (``<out>/ablation_<name>/``); all are evaluated on the same held-out masked tokens as
the full student.

Writes ``<out>/ablation/ablation.md`` and ``ablation.json``: held-out masked-token accuracy and
perplexity per variant, and the change from the full triple loss in accuracy points, beside the paper's
change in GLUE macro-score points (Sanh et al. 2019, Table 4). The measures differ (masked-LM accuracy
on held-out prose here, downstream GLUE there): compare the ordering and the signs, not the sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

# name -> (description, changes to the distill section, paper's GLUE delta)
VARIANTS = {
    "no_ce": ("without L_ce", {"alpha_ce": 0.0}, -2.96),
    "random_init": ("random init (triple loss)", {"student_init": "random"}, -3.69),
    "no_cos": ("without L_cos", {"alpha_cos": 0.0}, -1.46),
    "no_mlm": ("without L_mlm", {"alpha_mlm": 0.0}, -0.31),
}


def parse_settings(argv: list[str] | None):
    from keras_distil.cli.quickstart import add_quickstart_parser, settings_from_args

    parser = argparse.ArgumentParser(prog="examples/ablation.py", description=__doc__.split("\n")[0])
    add_quickstart_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["quickstart", *(sys.argv[1:] if argv is None else argv)])
    return settings_from_args(args), args.fresh


def ablation_rows(evaluation: dict) -> list[dict]:
    models = evaluation["models"]
    key = "distill" if "distill" in models else "ablation_full"
    full = models[key]
    rows = [{"variant": "full triple loss", "key": key,
             "masked_lm_accuracy": full["masked_lm_accuracy"], "perplexity": full["perplexity"],
             "delta_accuracy_points": 0.0, "paper_delta_glue": 0.0}]
    for key, (label, _, paper) in VARIANTS.items():
        m = models[f"ablation_{key}"]
        rows.append({"variant": label, "key": key, "masked_lm_accuracy": m["masked_lm_accuracy"],
                     "perplexity": m["perplexity"],
                     "delta_accuracy_points": 100 * (m["masked_lm_accuracy"] - full["masked_lm_accuracy"]),
                     "paper_delta_glue": paper})
    return rows


def markdown(rows: list[dict], settings, evaluation: dict) -> str:
    lines = ["# Ablation of the quickstart distillation (beside DistilBERT's Table 4)", "",
             f"Teacher {settings.teacher_layers}x{settings.hidden_size}, students "
             f"{settings.student_num_layers} layers, {settings.student_steps} steps of batch {settings.batch_size} "
             f"each; held-out masked-token accuracy on {evaluation['data']['masked_tokens']:,} masked tokens "
             f"(teacher: {evaluation['models']['teacher']['masked_lm_accuracy']:.4f}).", "",
             "| variant | MLM acc | perplexity | Δ acc (points) | paper Δ GLUE (points) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['masked_lm_accuracy']:.4f} | {r['perplexity']:.1f} | "
                     f"{r['delta_accuracy_points']:+.2f} | {r['paper_delta_glue']:+.2f} |")
    lines += ["", "The paper's deltas are GLUE macro-score points of a 6-layer student of BERT-base; ours are "
              "held-out masked-token accuracy points of the quickstart's toy student: compare the ordering and "
              "the signs, not the sizes.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from keras_distil.files import atomic_write_bytes, atomic_write_json
    from keras_distil.quickstart.run import (
        corpus_stage,
        evaluate_stage,
        student_stage,
        teacher_stage,
        vocab_stage,
    )
    from keras_distil.quickstart.stages import Pipeline

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    settings, fresh = parse_settings(argv)
    settings = dataclasses.replace(settings, latency_runs=0)  # speed is the quickstart's table, not this one
    pipeline = Pipeline(settings.out, fresh=fresh)
    for stage in (corpus_stage(settings), vocab_stage(settings), teacher_stage(settings)):
        pipeline.run(stage)
    for key, (_, changes, _) in VARIANTS.items():
        pipeline.run(student_stage(settings, f"ablation_{key}", **changes))
    # The full triple loss: the quickstart's own student when it was trained with these settings (built
    # last, so a quickstart still training it is not raced); otherwise a separate reference run, so that a
    # shorter ablation never replaces the quickstart's student.
    reference = student_stage(settings)
    if pipeline.finished("distill", pipeline.expected(reference)) is None:
        reference = student_stage(settings, "ablation_full")
    pipeline.run(reference)
    names = ("teacher", reference.name, *(f"ablation_{k}" for k in VARIANTS))
    result = pipeline.run(evaluate_stage(settings, names, name="ablation_evaluate"))
    evaluation = result.outputs["report"]
    rows = ablation_rows(evaluation)
    folder = os.path.join(pipeline.root, "ablation")
    os.makedirs(folder, exist_ok=True)
    text = markdown(rows, settings, evaluation)
    atomic_write_bytes(os.path.join(folder, "ablation.md"), text.encode("utf-8"))
    atomic_write_json(os.path.join(folder, "ablation.json"), {"rows": rows, "evaluation": evaluation})
    print()
    print(text)
    print(f"written: {os.path.join(folder, 'ablation.md')} and ablation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
