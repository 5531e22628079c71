"""``keras-distil export SRC --format saved_model|tflite|keras_hub|hf|sentence_transformers ...``: the thin CLI
over :func:`keras_distil.export.export`."""

from __future__ import annotations

import argparse
import sys

from keras_distil.cli import command_main, report_error
from keras_distil.export import verify
from keras_distil.export.api import FORMATS, export
from keras_distil.export.errors import ExportError
from keras_distil.export.tflite import QUANTIZATIONS


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "export", help="export a student for serving (SavedModel, TFLite, KerasHub, HF, sentence-transformers), "
                       "verified after writing",
        description="Export the student of SRC (a run folder, a .keras file, a KerasHub preset or a Hugging Face "
                    "folder). The export is written to a temporary folder, reloaded and compared with the Keras "
                    "model on a fixed batch, and renamed into place only if the check passes.")
    p.add_argument("src", help="run folder or student file/folder")
    p.add_argument("--format", default="saved_model", choices=FORMATS,
                   help="default: saved_model (with an 'embed' text -> sentence-embedding signature when the "
                        "model has a sentence pooling); sentence_transformers needs that pooling")
    p.add_argument("--quantize", nargs="+", default=["none"], choices=QUANTIZATIONS, metavar="Q",
                   help=f"TFLite only; one or more of {', '.join(QUANTIZATIONS)} (default: none = float32)")
    p.add_argument("--name", help="model name (default: the run folder's or file's name)")
    p.add_argument("--version", help="version folder, an integer (default: the next free one)")
    p.add_argument("--out", default="saved_models", help="base folder (default: saved_models/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    p.add_argument("--logits", action="store_true", help="also output the MLM logits [B, L, vocab]")
    p.add_argument("--no-text", dest="text", action="store_false",
                   help="no raw-text signature / text-input TFLite model (ids only)")
    p.add_argument("--vocab", help="vocab.txt for the text signature (default: the source's)")
    p.add_argument("--cased", action="store_true", help="with --vocab: the vocabulary is cased (no lower-casing)")
    p.add_argument("--max-len", type=int, help="tokens per text, [CLS] and [SEP] included (default: the run's "
                                               "data.max_len, else the model's max positions)")
    p.add_argument("--calibration", nargs="+", metavar="SOURCE",
                   help="corpus for the int8 representative dataset and the verification batch: text files, "
                        "globs or a prepared shard folder (default: the run's corpus when recorded)")
    p.add_argument("--calibration-size", type=int, default=200, help="sequences used to calibrate int8")
    p.add_argument("--min-top1", type=float, default=verify.MIN_TOP1,
                   help="quantised exports: least masked-token top-1 agreement with the Keras model (default 0.99)")
    p.add_argument("--min-cosine", type=float, default=verify.MIN_COSINE,
                   help="quantised exports: least mean token-embedding cosine (default 0.99)")
    p.set_defaults(func=run_export)
    return p


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
