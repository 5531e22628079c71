"""Shared pieces of the data package: its error type, corpus counters and atomic file writes."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

logger = logging.getLogger("keras_distil.data")


class DataError(ValueError):
    """Bad input data (a file, a vocabulary, a corpus, a shard set): the message names what is wrong."""


class DataStats:
    """Counters updated inside the tf.data graph while a corpus is read and tokenized.

    They are ``tf.Variable`` objects so the in-graph pipeline can count without leaving the graph.
    Create them outside any ``tf.distribute`` strategy scope (there they would become mirrored
    variables); read them with :meth:`as_dict` and report them with :meth:`log`.
    """

    FIELDS = ("documents", "invalid_utf8", "sequences", "dropped_short", "tokens")

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, tf.Variable(0, dtype=tf.int64, trainable=False, name=f"data_{name}"))

    def add(self, name: str, value) -> None:
        getattr(self, name).assign_add(tf.cast(value, tf.int64))

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name).numpy()) for name in self.FIELDS}

    def log(self, what: str = "corpus") -> dict[str, int]:
        counts = self.as_dict()
        logger.info(
            "%s: %d documents -> %d sequences (%d tokens); %d sequences dropped as shorter than min_len; "
            "%d documents had bytes that are not UTF-8 (replaced by U+FFFD)",
            what, counts["documents"], counts["sequences"], counts["tokens"], counts["dropped_short"],
            counts["invalid_utf8"],
        )
        return counts


def is_blank(text: tf.Tensor) -> tf.Tensor:
    """True for strings that are empty or only ASCII whitespace (no document)."""
    return tf.equal(tf.strings.length(tf.strings.strip(text)), 0)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place."""
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def temporary_name(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def read_json(path: str, what: str) -> Any:
    """Read a JSON file; errors name the file and say what it was expected to be."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({what}): {e}") from None
