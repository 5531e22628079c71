"""Shared pieces of the data package: its error type, corpus counters and JSON reading.

The atomic file writes live in :mod:`keras_distil.files`; they stay importable from here."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import tensorflow as tf

from keras_distil import files
from keras_distil.errors import KerasDistilError

logger = logging.getLogger("keras_distil.data")


class DataError(KerasDistilError, ValueError):
    """Bad input data (a file, a vocabulary, a corpus, a shard set): the message names what is wrong."""


class DataStats:
    """Corpus counters (documents, invalid UTF-8, sequences kept / dropped as short, tokens).

    The in-graph pipeline adds to them through ``tf.py_function``, so they are plain Python integers:
    no ``tf.Variable`` that a ``tf.distribute`` scope would turn into a mirrored one. Read them with
    :meth:`as_dict` and report them with :meth:`log`. (The pipeline therefore needs a Python host, as
    any local tf.data pipeline has; it is never part of an exported model.)
    """

    FIELDS = ("documents", "invalid_utf8", "sequences", "dropped_short", "tokens")

    def __init__(self):
        self._counts = dict.fromkeys(self.FIELDS, 0)
        self._lock = threading.Lock()

    def add(self, name: str, value) -> tf.Tensor:
        """Add ``value`` (a tensor) to the counter ``name`` from inside a graph; returns a dependency."""
        if name not in self._counts:
            raise KeyError(f"DataStats has no counter {name!r}; counters: {', '.join(self.FIELDS)}")

        def add_now(amount):
            with self._lock:
                self._counts[name] += int(amount)
            return np.int64(0)

        return tf.py_function(add_now, [tf.cast(value, tf.int64)], tf.int64, name=f"count_{name}")

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

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


def read_json(path: str, what: str) -> Any:
    """Read a JSON file; errors (:class:`DataError`) name the file and say what it was expected to be."""
    return files.read_json(path, what, error=DataError)
