"""``keras-distil evaluate --model [NAME=]PATH [--teacher [NAME=]PATH] --data PATH ...``: the thin CLI over
:func:`keras_distil.evaluation.evaluate_checkpoints` (the figures: :mod:`keras_distil.evaluation`)."""

from __future__ import annotations

import argparse
import os
import sys

from keras_distil.cli import command_main
from keras_distil.config import ConfigError
from keras_distil.evaluation.loop import EVAL_SEED, MAX_TEXTS, evaluate_checkpoints
from keras_distil.evaluation.report import format_report
from keras_distil.files import atomic_write_json, check_output


def _named(spec: str, default: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare PATH is named ``default``."""
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec):
        return name, path
    return default, spec


def parse_copied_layers(text: str | None):
    """``--copied-layers``: None or "auto" -> None (choose), "none" -> "none" (no row), "0,2,4" -> [0, 2, 4]."""
    if text is None or text.strip().lower() == "auto":
        return None
    if text.strip().lower() in ("none", "off"):
        return "none"
    try:
        return [int(part) for part in text.split(",") if part.strip()] or None
    except ValueError:
        raise ConfigError(f"evaluate --copied-layers: {text!r}; give teacher layer indices like 0,2,4, "
                          "'auto' or 'none'") from None


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate --model PATH [--teacher PATH] --data PATH ...`` on argparse ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate", help="masked-token accuracy / perplexity on held-out text, teacher-student agreement, "
                         "sentence-embedding agreement",
        description="Evaluate masked-LM and sentence-embedding models on held-out text. Models are Hugging Face "
                    "folders, KerasHub presets or .keras files; give several --model NAME=PATH to compare. "
                    "Masked-LM figures use deterministic masks; models without an MLM head get '-' there. Against "
                    "the teacher, on the clean text with the teacher's pooling: token and sentence cosines, the "
                    "Spearman correlation of all pairwise similarities and nearest-neighbour agreement. A "
                    "reference row, the untrained student copied from teacher layers, shows what distillation "
                    "added.")
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                        help="model to evaluate; repeatable")
    parser.add_argument("--teacher", metavar="[NAME=]PATH", help="teacher: the others are compared with it")
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="held-out text (one document per line), a prepared folder or tfds:NAME; repeatable")
    parser.add_argument("--vocab", metavar="VOCAB.txt",
                        help="WordPiece vocabulary (default: the teacher's, else the model's)")
    parser.add_argument("--no-lowercase", action="store_true", help="with --vocab: a cased vocabulary")
    parser.add_argument("--max-len", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--min-len", type=int, default=None,
                        help="drop shorter sequences (default: 12 when a model has an MLM head, else 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per batch (default 32)")
    parser.add_argument("--max-batches", type=int, default=None, help="evaluate at most this many batches")
    parser.add_argument("--max-texts", type=_non_negative, default=MAX_TEXTS,
                        help=f"texts of the pairwise similarity figures (Spearman, neighbours; an N x N matrix; "
                             f"default {MAX_TEXTS}; 0: off)")
    parser.add_argument("--copied-layers", metavar="0,2,4|auto|none", default=None,
                        help="the reference row, the untrained student copying these teacher layers; default "
                             "(auto): when a model has the teacher's width and fewer layers, its run's "
                             "distill.student_layers, else every other layer, else evenly spaced; none: no row")
    parser.add_argument("--latency-runs", type=int, default=10, help="timed forwards per model (0: no timing)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help=f"masking seed (default {EVAL_SEED})")
    parser.add_argument("--out", metavar="REPORT.json", help="also write the report here (atomically)")
    parser.set_defaults(func=run_evaluate)
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    specs = ([_named(args.teacher, "teacher")] if args.teacher else []) + [
        _named(spec, "model" if len(args.model) == 1 else f"model{i + 1}") for i, spec in enumerate(args.model)]
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluate: model names must differ, got {', '.join(names)} (use --model NAME=PATH)")
    if args.out:
        check_output(args.out, "--out", is_file=True)  # before the evaluation, not after it
    report = evaluate_checkpoints(
        dict(specs), args.data, specs[0][0] if args.teacher else None, vocab_file=args.vocab,
        lowercase=not args.no_lowercase, max_len=args.max_len, batch_size=args.batch_size,
        max_batches=args.max_batches, latency_runs=args.latency_runs, seed=args.seed, max_texts=args.max_texts,
        copied_layers=parse_copied_layers(args.copied_layers), min_len=args.min_len)
    print(format_report(report))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"report: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.cli.evaluate evaluate ...``: the command alone; errors propagate."""
    return command_main(add_evaluate_parser, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
