"""``keras-distil convert SRC DST --to hf|keras_hub|sentence_transformers``: the thin CLI over
:func:`keras_distil.models.checkpoint_formats.convert_checkpoint` (the parser: :mod:`keras_distil_cli.convert`)."""

from __future__ import annotations

import argparse

from keras_distil.files import check_output
from keras_distil.models.checkpoint_formats import convert_checkpoint
from keras_distil_cli.convert import add_convert_parser as add_convert_parser


def run_convert(args: argparse.Namespace) -> int:
    check_output(args.dst, "DST")  # before the source is read: a file in the way is named, in one line
    diffs = convert_checkpoint(args.src, args.dst, args.to, model_type=args.model_type,
                               keras_hub_classes=args.keras_hub_classes, overwrite=args.overwrite)
    worst = max(diffs.values()) if diffs else 0.0
    print(f"wrote {args.dst} ({args.to}); reloaded and compared: max abs difference {worst:.3g}")
    return 0
