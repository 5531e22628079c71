"""``keras-distil finetune --model PATH (--train F --test F | --tfds NAME) [--teacher PATH] --out DIR``: the
parser (the work: :func:`keras_distil.cli.finetune.run_finetune`)."""

from __future__ import annotations

import argparse

from keras_distil_cli import Command

# keras_distil.finetune.classifier.POOLINGS (a copy: reading it would import TensorFlow)
POOLINGS = ("mean", "cls")


def add_finetune_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``finetune --model PATH (--train F --test F | --tfds NAME) [--teacher PATH] --out DIR``."""
    parser = subparsers.add_parser(
        "finetune", help="text classification on a TSV/CSV or TFDS dataset; task-specific distillation",
        description="Fine-tune a classifier on the encoder of --model and report test accuracy. With --teacher, "
                    "the teacher (a pretrained checkpoint, fine-tuned here first, or a fine-tuned classifier "
                    ".keras) is distilled into the --model classifier on the task.")
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="encoder checkpoint (HF folder, KerasHub preset or .keras); the student with --teacher")
    parser.add_argument("--teacher", metavar="PATH", help="teacher checkpoint, or a fine-tuned classifier .keras")
    data = parser.add_argument_group("data (files or TFDS)")
    data.add_argument("--train", metavar="FILE", help="training TSV/CSV with a header row")
    data.add_argument("--test", metavar="FILE", help="test TSV/CSV")
    data.add_argument("--validation", metavar="FILE", help="optional validation TSV/CSV")
    data.add_argument("--text-column", default="text")
    data.add_argument("--label-column", default="label")
    data.add_argument("--tfds", metavar="NAME", help="a TFDS dataset prepared locally (never downloaded)")
    data.add_argument("--tfds-data-dir", metavar="DIR")
    data.add_argument("--train-split", default="train")
    data.add_argument("--test-split", default="test")
    parser.add_argument("--vocab", metavar="VOCAB.txt", help="WordPiece vocabulary (default: the checkpoint's)")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=2.0, help="soft-target temperature (with --teacher)")
    parser.add_argument("--alpha-soft", type=float, default=0.5, help="weight of T^2 KL (with --teacher)")
    parser.add_argument("--alpha-hard", type=float, default=0.5, help="weight of the label CE (with --teacher)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="classifier.keras, labels.json and finetune_report.json go here")
    parser.set_defaults(func=Command("keras_distil.cli.finetune", "run_finetune"))
    return parser
