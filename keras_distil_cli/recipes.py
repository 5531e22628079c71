"""``keras-distil recipes``: the parser (the work: :func:`keras_distil.cli.recipes.run_recipes`)."""

from __future__ import annotations

import argparse

from keras_distil_cli import Command


def add_recipes_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "recipes", help="list the shipped recipes (--recipe NAME), one line each",
        description="List the recipes installed with keras-distil. Any of them is given by name: "
                    "keras-distil distill --recipe NAME ...; keras_distil/config.py documents every knob.")
    parser.add_argument("--paths", action="store_true", help="also print each recipe's file")
    parser.set_defaults(func=Command("keras_distil.cli.recipes", "run_recipes"))
    return parser
