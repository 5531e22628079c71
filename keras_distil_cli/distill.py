"""``keras-distil distill`` and ``keras-distil pretrain``: the parsers (the work:
:func:`keras_distil.cli.distill.run_distill` and :func:`~keras_distil.cli.distill.run_pretrain`).

Precedence: the recipe file, then the named flags (``--teacher``, ``--train-data``, ...), then each
``--set section.key=value`` in order.
"""

from __future__ import annotations

import argparse

from keras_distil_cli import Command, shipped_recipe_names

# keras_distil.training.strategy.STRATEGIES (a copy: reading it would import TensorFlow)
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")

EPILOG = """\
Recipe keys: teacher, train_data, out, tpu, and the sections model, distill, data, train (see
keras_distil/config.py for every knob, its default and its unit). Running the same command again
resumes from the run folder's latest checkpoint. Multi-worker: start the same command on every worker
with TF_CONFIG set (docs/runtime.md, "Strategies"); TPU: --strategy tpu --tpu local|NAME|grpc://HOST:8470.
"""


def _add_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--recipe", metavar="FILE.json", help="recipe JSON file, or the name of a shipped recipe ("
                                                              f"{', '.join(shipped_recipe_names())}); default: built-in "
                                                              "defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one knob, e.g. --set train.steps=1000 --set data.batch_size=64 "
                             "(VALUE is JSON, else a string); repeatable, applied last")
    parser.add_argument("--train-data", action="append", metavar="PATH",
                        help="corpus: text file or glob (one document per line), a folder written by "
                             "`keras-distil prepare`, or tfds:NAME[:SPLIT[:TEXT_KEY]]; repeatable (recipe: train_data)")
    parser.add_argument("--out", metavar="DIR", help="run folder: config.json, checkpoints/, logs/, student/ (recipe: out)")
    parser.add_argument("--vocab", metavar="VOCAB.txt", help="WordPiece vocabulary (recipe: data.vocab_file)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="distribution: auto picks from TF_CONFIG, a TPU name and the GPUs present (recipe: train.strategy)")
    parser.add_argument("--tpu", metavar="ADDRESS", help="TPU to use: local, a TPU name, or grpc://HOST:PORT (recipe: tpu)")
    parser.add_argument("--steps", type=int, metavar="N", help="optimizer steps in all (recipe: train.steps)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (logs and TensorBoard only)")
    parser.add_argument("--resume-with-changes", action="store_true",
                        help="resume the run in --out from its last checkpoint with changed optimisation knobs "
                             "(train.learning_rate, max_grad_norm, steps, ...: e.g. after a NaN stop); config.json "
                             "records the change in its history")
    return parser


def add_distill_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "distill", help="distil a teacher into a smaller student (DistilBERT, TinyBERT, MiniLM)",
        description="Distil a BERT teacher into a smaller student: by default of its width and half its depth, "
                    "initialised from the teacher's layers, with soft-target, masked-LM and cosine losses "
                    "(DistilBERT). The student section sets a narrower shape (--set student.hidden_size=384; "
                    "initialised from a reduction of the teacher's weights), and the layer-wise terms "
                    "(distill.alpha_layer_mse, alpha_attention, alpha_value_relation, alpha_embedding_mse) "
                    "distil intermediate layers: --recipe tinybert-4l-312 or minilm-6l-384.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", metavar="PATH",
                        help="teacher: Hugging Face folder, KerasHub preset or .keras file (recipe: teacher)")
    _add_common(parser)
    parser.set_defaults(func=Command("keras_distil.cli.distill", "run_distill"))
    return parser


def add_pretrain_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain", help="train a BERT from scratch with the masked-LM loss (a teacher, or a baseline student)",
        description="Masked-LM training from scratch of a BERT shaped by the recipe's model section, through "
                    "the same runtime as distill. A baseline student: --set model.num_layers=6.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(parser)
    parser.set_defaults(func=Command("keras_distil.cli.distill", "run_pretrain"))
    return parser
