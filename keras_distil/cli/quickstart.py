"""``keras-distil quickstart``: the argparse front-end of :mod:`keras_distil.quickstart.run` (the parser:
:mod:`keras_distil_cli.quickstart`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from keras_distil.cli import report_error, setup_logging
from keras_distil.errors import KerasDistilError
from keras_distil_cli.quickstart import DESCRIPTION as DESCRIPTION
from keras_distil_cli.quickstart import add_quickstart_parser as add_quickstart_parser


def settings_from_args(args):
    from keras_distil.config import ConfigError, override_fields
    from keras_distil.quickstart.run import QuickstartSettings, steps_for_budget

    changes = {"out": args.out, "vocab": args.vocab, "export": not args.no_export}
    if args.budget_minutes is not None:
        changes.update(steps_for_budget(args.budget_minutes))
    for key in ("teacher_steps", "student_steps", "corpus_max_documents"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{key.replace('_', '-')}: got {value}; accepted: an integer >= 1")
            changes[key] = value
    return override_fields(dataclasses.replace(QuickstartSettings(), **changes), args.overrides)


def run_quickstart(args) -> int:
    from keras_distil.quickstart.run import run_quickstart_pipeline

    settings = settings_from_args(args)
    results = run_quickstart_pipeline(settings, fresh=args.fresh)
    report = results["report"].outputs
    print()
    print(report["table"])
    print()
    print(report["headline"])
    print(f"report:   {report['paths']['report']}")
    print(f"curves:   {report['paths']['loss_curves']}")
    print(f"student:  {results['distill'].outputs['paths']['keras']}")
    if "export" in results:
        for fmt, path in results["export"].outputs["paths"].items():
            print(f"{fmt + ':':9} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.cli.quickstart [flags]``: the same as ``keras-distil quickstart``."""
    parser = argparse.ArgumentParser(prog="keras-distil")
    add_quickstart_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["quickstart", *(sys.argv[1:] if argv is None else argv)])
    setup_logging("INFO")
    try:
        return args.func(args)
    except KerasDistilError as e:
        return report_error("quickstart", e)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
