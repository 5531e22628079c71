"""``keras-distil prepare SOURCES --out DIR``: the thin CLI over :func:`keras_distil.data.prepare.prepare_corpus`
(tokenize a corpus once into TFRecord shards). Its parser is :mod:`keras_distil_cli.prepare`'s."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_distil.cli import report_error, setup_logging
from keras_distil.data.base import DataError
from keras_distil.data.prepare import prepare_corpus
from keras_distil_cli.prepare import add_prepare_arguments as add_prepare_arguments
from keras_distil_cli.prepare import add_prepare_parser as add_prepare_parser


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
