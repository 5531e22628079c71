"""``keras-distil recipes``: the recipes installed with the package, one line each (``--recipe NAME`` takes
them); the parser is :mod:`keras_distil_cli.recipes`'s."""

from __future__ import annotations

import argparse

from keras_distil_cli.recipes import add_recipes_parser as add_recipes_parser


def run_recipes(args: argparse.Namespace) -> int:
    from keras_distil.config import load_recipe, recipe_path, shipped_recipes

    names = shipped_recipes()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name.ljust(width)}  {load_recipe(name).description or ''}".rstrip())
    if args.paths:
        for name in names:
            print(recipe_path(name))
    return 0
