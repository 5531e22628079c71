"""``keras-distil recipes``: the recipes installed with the package, one line each (``--recipe NAME`` takes them)."""

from __future__ import annotations

import argparse


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


def add_recipes_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "recipes", help="list the shipped recipes (--recipe NAME), one line each",
        description="List the recipes installed with keras-distil. Any of them is given by name: "
                    "keras-distil distill --recipe NAME ...; keras_distil/config.py documents every knob.")
    parser.add_argument("--paths", action="store_true", help="also print each recipe's file")
    parser.set_defaults(func=run_recipes)
    return parser
