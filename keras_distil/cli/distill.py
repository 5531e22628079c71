"""``keras-distil distill`` and ``keras-distil pretrain``: argparse front-ends of
:func:`keras_distil.training.run.distill` and :func:`keras_distil.training.run.pretrain` (the parsers:
:mod:`keras_distil_cli.distill`).

Precedence: the recipe file, then the named flags (``--teacher``, ``--train-data``, ...), then each
``--set section.key=value`` in order.
"""

from __future__ import annotations

import json

from keras_distil_cli.distill import EPILOG as EPILOG
from keras_distil_cli.distill import add_distill_parser as add_distill_parser
from keras_distil_cli.distill import add_pretrain_parser as add_pretrain_parser


def _flag_overrides(args) -> list[str]:
    pairs = {"teacher": getattr(args, "teacher", None), "train_data": args.train_data, "out": args.out,
             "data.vocab_file": args.vocab, "train.strategy": args.strategy, "tpu": args.tpu,
             "train.steps": args.steps}
    return [f"{key}={json.dumps(value)}" for key, value in pairs.items() if value is not None]


def recipe_from_args(args):
    from keras_distil.config import load_recipe

    return load_recipe(args.recipe, _flag_overrides(args) + list(args.overrides))


def _report(result: dict) -> None:
    from keras_distil.distiller import TERMS

    terms = " ".join(f"{k}={result[k]:.4f}" for k in ("loss", *TERMS) if k in result)
    print(f"{result['run']}: {result['step']} steps on {result['replicas']} replica(s) ({result['strategy']}); {terms}")
    if "student" in result:
        print(f"student: {result['student']['keras']} and {result['student']['keras_hub']}")


def run_distill(args) -> int:
    from keras_distil.training.run import distill

    _report(distill(recipe_from_args(args), console=not args.quiet, resume_with_changes=args.resume_with_changes))
    return 0


def run_pretrain(args) -> int:
    from keras_distil.training.run import pretrain

    _report(pretrain(recipe_from_args(args), console=not args.quiet, resume_with_changes=args.resume_with_changes))
    return 0
