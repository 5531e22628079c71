"""``keras-distil finetune --model PATH (--train F --test F | --tfds NAME) [--teacher PATH] --out DIR``: text
classification on a checkpoint's encoder, and task-specific distillation (:mod:`keras_distil.finetune`).

The output folder: ``classifier.keras``, ``labels.json`` (the label names, index = label id),
``finetune_report.json`` and, when a teacher is fine-tuned here first, ``teacher_classifier.keras``.
"""

from __future__ import annotations

import argparse
import os
import sys

import keras

from keras_distil.cli import command_main
from keras_distil.config import ConfigError
from keras_distil.files import atomic_write_json, check_output, save_model_atomically
from keras_distil.finetune.classifier import POOLINGS, TextClassifier
from keras_distil.finetune.data import (
    TaskData,
    encode_dataset,
    load_text_classification,
    load_tfds_classification,
)
from keras_distil.finetune.train import accuracy, distill_classifier, finetune_classifier

LABELS_FILE, REPORT_FILE = "labels.json", "finetune_report.json"


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
    parser.set_defaults(func=run_finetune)
    return parser


def _load_task(args) -> TaskData:
    if args.tfds:
        return load_tfds_classification(args.tfds, args.tfds_data_dir, args.train_split, args.test_split)
    if not (args.train and args.test):
        raise ConfigError("finetune: give --train FILE and --test FILE, or --tfds NAME")
    return load_text_classification(args.train, args.test, args.validation, args.text_column, args.label_column)


def _tokenizer(args, loaded):
    from keras_distil.data.tokenize import WordPieceTokenizer

    if args.vocab:
        return WordPieceTokenizer.from_vocab_file(args.vocab)
    settings = loaded.tokenizer
    if settings is None:
        raise ConfigError(f"{loaded.source}: carries no vocabulary; pass --vocab")
    return WordPieceTokenizer.from_settings(settings)


def _teacher_classifier(args, train_ds, num_classes):
    """A fine-tuned teacher: loaded when --teacher is a classifier .keras, else fine-tuned here."""
    from keras_distil.models.checkpoint_formats import load_teacher

    if args.teacher.endswith(".keras"):
        obj = keras.saving.load_model(args.teacher, compile=False, safe_mode=True)
        if isinstance(obj, TextClassifier):
            if obj.num_classes != num_classes:
                raise ConfigError(f"{args.teacher}: a classifier of {obj.num_classes} classes; the task has "
                                  f"{num_classes}")
            return obj
    encoder = load_teacher(args.teacher, require_mlm_head=False).model
    teacher = TextClassifier(encoder, num_classes, args.pooling, args.dropout)
    finetune_classifier(teacher, train_ds, args.epochs, args.learning_rate)
    save_model_atomically(teacher, os.path.join(args.out, "teacher_classifier.keras"))
    return teacher


def run_finetune(args: argparse.Namespace) -> int:
    from keras_distil.models.checkpoint_formats import load_teacher

    check_output(args.out, "--out")  # before the task and the model load
    keras.utils.set_random_seed(args.seed)
    task = _load_task(args)
    loaded = load_teacher(args.model, require_mlm_head=False)
    tokenizer = _tokenizer(args, loaded)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_json(os.path.join(args.out, LABELS_FILE), {"label_names": task.label_names})

    def dataset(split, shuffle=False):
        return encode_dataset(split, tokenizer, args.max_len, args.batch_size, args.seed if shuffle else None)

    train_ds, test_ds = dataset(task.train, shuffle=True), dataset(task.test)
    num_classes = len(task.label_names)
    report = {"labels": task.label_names, "train_examples": len(task.train.texts),
              "test_examples": len(task.test.texts), "test_source": task.test.source}
    classifier = TextClassifier(loaded.model, num_classes, args.pooling, args.dropout)
    if args.teacher:
        teacher = _teacher_classifier(args, train_ds, num_classes)
        report["teacher_test_accuracy"] = accuracy(teacher, test_ds)
        distill_classifier(teacher, classifier, train_ds, args.epochs, args.learning_rate, args.temperature,
                           args.alpha_soft, args.alpha_hard)
        report["distillation"] = {"temperature": args.temperature, "alpha_soft": args.alpha_soft,
                                  "alpha_hard": args.alpha_hard}
    else:
        validation = dataset(task.validation) if task.validation else None
        finetune_classifier(classifier, train_ds, args.epochs, args.learning_rate, validation)
    report["test_accuracy"] = accuracy(classifier, test_ds)
    if "teacher_test_accuracy" in report and report["teacher_test_accuracy"]:
        report["retention"] = report["test_accuracy"] / report["teacher_test_accuracy"]
    save_model_atomically(classifier, os.path.join(args.out, "classifier.keras"))
    atomic_write_json(os.path.join(args.out, REPORT_FILE), report)
    line = f"test accuracy {report['test_accuracy']:.4f} on {report['test_examples']} examples"
    if "teacher_test_accuracy" in report:
        line += f" (teacher {report['teacher_test_accuracy']:.4f})"
    print(f"{line}; classifier: {os.path.join(args.out, 'classifier.keras')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.cli.finetune finetune ...``: the command alone; errors propagate."""
    return command_main(add_finetune_parser, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
