"""``keras-distil export SRC --format saved_model|tflite|keras_hub|hf|sentence_transformers ...``: the thin CLI
over :func:`keras_distil.export.export` (the parser: :mod:`keras_distil_cli.export`)."""

from __future__ import annotations

import argparse
import sys

from keras_distil.cli import command_main, report_error
from keras_distil.export.api import export
from keras_distil.export.errors import ExportError
from keras_distil_cli.export import add_export_parser as add_export_parser


def run_export(args: argparse.Namespace) -> int:
    try:
        result = export(args.src, args.format, out=args.out, name=args.name, version=args.version,
                        quantize=args.quantize, with_logits=args.logits, text=args.text, vocab=args.vocab,
                        lowercase=not args.cased, max_len=args.max_len, calibration=args.calibration,
                        calibration_size=args.calibration_size, overwrite=args.overwrite,
                        min_top1=args.min_top1, min_cosine=args.min_cosine)
    except ExportError as e:
        return report_error("export", e)  # as keras_distil.cli.main does for every command's errors
    print(result.summary())
    return 0


def main(argv=None) -> int:
    """``python -m keras_distil.cli.export export ...`` (the same as ``keras-distil export``)."""
    return command_main(add_export_parser, argv, logs=False)


if __name__ == "__main__":
    sys.exit(main())
