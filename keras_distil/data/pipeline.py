"""The training input pipeline: sources -> sequences -> shuffle -> length buckets -> batches -> masks.

``build_training_dataset`` is the one entry point the CLI and the runtime call; it is ready for
``strategy.distribute_datasets_from_function``: given a ``tf.distribute.InputContext`` it reads only
this worker's part of the corpus (whole files when there are enough, else every n-th record) and
batches ``per-replica`` sizes. Given a seed, the order and the masks are the same on every run;
masks are fresh for every batch (the batch index is folded into the stateless seed).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from keras_distil.config import resolve_masking
from keras_distil.data.base import DataError, DataStats, is_blank
from keras_distil.data.corpus import (
    COUNTS_NAME,
    ShardSource,
    Source,
    TextFiles,
    TfdsSource,
    check_manifest,
    decode_utf8,
    describe,
    parse_source,
    read_manifest,
    shard_sequences,
    text_documents,
    tfds_documents,
)
from keras_distil.data.masking import MaskingSpec, load_token_counts, mask_tokens, sampling_probabilities
from keras_distil.data.tokenize import WordPieceTokenizer, tokenize_to_sequences

logger = logging.getLogger("keras_distil.data")

TOKENIZE_BATCH = 256  # documents tokenized per graph call (ragged ops are much faster batched)


def as_tokenizer(tokenizer: WordPieceTokenizer | str | os.PathLike | None, data_config) -> WordPieceTokenizer:
    """A tokenizer object, or one built from a vocab.txt path (None: ``data_config.vocab_file``) with the
    config's case settings."""
    if isinstance(tokenizer, WordPieceTokenizer):
        return tokenizer
    if tokenizer is None:
        return WordPieceTokenizer.from_config(data_config)
    return WordPieceTokenizer.from_vocab_file(tokenizer, data_config.lowercase, data_config.strip_accents)


def warn_if_predictions_capped(data_config) -> None:
    """``max_predictions_per_seq`` below 15 % of a full sequence silently lowers the mask rate: say so."""
    needed = math.ceil(data_config.mlm_mask_prop * (data_config.max_len - 2))
    if data_config.max_predictions_per_seq < needed:
        logger.warning(
            "data.max_predictions_per_seq=%d < %d (= ceil(mlm_mask_prop * (max_len - 2))): sequences longer than "
            "%d tokens get fewer than %.0f %% of their tokens masked; raise it to %d for the full rate",
            data_config.max_predictions_per_seq, needed,
            int(data_config.max_predictions_per_seq / data_config.mlm_mask_prop) + 2,
            100 * data_config.mlm_mask_prop, needed)


def as_sources(sources) -> list[Source]:
    if isinstance(sources, (str, os.PathLike, TextFiles, TfdsSource, ShardSource)):
        sources = [sources]
    parsed = [parse_source(os.fspath(s) if isinstance(s, os.PathLike) else s) for s in sources]
    if not parsed:
        raise DataError("no corpus source given")
    return parsed


def documents_to_sequences(documents: tf.data.Dataset, tokenizer: WordPieceTokenizer, data_config,
                           stats: DataStats | None = None) -> tf.data.Dataset:
    """Raw documents -> ragged batches of sequences (int32 [M, (L)]), decoding, splitting and dropping."""

    def tokenize(text):
        text = decode_utf8(text, data_config.invalid_utf8, stats)
        return tokenize_to_sequences(text, tokenizer, data_config.max_len, data_config.min_len, stats)

    return documents.batch(TOKENIZE_BATCH).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _log_stats_sentinel(stats: DataStats, what: str) -> tf.data.Dataset:
    """A dataset of one empty batch whose production logs ``stats``: appended to the raw-text batches, it
    reports the counters (cumulative) each time a pass over the corpus ends, also under ``repeat()``."""

    def log_now():
        stats.log(what)
        return np.int64(0)

    def empty_batch(_):
        done = tf.py_function(log_now, [], tf.int64, name="log_corpus_stats")
        return tf.RaggedTensor.from_row_splits(tf.zeros([0], tf.int32), tf.zeros([1], tf.int64) + 0 * done)

    return tf.data.Dataset.from_tensors(tf.constant(0)).map(empty_batch)


def sequence_dataset(sources, data_config, tokenizer=None, input_context=None, shuffle_seed: int | None = None,
                     stats: DataStats | None = None, log_each_pass: bool = False) -> tf.data.Dataset:
    """Token-id sequences (int32 [L], [CLS] ... [SEP], min_len <= L <= max_len) of every source, in turn
    (raw text and TFDS sources first, then prepared shards).

    ``stats`` counts what the raw sources yield and drop; with ``log_each_pass`` they are also logged
    whenever a pass over the raw sources ends.
    """
    tokenizer = as_tokenizer(tokenizer, data_config)
    raw, shards = [], []
    for source in as_sources(sources):
        if isinstance(source, ShardSource):
            manifest = read_manifest(source.directory)
            check_manifest(source.directory, manifest, tokenizer, data_config.max_len)
            shards.append(shard_sequences(source, input_context, shuffle_seed))
            continue
        if isinstance(source, TfdsSource):
            documents = tfds_documents(source, input_context)
        else:
            documents = text_documents(source, data_config.document_separator, data_config.invalid_utf8,
                                       input_context, shuffle_seed)
        raw.append(documents_to_sequences(documents, tokenizer, data_config, stats))
    parts = []
    if raw:
        batches = _concatenate(raw)
        if stats is not None and log_each_pass:
            batches = batches.concatenate(_log_stats_sentinel(stats, "corpus (cumulative, after a full pass)"))
        parts.append(batches.unbatch())
    return _concatenate(parts + shards)


def _concatenate(datasets: list[tf.data.Dataset]) -> tf.data.Dataset:
    ds = datasets[0]
    for other in datasets[1:]:
        ds = ds.concatenate(other)
    return ds


def ensure_nonempty(sources, data_config, tokenizer) -> None:
    """Raise :class:`DataError` naming the sources when they hold no text, or no sequence of min_len tokens.

    Reads only up to the first usable sequence, so a good corpus costs one small read.
    """
    sources = as_sources(sources)
    # Bad bytes are the business of the real pipeline (whose "error" policy checks every file up front).
    probe_config = data_config.replace(invalid_utf8="replace")
    if next(iter(sequence_dataset(sources, probe_config, tokenizer).take(1)), None) is not None:
        return
    names = "; ".join(describe(s) for s in sources)
    text_sources = [s for s in sources if not isinstance(s, ShardSource)]
    has_text = any(
        next(iter((tfds_documents(s) if isinstance(s, TfdsSource) else
                   text_documents(s, data_config.document_separator, "replace"))
                  .filter(lambda text: ~is_blank(text)).take(1)), None) is not None
        for s in text_sources)
    if has_text:
        raise DataError(f"every document is shorter than data.min_len={data_config.min_len} tokens "
                        f"(including [CLS] and [SEP]) in: {names}")
    raise DataError(f"empty corpus: no text in: {names}")


def bucket_lengths(data_config) -> list[int]:
    """Padded lengths of the buckets: the configured boundaries plus ``max_len`` (one bucket when none)."""
    bounds = list(data_config.bucket_boundaries or [])
    if not bounds or bounds[-1] < data_config.max_len:
        bounds.append(data_config.max_len)
    return bounds


def bucket_and_batch(sequences: tf.data.Dataset, bounds: list[int], batch_size: int, pad_id: int,
                     drop_remainder: bool) -> tf.data.Dataset:
    """Batches of ``(token_ids, padding_mask)`` [B, bound]: a sequence goes to the first bucket whose
    length is >= its own, and is padded to that bucket's length only."""
    bounds_t = tf.constant(bounds, tf.int64)

    def with_mask(ids):
        return ids, tf.ones_like(ids)

    def bucket_of(ids, _):
        return tf.reduce_sum(tf.cast(bounds_t < tf.size(ids, out_type=tf.int64), tf.int64))

    def batch_bucket(key, window):
        length = tf.reshape(tf.gather(bounds_t, key), [1])
        return window.padded_batch(batch_size, padded_shapes=(length, length),
                                   padding_values=(pad_id, 0), drop_remainder=drop_remainder)

    return sequences.map(with_mask).group_by_window(bucket_of, batch_bucket, window_size=batch_size)


def mask_batches(batches: tf.data.Dataset, probabilities: np.ndarray, spec: MaskingSpec, seed: int,
                 stream_id: int = 0) -> tf.data.Dataset:
    """Apply :func:`mask_tokens` to every batch with the stateless seed ``(seed, stream_id * 2**32 + index)``."""
    table = tf.constant(probabilities, tf.float32)
    base = tf.constant(seed, tf.int64)
    stream = tf.constant(stream_id, tf.int64) * (2 ** 32)

    def apply(index, batch):
        ids, padding = batch
        return mask_tokens(ids, padding, table, tf.stack([base, stream + index]), spec)

    return batches.enumerate().map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def clean_batches(batches: tf.data.Dataset) -> tf.data.Dataset:
    """``(token_ids, padding_mask)`` batches as the Distiller's dict, unmasked (``data.masking="none"``)."""

    def as_dict(ids, padding):
        ids, padding = tf.cast(ids, tf.int32), tf.cast(padding, tf.int32)
        return {"token_ids": ids, "padding_mask": padding, "segment_ids": tf.zeros_like(ids)}

    return batches.map(as_dict, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def resolve_token_counts(token_counts, sources: Iterable[Source], vocab_size: int):
    """The counts to smooth with: the given ones (array, mapping or a JSON path), else the sum of the
    prepared folders' ``token_counts.json`` when every source is one, else None (uniform)."""
    if token_counts is not None:
        if isinstance(token_counts, (str, os.PathLike)):
            return load_token_counts(token_counts, vocab_size)
        return token_counts
    sources = list(sources)
    paths = [os.path.join(s.directory, COUNTS_NAME) for s in sources if isinstance(s, ShardSource)]
    if not paths or len(paths) != len(sources) or not all(os.path.exists(p) for p in paths):
        return None
    return sum(load_token_counts(p, vocab_size) for p in paths)


def build_training_dataset(data_config, sources, tokenizer=None, token_counts=None, input_context=None,
                           repeat: bool = True, stats: DataStats | None = None,
                           drop_remainder: bool | None = None, check_nonempty: bool = True,
                           objective=None) -> tf.data.Dataset:
    """Batches for the Distiller: dynamically masked for masked-LM, or clean token ids (``data.masking``).

    Args:
      data_config: a ``DataConfig``.
      sources: one or several sources (``TextFiles``, ``TfdsSource``, ``ShardSource`` or their spellings
        for :func:`parse_source`).
      tokenizer: a ``WordPieceTokenizer``, the path of the teacher's vocab.txt, or None for
        ``data_config.vocab_file``.
      token_counts: counts for the smoothing (array [V], mapping id -> count, or a ``token_counts.json``
        path); None: the prepared folders' counts when all sources are prepared, else uniform.
      input_context: a ``tf.distribute.InputContext``: read this pipeline's share and batch
        ``batch_size / num_replicas_in_sync`` per replica.
      repeat: loop over the corpus forever (training); False for one pass (evaluation).
      stats: counters of documents / dropped sequences / invalid UTF-8 while raw text is read; they are
        logged (cumulative) at the end of every pass; None: a fresh ``DataStats``. Prepared shards carry
        their counts in the manifest, which is logged here.
      drop_remainder: drop partial batches; default ``repeat`` (a repeated stream has none anyway).
      check_nonempty: fail now, naming the sources, when they yield no sequence at all.
      objective: the ``DistillConfig`` the batches are for: ``data.masking="auto"`` masks only when one of
        its terms reads MLM logits (None: masks, DistilBERT's regime); with ``"none"`` it must have no term
        at masked positions (``ConfigError`` otherwise).

    Yields dicts: ``token_ids``, ``padding_mask``, ``segment_ids`` int32 [B, L] and, when masking,
    ``mask_positions``, ``mask_ids`` int32 [B, P] and ``mask_weights`` float32 [B, P]; L is the bucket's
    length. Unmasked batches carry the clean token ids and no ``mask_*`` field.

    Example:
    >>> import keras_distil as kd  # doctest: +SKIP
    >>> ds = build_training_dataset(kd.DataConfig(batch_size=32), ["train.txt"], "vocab.txt",  # doctest: +SKIP
    ...                             objective=kd.DistillConfig(alpha_ce=0, alpha_mlm=0, alpha_sentence_mse=1))
    """
    masking = resolve_masking(data_config, objective)
    tokenizer = as_tokenizer(tokenizer, data_config)
    sources = as_sources(sources)
    if masking == "mlm":
        warn_if_predictions_capped(data_config)
    if check_nonempty:
        ensure_nonempty(sources, data_config, tokenizer)
    for source in sources:
        if isinstance(source, ShardSource):
            manifest = read_manifest(source.directory)
            logger.info("%s: %s sequences from %s documents (%s dropped as shorter than min_len, %s documents "
                        "with invalid UTF-8)", source.directory, manifest.get("sequences"),
                        manifest.get("documents"), manifest.get("dropped_short"), manifest.get("invalid_utf8"))
    batch_size = data_config.batch_size
    stream_id = 0
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(data_config.batch_size)
        stream_id = input_context.input_pipeline_id
    if stats is None and any(not isinstance(s, ShardSource) for s in sources):
        stats = DataStats()
    ds = sequence_dataset(sources, data_config, tokenizer, input_context, data_config.seed, stats,
                          log_each_pass=True)
    ds = ds.shuffle(data_config.shuffle_buffer, seed=data_config.seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = bucket_and_batch(ds, bucket_lengths(data_config), batch_size, tokenizer.special_ids.pad,
                          repeat if drop_remainder is None else drop_remainder)
    if masking == "mlm":
        probabilities = sampling_probabilities(
            tokenizer.vocab_size, tokenizer.special_ids.all(),
            resolve_token_counts(token_counts, sources, tokenizer.vocab_size), data_config.mlm_smoothing)
        ds = mask_batches(ds, probabilities, MaskingSpec.from_config(data_config, tokenizer.special_ids.mask),
                          data_config.seed, stream_id)
    else:
        ds = clean_batches(ds)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
