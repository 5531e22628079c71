"""``keras-distil evaluate --model [NAME=]PATH [--teacher [NAME=]PATH] --data PATH ...``: the thin CLI over
:func:`keras_distil.evaluation.evaluate_checkpoints` (the figures: :mod:`keras_distil.evaluation`; the parser:
:mod:`keras_distil_cli.evaluate`)."""

from __future__ import annotations

import argparse
import os
import sys

from keras_distil.cli import command_main
from keras_distil.config import ConfigError
from keras_distil.evaluation.loop import evaluate_checkpoints
from keras_distil.evaluation.report import format_report
from keras_distil.files import atomic_write_json, check_output
from keras_distil_cli.evaluate import add_evaluate_parser as add_evaluate_parser


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
