"""``keras-distil convert SRC DST --to hf|keras_hub|sentence_transformers``: the parser (the work:
:func:`keras_distil.cli.convert.run_convert`)."""

from __future__ import annotations

import argparse

from keras_distil_cli import Command

# keras_distil.models.checkpoint_formats.FORMATS (a copy: reading it would import TensorFlow)
FORMATS = ("hf", "keras_hub", "sentence_transformers")


def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``convert SRC DST --to hf|keras_hub|sentence_transformers`` on an argparse ``subparsers``."""
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint between Hugging Face, KerasHub and sentence-transformers formats "
                        "(verified after writing)",
        description="Read SRC (a Hugging Face folder, a KerasHub preset or a .keras file) and write DST.")
    parser.add_argument("src", help="source checkpoint folder or .keras file")
    parser.add_argument("dst", help="destination folder (written atomically)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="destination format")
    parser.add_argument("--model-type", default="same", choices=("same", "bert", "distilbert"),
                        help="family to write (default: the source's)")
    parser.add_argument("--keras-hub-classes", default="exact", choices=("exact", "stock"),
                        help="KerasHub preset classes: exact (HF numerics; needs keras_distil to load) or stock")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.set_defaults(func=Command("keras_distil.cli.convert", "run_convert"))
    return parser
