"""Tokenize a corpus once into TFRecord shards for fast, repeatable training (``keras-distil prepare``,
:mod:`keras_distil.cli.prepare`).

Output folder:

* ``shard-00000-of-0000N.tfrecord`` ...: one ``tf.train.Example`` per sequence with the int64 list
  feature ``token_ids`` ([CLS] ... [SEP]); sequences go round-robin over the shards;
* ``token_counts.json``: ``{"counts": [V ints], "vocab_sha256": ...}``, the smoothing counts;
* ``manifest.json``: format, vocab hash and file, max_len, min_len, case settings, the shards with
  their sequence counts, and the corpus counters (documents, sequences, tokens, dropped, invalid UTF-8).

Every file is written under a temporary name and renamed into place; the manifest comes last, so a
folder with a manifest is complete. Training refuses a folder whose vocab hash is not the teacher's.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from keras_distil.data.base import DataError, DataStats
from keras_distil.data.corpus import (
    COUNTS_NAME,
    MANIFEST_NAME,
    SHARD_FEATURE,
    SHARD_FORMAT,
    ShardSource,
    TfdsSource,
    describe,
    text_documents,
    tfds_documents,
)
from keras_distil.data.pipeline import as_sources, documents_to_sequences
from keras_distil.data.tokenize import WordPieceTokenizer
from keras_distil.files import atomic_write_json, temporary_name

logger = logging.getLogger("keras_distil.data")


def shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}.tfrecord"


def _example(ids: np.ndarray) -> bytes:
    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=ids.tolist()))
    return tf.train.Example(features=tf.train.Features(feature={SHARD_FEATURE: feature})).SerializeToString()


class _ShardWriter:
    """Round-robin TFRecord writers on temporary names; ``commit`` renames them into place."""

    def __init__(self, out_dir: str, num_shards: int):
        self.paths = [os.path.join(out_dir, shard_name(i, num_shards)) for i in range(num_shards)]
        self.writers = [tf.io.TFRecordWriter(temporary_name(p)) for p in self.paths]
        self.sequences = [0] * num_shards
        self.next = 0

    def write(self, ids: np.ndarray) -> None:
        self.writers[self.next].write(_example(ids))
        self.sequences[self.next] += 1
        self.next = (self.next + 1) % len(self.writers)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def commit(self) -> list[dict]:
        """Rename the shards into place. An older manifest goes first: a folder without a manifest reads
        as incomplete, so a crash here can never pair new shards with an old manifest."""
        self.close()
        old_manifest = os.path.join(os.path.dirname(self.paths[0]), MANIFEST_NAME)
        if os.path.exists(old_manifest):
            os.remove(old_manifest)
        for path in self.paths:
            os.replace(temporary_name(path), path)
        return [{"file": os.path.basename(p), "sequences": n} for p, n in zip(self.paths, self.sequences, strict=True)]

    def abort(self) -> None:
        self.close()
        for path in self.paths:
            if os.path.exists(temporary_name(path)):
                os.remove(temporary_name(path))


def prepare_corpus(sources, out_dir: str | os.PathLike, data_config, vocab_file: str | os.PathLike | None = None,
                   num_shards: int = 8, tokenizer: WordPieceTokenizer | None = None) -> dict:
    """Tokenize ``sources`` (text files / globs / TFDS) into ``out_dir``; returns the manifest.

    ``vocab_file`` defaults to ``data_config.vocab_file``; a ready ``tokenizer`` may be passed instead.
    Raises :class:`DataError` naming the sources when they yield no sequence of ``min_len`` tokens.
    """
    if num_shards < 1:
        raise DataError(f"num_shards: got {num_shards}; accepted: an integer >= 1")
    if tokenizer is None:
        vocab_file = vocab_file or data_config.vocab_file
        if vocab_file is None:
            raise DataError("prepare: no vocabulary; pass vocab_file or set data.vocab_file")
        tokenizer = WordPieceTokenizer.from_vocab_file(vocab_file, data_config.lowercase, data_config.strip_accents)
    sources = as_sources(sources)
    if any(isinstance(s, ShardSource) for s in sources):
        raise DataError("prepare: the sources must be text files or TFDS datasets, not prepared shard folders")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    stats = DataStats()
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    writer = _ShardWriter(out_dir, num_shards)
    try:
        for source in sources:
            documents = (tfds_documents(source) if isinstance(source, TfdsSource) else
                         text_documents(source, data_config.document_separator, data_config.invalid_utf8))
            for batch in documents_to_sequences(documents, tokenizer, data_config, stats):
                flat = batch.flat_values.numpy()
                counts += np.bincount(flat, minlength=tokenizer.vocab_size)
                for ids in np.split(flat, batch.row_splits.numpy()[1:-1]):
                    writer.write(ids)
    except BaseException:
        writer.abort()
        raise
    totals = stats.log(f"prepare {out_dir}")
    names = "; ".join(describe(s) for s in sources)
    if totals["sequences"] == 0:
        writer.abort()
        if totals["documents"] == 0:
            raise DataError(f"empty corpus: no text in: {names}")
        raise DataError(f"every document is shorter than data.min_len={data_config.min_len} tokens "
                        f"(including [CLS] and [SEP]) in: {names}")
    shards = writer.commit()
    atomic_write_json(os.path.join(out_dir, COUNTS_NAME),
                      {"vocab_sha256": tokenizer.vocab_hash, "counts": counts.tolist()})
    manifest = {
        "format": SHARD_FORMAT,
        "version": 1,
        "vocab_sha256": tokenizer.vocab_hash,
        "vocab_file": tokenizer.vocab_file,
        "vocab_size": tokenizer.vocab_size,
        "lowercase": tokenizer.lowercase,
        "strip_accents": tokenizer.strip_accents,
        "max_len": data_config.max_len,
        "min_len": data_config.min_len,
        "document_separator": data_config.document_separator,
        "sources": names,
        "shards": shards,
        **totals,
    }
    atomic_write_json(os.path.join(out_dir, MANIFEST_NAME), manifest)
    return manifest
