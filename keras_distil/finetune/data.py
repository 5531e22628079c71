"""The data of a text classification task: local TSV/CSV files or a TFDS dataset read offline, label
names mapped to ids by the training split, and tokenized ``(inputs, label)`` batches."""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_distil.data.base import DataError


@dataclasses.dataclass
class Split:
    """Texts and label ids of one split; ``source`` names where they came from (for messages)."""

    texts: list[str]
    labels: np.ndarray
    source: str


@dataclasses.dataclass
class TaskData:
    """The splits of a classification task and its label names (label id ``i`` is ``label_names[i]``)."""

    label_names: list[str]
    train: Split
    test: Split
    validation: Split | None = None


def _delimiter(path: str, header: str) -> str:
    if path.endswith((".tsv", ".tsv.txt")):
        return "\t"
    if path.endswith(".csv"):
        return ","
    return "\t" if "\t" in header else ","


def read_labelled_file(path: str | os.PathLike, text_column: str = "text",
                       label_column: str = "label") -> tuple[list[str], list[str]]:
    """``(texts, label names)`` of a TSV/CSV file with a header row; errors name the file, the column and
    the line."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: bytes that are not UTF-8") from None
    lines = content.splitlines()
    if not content.strip():
        raise DataError(f"{path}: empty file (expected a header row with columns {text_column!r} and "
                        f"{label_column!r}, then one example per row)")
    reader = csv.DictReader(lines, delimiter=_delimiter(path, lines[0]))
    columns = reader.fieldnames or []
    for column in (text_column, label_column):
        if column not in columns:
            raise DataError(f"{path}: no column {column!r} in the header; columns: {', '.join(columns)}")
    texts, labels = [], []
    for row in reader:
        text, label = row.get(text_column), row.get(label_column)
        if text is None or label is None or label.strip() == "":
            raise DataError(f"{path}: line {reader.line_num}: missing value in column "
                            f"{label_column if text is not None else text_column!r}")
        texts.append(text)
        labels.append(label.strip())
    if not texts:
        raise DataError(f"{path}: no example after the header row")
    return texts, labels


def label_mapping(names: list[str]) -> list[str]:
    """Distinct label names, sorted numerically when they are all integers, else as strings."""
    distinct = set(names)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def to_ids(labels: list[str], label_names: list[str], source: str, column: str) -> np.ndarray:
    """Label ids of ``labels`` by ``label_names``; a label not among them raises :class:`DataError` naming
    ``source``, the row and ``column``."""
    index = {name: i for i, name in enumerate(label_names)}
    for row, label in enumerate(labels):
        if label not in index:
            raise DataError(f"{source}: row {row + 1}: label {label!r} in column {column!r} is not among the "
                            f"training labels ({', '.join(label_names)})")
    return np.asarray([index[label] for label in labels], np.int32)


def load_text_classification(train: str, test: str, validation: str | None = None, text_column: str = "text",
                             label_column: str = "label") -> TaskData:
    """The splits of local TSV/CSV files, labels mapped by the training split's names."""
    train_texts, train_labels = read_labelled_file(train, text_column, label_column)
    names = label_mapping(train_labels)
    if len(names) < 2:
        raise DataError(f"{train}: column {label_column!r} holds a single label ({names[0]!r}); a classifier "
                        "needs at least two")

    def split(path):
        texts, labels = (train_texts, train_labels) if path == train else read_labelled_file(path, text_column,
                                                                                               label_column)
        return Split(texts, to_ids(labels, names, os.fspath(path), label_column), os.fspath(path))

    return TaskData(names, split(train), split(test), split(validation) if validation else None)


def load_tfds_classification(name: str, data_dir: str | None = None, train_split: str = "train",
                             test_split: str = "test", validation_split: str | None = None,
                             text_key: str = "text", label_key: str = "label") -> TaskData:
    """A TFDS text classification dataset read offline (never downloaded)."""
    from keras_distil.data.corpus import TfdsSource, tfds_builder

    builder = tfds_builder(TfdsSource(name, train_split, text_key, data_dir))
    features = builder.info.features
    for key in (text_key, label_key):
        if key not in features:
            raise DataError(f"tfds:{name}: no feature {key!r}; available: {', '.join(features)}")
    label_feature = features[label_key]
    label_names = list(getattr(label_feature, "names", None) or [])
    splits = list(builder.info.splits.keys())

    def split(split_name):
        if split_name.split("[")[0] not in splits:
            raise DataError(f"tfds:{name}: no split {split_name!r}; available: {', '.join(splits)}")
        texts, labels = [], []
        for example in builder.as_dataset(split=split_name, shuffle_files=False).as_numpy_iterator():
            texts.append(example[text_key].decode("utf-8", errors="replace"))
            labels.append(int(example[label_key]))
        return Split(texts, np.asarray(labels, np.int32), f"tfds:{name}:{split_name}")

    data = TaskData(label_names, split(train_split), split(test_split),
                    split(validation_split) if validation_split else None)
    if not data.label_names:
        data.label_names = [str(i) for i in range(int(data.train.labels.max()) + 1)]
    for part in (data.train, data.test, data.validation):
        if part is not None and part.labels.size and part.labels.max() >= len(data.label_names):
            raise DataError(f"{part.source}: label {int(part.labels.max())} in {label_key!r} is beyond the "
                            f"{len(data.label_names)} classes")
    return data


def encode_dataset(split: Split, tokenizer, max_len: int, batch_size: int,
                   shuffle_seed: int | None = None) -> tf.data.Dataset:
    """``(inputs dict, label)`` batches: ``[CLS] text [SEP]`` truncated and padded to ``max_len``."""
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(split.texts, tf.string), split.labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(split.texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(lambda text, label: (tokenizer.encode(text, max_len), label),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)
