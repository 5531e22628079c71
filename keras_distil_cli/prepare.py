"""``keras-distil prepare SOURCES --out DIR``: the parser (the work: :func:`keras_distil.cli.prepare.run_prepare`)."""

from __future__ import annotations

import argparse

from keras_distil_cli import Command


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


def add_prepare_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``prepare`` subcommand to an ``argparse`` subparsers object (``func`` is set)."""
    parser = subparsers.add_parser("prepare", help="tokenize a corpus into TFRecord shards")
    add_prepare_arguments(parser)
    parser.set_defaults(func=Command("keras_distil.cli.prepare", "run_prepare"))
    return parser
