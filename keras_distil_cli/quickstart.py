"""``keras-distil quickstart``: the parser (the work: :func:`keras_distil.cli.quickstart.run_quickstart`)."""

from __future__ import annotations

import argparse
import types

from keras_distil_cli import Command

# The defaults of keras_distil.quickstart.run.QuickstartSettings the flags show (a copy: reading them would
# import TensorFlow).
QUICKSTART_DEFAULTS = types.SimpleNamespace(out="runs/quickstart", teacher_steps=2000, student_steps=1000,
                                            corpus_max_documents=40_000)

DESCRIPTION = """\
Offline, end to end, on this machine: gather English prose (Python docstrings, man pages,
/usr/share/doc), learn a WordPiece vocabulary, pretrain a small BERT teacher with MLM, distil a
half-depth student with the triple loss, train the same student shape from scratch for the same
steps (the baseline), evaluate all three on held-out text, export the student (SavedModel, TFLite)
and write report.md + loss_curves.png. Every stage is cached under --out: a rerun skips what is
finished, a changed knob reruns that stage and the ones after it.
"""


def add_quickstart_parser(subparsers) -> argparse.ArgumentParser:
    defaults = QUICKSTART_DEFAULTS
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
    parser.set_defaults(func=Command("keras_distil.cli.quickstart", "run_quickstart"))
    return parser
