"""``keras-distil quickstart``: the argparse front-end of :mod:`keras_distil.quickstart.run`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from keras_distil.cli import report_error, setup_logging
from keras_distil.errors import KerasDistilError

DESCRIPTION = """\
Offline, end to end, on this machine: gather English prose (Python docstrings, man pages,
/usr/share/doc), learn a WordPiece vocabulary, pretrain a small BERT teacher with MLM, distil a
half-depth student with the triple loss, train the same student shape from scratch for the same
steps (the baseline), evaluate all three on held-out text, export the student (SavedModel, TFLite)
and write report.md + loss_curves.png. Every stage is cached under --out: a rerun skips what is
finished, a changed knob reruns that stage and the ones after it.
"""


def add_quickstart_parser(subparsers) -> argparse.ArgumentParser:
    from keras_distil.quickstart.run import QuickstartSettings

    defaults = QuickstartSettings()
    parser = subparsers.add_parser(
        "quickstart", help="offline end-to-end demo: corpus, vocab, teacher, distilled student, baseline, report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=defaults.out, metavar="DIR",
                        help=f"folder of the stages and the report (default {defaults.out})")
    parser.add_argument("--vocab", metavar="VOCAB.txt", help="use this lower-cased WordPiece vocabulary instead of "
                                                             "learning one")
    parser.add_argument("--budget-minutes", type=float, metavar="M",
                        help="scale the training steps to about M minutes end to end on 2 CPU cores "
                             "(default: the 20-minute budget's steps)")
    parser.add_argument("--teacher-steps", type=int, metavar="N",
                        help=f"teacher pretraining steps (default {defaults.teacher_steps})")
    parser.add_argument("--student-steps", type=int, metavar="N",
                        help=f"steps of the distilled student and of the baseline (default {defaults.student_steps})")
    parser.add_argument("--corpus-max-documents", type=int, metavar="N",
                        help=f"documents per source (default {defaults.corpus_max_documents})")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel/TFLite export")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KNOB=VALUE",
                        help="any other knob of QuickstartSettings (keras_distil/quickstart/run.py), e.g. "
                             "--set hidden_size=128 --set teacher_layers=6 (VALUE is JSON); repeatable, applied last")
    parser.add_argument("--fresh", action="store_true", help="ignore every cached stage and rebuild from nothing")
    parser.set_defaults(func=run_quickstart)
    return parser


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
