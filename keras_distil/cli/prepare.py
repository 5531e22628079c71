"""``keras-distil prepare SOURCES --out DIR``: the thin CLI over :func:`keras_distil.data.prepare.prepare_corpus`
(tokenize a corpus once into TFRecord shards)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_distil.cli import report_error, setup_logging
from keras_distil.data.base import DataError
from keras_distil.data.prepare import prepare_corpus


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("sources", nargs="+",
                        help="text files or globs (one document per line), or tfds:NAME[:SPLIT[:TEXT_KEY]]")
    parser.add_argument("--out", required=True, help="output folder for the shards, token_counts.json, manifest.json")
    parser.add_argument("--vocab", help="WordPiece vocab.txt (default: the recipe's data.vocab_file)")
    parser.add_argument("--config", help="a recipe JSON file, or a shipped recipe's name (e.g. "
                                         "distilbert-base-uncased); its 'data' section is used")
    parser.add_argument("--num-shards", type=int, default=8)
    parser.add_argument("--max-len", type=int)
    parser.add_argument("--min-len", type=int)
    parser.add_argument("--document-separator", choices=["line", "blank_line"])
    parser.add_argument("--invalid-utf8", choices=["replace", "error"])
    parser.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--tfds-data-dir", help="TFDS data_dir for tfds: sources (nothing is downloaded)")
    return parser


def _config_from_args(args):
    from keras_distil.config import DataConfig, load_json, recipe_path

    data = dict(load_json(recipe_path(args.config)).get("data", {})) if args.config else {}
    for key in ("max_len", "min_len", "document_separator", "invalid_utf8", "lowercase"):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    return DataConfig.from_dict(data)


def run_prepare(args: argparse.Namespace) -> int:
    from keras_distil.data.corpus import parse_source
    from keras_distil.files import check_output

    check_output(args.out, "--out")
    data_config = _config_from_args(args)
    sources = [parse_source(s, args.tfds_data_dir) for s in args.sources]
    manifest = prepare_corpus(sources, args.out, data_config, args.vocab, num_shards=args.num_shards)
    print(f"{args.out}: {manifest['sequences']} sequences, {manifest['tokens']} tokens in "
          f"{len(manifest['shards'])} shards ({manifest['dropped_short']} short sequences dropped, "
          f"{manifest['invalid_utf8']} documents with invalid UTF-8)")
    return 0


def add_prepare_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``prepare`` subcommand to an ``argparse`` subparsers object (``func`` is set)."""
    parser = subparsers.add_parser("prepare", help="tokenize a corpus into TFRecord shards")
    add_prepare_arguments(parser)
    parser.set_defaults(func=run_prepare)
    return parser


def main_prepare(argv: Sequence[str] | None = None) -> int:
    """``keras-distil prepare ...`` as a function; errors in the input are printed, exit status 2."""
    args = add_prepare_arguments(argparse.ArgumentParser(prog="keras-distil prepare")).parse_args(argv)
    setup_logging("INFO", quiet_absl=False)
    try:
        return run_prepare(args)
    except DataError as e:
        return report_error("prepare", e, file=sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_prepare())
