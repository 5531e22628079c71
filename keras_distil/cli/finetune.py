"""``keras-distil finetune --model PATH (--train F --test F | --tfds NAME) [--teacher PATH] --out DIR``: text
classification on a checkpoint's encoder, and task-specific distillation (:mod:`keras_distil.finetune`).

The output folder: ``classifier.keras``, ``labels.json`` (the label names, index = label id),
``finetune_report.json`` and, when a teacher is fine-tuned here first, ``teacher_classifier.keras``. The
parser is :mod:`keras_distil_cli.finetune`'s.
"""

from __future__ import annotations

import argparse
import os
import sys

import keras

from keras_distil.cli import command_main
from keras_distil.config import ConfigError
from keras_distil.files import atomic_write_json, check_output, save_model_atomically
from keras_distil.finetune.classifier import TextClassifier
from keras_distil.finetune.data import (
    TaskData,
    encode_dataset,
    load_text_classification,
    load_tfds_classification,
)
from keras_distil.finetune.train import accuracy, distill_classifier, finetune_classifier
from keras_distil_cli.finetune import add_finetune_parser as add_finetune_parser

LABELS_FILE, REPORT_FILE = "labels.json", "finetune_report.json"


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
