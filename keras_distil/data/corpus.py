"""Corpus sources -> ``tf.data`` datasets of documents (text) or of prepared token sequences.

Three kinds of source:

* :class:`TextFiles`: paths and globs of text files, one document per line (the DistilBERT
  reference's ``dump.txt``) or, with ``document_separator="blank_line"``, paragraphs separated by
  blank lines (a paragraph's lines are joined with a space).
* :class:`TfdsSource`: a TFDS dataset by name, split and text feature, read from a local
  ``data_dir``. Nothing is downloaded unless ``download=True``: plain ``tfds.load`` retries the
  network for ~200 s offline, so a dataset that is not prepared locally fails at once with a message
  saying how to provide it.
* :class:`ShardSource`: a folder written by :func:`keras_distil.data.prepare.prepare_corpus`
  (TFRecord shards of token ids, ``token_counts.json``, ``manifest.json``).

Bytes that are not UTF-8 follow ``DataConfig.invalid_utf8``: ``"replace"`` (default) decodes them
with U+FFFD, which the tokenizer then removes exactly as Hugging Face does, and counts the affected
documents; ``"error"`` rejects the corpus, naming the file and line (text files are checked before
training starts; other sources fail when the bad record is read).
"""

from __future__ import annotations

import codecs
import glob
import os
from dataclasses import dataclass

import tensorflow as tf

from keras_distil.data.base import DataError, DataStats, is_blank, read_json

MANIFEST_NAME = "manifest.json"
COUNTS_NAME = "token_counts.json"
SHARD_FORMAT = "keras-distil-shards"
SHARD_FEATURE = "token_ids"


@dataclass(frozen=True)
class TextFiles:
    """Text files (paths or globs). ``document_separator`` None: the DataConfig's."""

    patterns: tuple[str, ...]
    document_separator: str | None = None

    def __post_init__(self):
        if isinstance(self.patterns, str):
            object.__setattr__(self, "patterns", (self.patterns,))
        else:
            object.__setattr__(self, "patterns", tuple(os.fspath(p) for p in self.patterns))


@dataclass(frozen=True)
class TfdsSource:
    """A TFDS dataset: ``name`` (``"name"``, ``"name/config"`` or ``"name/config:version"``), ``split``,
    the string feature ``text_key``; ``data_dir`` is the TFDS data folder or one prepared dataset folder."""

    name: str
    split: str = "train"
    text_key: str = "text"
    data_dir: str | None = None
    download: bool = False


@dataclass(frozen=True)
class ShardSource:
    """A folder written by ``prepare_corpus``."""

    directory: str


Source = TextFiles | TfdsSource | ShardSource


def parse_source(spec: str | Source, tfds_data_dir: str | None = None) -> Source:
    """A source from its command-line spelling.

    ``tfds:NAME[:SPLIT[:TEXT_KEY]]`` is a TFDS dataset (read from ``tfds_data_dir``); a folder holding
    ``manifest.json`` is a prepared shard set; anything else is a text file path or glob.
    """
    if not isinstance(spec, str):
        return spec
    if spec.startswith("tfds:"):
        # A version ("name/config:1.0.0") also contains ':'; split from the right only on known parts.
        parts = spec[len("tfds:"):].split(":")
        if len(parts) >= 2 and parts[1][:1].isdigit():  # name:version
            parts = [f"{parts[0]}:{parts[1]}"] + parts[2:]
        if not parts[0] or len(parts) > 3:
            raise DataError(f"{spec!r}: expected tfds:NAME[:SPLIT[:TEXT_KEY]]")
        return TfdsSource(parts[0], *parts[1:], data_dir=tfds_data_dir)
    if os.path.isdir(spec) and os.path.exists(os.path.join(spec, MANIFEST_NAME)):
        return ShardSource(spec)
    return TextFiles((spec,))


def resolve_files(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Expand globs; errors name a pattern that matches nothing, a missing path or a folder."""
    files: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matched = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
            if not matched:
                raise DataError(f"{pattern}: no file matches this pattern")
            files.extend(matched)
        elif os.path.isdir(pattern):
            raise DataError(f"{pattern}: is a folder without {MANIFEST_NAME}; pass its files, e.g. '{pattern}/*.txt'")
        elif not os.path.exists(pattern):
            raise DataError(f"{pattern}: no such file")
        else:
            files.append(pattern)
    return list(dict.fromkeys(files))


def check_utf8(files: list[str], chunk_bytes: int = 1 << 24) -> None:
    """Raise :class:`DataError` naming the file and line of the first byte sequence that is not UTF-8."""
    for path in files:
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        lines_before, offset = 0, 0
        with open(path, "rb") as f:
            while True:
                chunk = f.read(chunk_bytes)
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    # The error offset is relative to the decoder's pending bytes plus this chunk.
                    pending = len(e.object) - len(chunk)
                    bad = max(e.start - pending, 0)
                    line = lines_before + chunk.count(b"\n", 0, bad) + 1
                    raise DataError(
                        f"{path}: line {line}: bytes that are not UTF-8 at byte offset {offset + bad} "
                        "(set data.invalid_utf8='replace' to decode them as U+FFFD)") from None
                if not chunk:
                    break
                lines_before += chunk.count(b"\n")
                offset += len(chunk)


def decode_utf8(text: tf.Tensor, policy: str, stats: DataStats | None = None) -> tf.Tensor:
    """Strings [N] made valid UTF-8: invalid bytes become U+FFFD (counted) or raise (``policy="error"``)."""
    if policy == "error":
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="strict")
    fixed = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD,
                                         replace_control_characters=False)
    if stats is not None:
        stats.add("invalid_utf8", tf.reduce_sum(tf.cast(tf.not_equal(fixed, text), tf.int64)))
    return fixed


def _lines(path: tf.Tensor) -> tf.data.Dataset:
    # Blank lines are not filtered here: a per-line filter inside the interleave is ~20x slower than
    # reading; they yield no sequence and are not counted as documents downstream (batched).
    return tf.data.TextLineDataset(path)


def _paragraphs(path: tf.Tensor) -> tf.data.Dataset:
    """Blank-line separated paragraphs of one file, streamed with a scan (no whole-file read)."""
    lines = tf.data.TextLineDataset(path).concatenate(tf.data.Dataset.from_tensors(tf.constant("")))

    def step(paragraph, line):
        blank = is_blank(line)
        joined = tf.where(tf.equal(tf.strings.length(paragraph), 0), line,
                          tf.strings.join([paragraph, line], separator=" "))
        new_state = tf.where(blank, tf.constant(""), joined)
        emit = tf.logical_and(blank, tf.strings.length(paragraph) > 0)
        return new_state, (emit, paragraph)

    return lines.scan(tf.constant(""), step).filter(lambda emit, _: emit).map(lambda _, text: text)


def _shard_files(files: list[str], input_context) -> tuple[list[str], bool]:
    """Files of this input pipeline, and whether records must still be sharded one by one
    (when there are fewer files than pipelines)."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return files, False
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) >= n:
        return files[i::n], False
    return files, True


def _interleave(files: list[str], reader, shuffle_seed: int | None) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_seed is not None and len(files) > 1:
        ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.interleave(reader, cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=True)


def _element_shard(ds: tf.data.Dataset, input_context) -> tf.data.Dataset:
    return ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def text_documents(source: TextFiles, document_separator: str = "line", invalid_utf8: str = "replace",
                   input_context=None, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Raw documents (tf.string, maybe invalid UTF-8: see :func:`decode_utf8`) of text files.

    In line mode blank lines pass through (they give no sequence and are not counted as documents).
    """
    files = resolve_files(source.patterns)
    if invalid_utf8 == "error":
        check_utf8(files)
    separator = source.document_separator or document_separator
    if separator not in ("line", "blank_line"):
        raise DataError(f"document_separator: got {separator!r}; accepted: 'line' | 'blank_line'")
    mine, per_record = _shard_files(files, input_context)
    ds = _interleave(mine, _lines if separator == "line" else _paragraphs, shuffle_seed)
    return _element_shard(ds, input_context) if per_record else ds


def describe(source: Source) -> str:
    """A short human name for error messages (the files, the TFDS name or the shard folder)."""
    if isinstance(source, TextFiles):
        try:
            files = resolve_files(source.patterns)
        except DataError:
            files = list(source.patterns)
        shown = ", ".join(files[:5])
        return shown if len(files) <= 5 else f"{shown} and {len(files) - 5} more files"
    if isinstance(source, TfdsSource):
        return f"tfds:{source.name}:{source.split}:{source.text_key} (data_dir={source.data_dir})"
    return source.directory


def _tfds_hint(source: TfdsSource) -> str:
    return (
        f"TFDS dataset {source.name!r} is not prepared under data_dir={source.data_dir!r} and nothing is "
        "downloaded offline. Provide it in one of these ways: (1) build it from local files with TFDS's "
        f"manual_dir: `tfds build {source.name} --manual_dir=<folder with the source files> "
        "--data_dir=<data_dir>` and pass that data_dir; (2) copy a prepared copy (the folder "
        f"<data_dir>/{source.name.split(':')[0]}/<config>/<version> made on a machine with network) and pass "
        "its data_dir or that folder itself; (3) export the text to .txt files, one document per line, "
        "and pass the files instead. Use download=True only where the network is reachable."
    )


def tfds_builder(source: TfdsSource):
    """The TFDS builder of ``source``, prepared on this machine (``source.data_dir`` may be a prepared
    dataset's own folder); a dataset that would need a download raises :class:`DataError` saying how to
    provide it offline, unless ``source.download``."""
    import tensorflow_datasets as tfds

    data_dir = source.data_dir
    if data_dir and os.path.exists(os.path.join(data_dir, "dataset_info.json")):
        return tfds.builder_from_directory(data_dir)
    try:
        builder = tfds.builder(source.name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"tfds:{source.name}: no such TFDS dataset. {_tfds_hint(source)}") from None
    if not builder.is_prepared():
        if not source.download:
            raise DataError(_tfds_hint(source))
        builder.download_and_prepare()
    return builder


def tfds_documents(source: TfdsSource, input_context=None) -> tf.data.Dataset:
    """Raw documents of a TFDS split's string feature ``text_key`` (fails fast when not available offline)."""
    builder = tfds_builder(source)
    splits = list(builder.info.splits.keys())
    base_split = source.split.split("[")[0]
    if base_split not in splits:
        raise DataError(f"tfds:{source.name}: no split {source.split!r}; available: {', '.join(splits)}")
    features = builder.info.features
    if source.text_key not in features:
        raise DataError(f"tfds:{source.name}: no feature {source.text_key!r}; available: {', '.join(features)}")
    ds = builder.as_dataset(split=source.split, shuffle_files=False)
    ds = ds.map(lambda example: example[source.text_key], num_parallel_calls=tf.data.AUTOTUNE)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = _element_shard(ds, input_context)
    return ds


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST_NAME)
    manifest = read_json(path, "the manifest of a prepared corpus")
    if not isinstance(manifest, dict) or manifest.get("format") != SHARD_FORMAT:
        raise DataError(f"{path}: not a keras-distil shard manifest (format != {SHARD_FORMAT!r})")
    for key in ("vocab_sha256", "max_len", "shards"):
        if key not in manifest:
            raise DataError(f"{path}: manifest lacks the key {key!r}")
    return manifest


def check_manifest(directory: str, manifest: dict, tokenizer, max_len: int) -> None:
    """Refuse shards tokenized with another vocabulary or other case settings than ``tokenizer``'s, or
    longer than the model's ``max_len``."""
    path = os.path.join(directory, MANIFEST_NAME)
    if manifest["vocab_sha256"] != tokenizer.vocab_hash:
        raise DataError(
            f"{path}: shards were tokenized with another vocabulary (sha256 {manifest['vocab_sha256'][:12]}..., "
            f"from {manifest.get('vocab_file')}) than the teacher's ({tokenizer.vocab_hash[:12]}..., from "
            f"{tokenizer.vocab_file}); run prepare again with the teacher's vocab.txt")
    for key in ("lowercase", "strip_accents"):
        if key in manifest and manifest[key] != getattr(tokenizer, key):
            raise DataError(f"{path}: shards were tokenized with {key}={manifest[key]}, the teacher's tokenizer "
                            f"uses {key}={getattr(tokenizer, key)}; run prepare again with the teacher's settings")
    if manifest["max_len"] > max_len:
        raise DataError(f"{path}: shards hold sequences up to max_len={manifest['max_len']} tokens, more than "
                        f"data.max_len={max_len}; prepare them again with --max-len {max_len}")


def _parse_sequence(record: tf.Tensor) -> tf.Tensor:
    features = tf.io.parse_single_example(record, {SHARD_FEATURE: tf.io.VarLenFeature(tf.int64)})
    return tf.cast(tf.sparse.to_dense(features[SHARD_FEATURE]), tf.int32)


def shard_sequences(source: ShardSource, input_context=None, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Token-id sequences (int32 [L]) of a prepared folder; the shards are read with interleave."""
    manifest = read_manifest(source.directory)
    files = [os.path.join(source.directory, shard["file"]) for shard in manifest["shards"]]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise DataError(f"{missing[0]}: no such shard (listed in {os.path.join(source.directory, MANIFEST_NAME)})")
    mine, per_record = _shard_files(files, input_context)
    ds = _interleave(mine, tf.data.TFRecordDataset, shuffle_seed)
    if per_record:
        ds = _element_shard(ds, input_context)
    return ds.map(_parse_sequence, num_parallel_calls=tf.data.AUTOTUNE)
