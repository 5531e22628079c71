"""A WordPiece vocabulary learned from the quickstart corpus with tensorflow-text's vocabulary tools.

``tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset`` (tensorflow-text 2.21.1) counts the
words of a ``tf.data`` dataset of strings, split by ``text.BertTokenizer``'s ``BasicTokenizer``, then
``wordpiece_tokenizer_learner_lib.learn`` binary-searches a frequency threshold whose WordPiece
vocabulary has at most ``vocab_size`` tokens (within ``slack_ratio``). The vocabulary starts with the
reserved tokens, then every character and its ``##`` form, then the pieces by count. The two steps are
called here one by one (see :func:`learn_vocab`) so the threshold search can be bounded from the word
counts: the learner is pure Python, every bisection step walks every substring of every word, and the
unbounded search took 14 steps (47 CPU-seconds for 20 000 words) where the bounded one takes about 8.

Its ``BasicTokenizer(lower_case=True)`` normalises with NFD + case folding, which is not what Hugging
Face's ``BertNormalizer`` (nor keras_distil's in-graph tokenizer) does: ``ß`` would be learned as
``ss`` and then be [UNK] at tokenization time. So the text is normalised here by
:meth:`keras_distil.data.tokenize.WordPieceTokenizer.normalize` (HF's steps: lower-case and strip
accents) and the learner only splits on whitespace and punctuation (``lower_case=False``, no
normalisation form): the vocabulary is learned on exactly the strings the tokenizer will see.

Output: ``vocab.txt`` ([PAD]=0, [UNK], [CLS], [SEP], [MASK] first) and Hugging Face's
``tokenizer_config.json`` (``do_lower_case``, ``strip_accents``), written by the checkpoint module's
writer into a temporary folder and renamed into place, then ``vocab_manifest.json`` last (settings,
the corpus' SHA-256, size): :func:`build_vocab` reuses a folder whose manifest matches.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import time
import types
import unicodedata

import tensorflow as tf

from keras_distil.data.base import DataError
from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer, load_vocab
from keras_distil.files import atomic_write_json, file_sha256, try_read_json
from keras_distil.models.tokenizer_settings import TokenizerSettings, write_tokenizer_files

logger = logging.getLogger("keras_distil.quickstart")

VOCAB_FILE, TOKENIZER_CONFIG, MANIFEST_FILE = "vocab.txt", "tokenizer_config.json", "vocab_manifest.json"
FORMAT = "keras-distil-quickstart-vocab"
BATCH = 1024  # documents per tokenization call while counting words


@dataclasses.dataclass(frozen=True)
class VocabSettings:
    """How the vocabulary is learned (recorded in the manifest; the cache compares it)."""

    vocab_size: int = 8000  # target size, special tokens included (tensorflow-text: at most, within 5 %)
    lowercase: bool = True
    strip_accents: bool | None = None  # None: follow lowercase (Hugging Face's rule)
    # The learner's cost is (binary-search steps ~17) x (distinct words) x (word length^2), in Python:
    # 20k words take ~1 min here, 40k ~2.5 min; the counting pass reads ~0.5M words/s.
    max_documents: int | None = 50_000  # first lines of the corpus file read (the corpus is hash-ordered)
    max_unique_words: int = 20_000  # most frequent distinct words the learner considers
    slack: float = 0.1  # accept a vocabulary of (1 - slack) * vocab_size .. vocab_size tokens (fewer search steps)
    model_max_length: int = 512  # written to tokenizer_config.json

    def __post_init__(self):
        if self.vocab_size <= len(SPECIAL_TOKENS):
            raise DataError(f"vocab_size: got {self.vocab_size}; accepted: an integer > {len(SPECIAL_TOKENS)}")
        if self.max_documents is not None and self.max_documents < 1:
            raise DataError(f"vocab max_documents: got {self.max_documents}; accepted: null or an integer >= 1")

    @property
    def resolved_strip_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents


def normalize(settings: VocabSettings, text: tf.Tensor) -> tf.Tensor:
    """The in-graph tokenizer's normaliser, before any vocabulary exists: ``WordPieceTokenizer.normalize``
    reads only the two case settings from its instance."""
    case = types.SimpleNamespace(lowercase=settings.lowercase, strip_accents=settings.resolved_strip_accents)
    return WordPieceTokenizer.normalize(case, text)


def _usable_token(token: str) -> bool:
    """No empty token and no whitespace or control character: vocab.txt holds one token per line."""
    return bool(token) and not any(c.isspace() or unicodedata.category(c).startswith("C") for c in token)


def count_words(documents: tf.data.Dataset, settings: VocabSettings) -> collections.Counter:
    """Word counts of the first ``max_documents`` documents, normalised as the tokenizer will, split by
    the tensorflow-text ``BasicTokenizer`` that ``bert_vocab_from_dataset`` uses (whitespace, punctuation)."""
    from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    splitter = BasicTokenizer(lower_case=False)
    if settings.max_documents is not None:
        documents = documents.take(settings.max_documents)
    words = documents.batch(BATCH).map(lambda text: splitter.tokenize(normalize(settings, text)),
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    try:
        return learner.count_words(words)
    except StopIteration:  # it looks at the first word of an empty Counter
        return collections.Counter()


def search_ceiling(counts: collections.Counter, vocab_size: int) -> int:
    """An upper bound for the learner's frequency-threshold search: the count of the
    ``vocab_size // 8``-th most frequent word. At that threshold the vocabulary holds those words and
    their pieces, far fewer than ``vocab_size`` tokens (measured: ~2x the words), while the default
    bound (the most frequent word's count, ~10^5) adds ~7 bisection steps, the most expensive ones."""
    ranked = sorted(counts.values(), reverse=True)
    return ranked[min(max(vocab_size // 8, 1), len(ranked)) - 1]


def learn_vocab(documents: tf.data.Dataset, settings: VocabSettings | None = None) -> list[str]:
    """The WordPiece vocabulary of a dataset of strings (documents), special tokens first.

    What ``bert_vocab_from_dataset`` does (count words, then ``wordpiece_tokenizer_learner_lib.learn``),
    with the threshold search bounded by :func:`search_ceiling`; should the bound be too low (a
    vocabulary over ``vocab_size``), the search runs again unbounded.
    """
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    settings = settings or VocabSettings()
    counts = count_words(documents, settings)
    if not counts:
        raise DataError("vocabulary: the corpus has no words")
    params = {"vocab_size": settings.vocab_size, "reserved_tokens": list(SPECIAL_TOKENS),
              "max_input_tokens": settings.max_unique_words, "slack_ratio": settings.slack}
    vocab = learner.learn(counts, upper_thresh=search_ceiling(counts, settings.vocab_size), **params)
    if len(vocab) > settings.vocab_size:
        vocab = learner.learn(counts, **params)
    return [t for t in vocab if _usable_token(t)]


def _manifest_settings(settings: VocabSettings, corpus_sha: str) -> dict:
    return {**dataclasses.asdict(settings), "corpus_sha256": corpus_sha}


def cached_vocab(out_dir: str, settings: VocabSettings, corpus_sha: str) -> dict | None:
    """The manifest of a vocabulary in ``out_dir`` learned with ``settings`` from this corpus, else None."""
    manifest = try_read_json(os.path.join(out_dir, MANIFEST_FILE))
    if manifest is None:
        return None
    try:
        vocab = load_vocab(os.path.join(out_dir, VOCAB_FILE))
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or manifest.get("settings") != _manifest_settings(settings, corpus_sha):
        return None
    return manifest if hashlib.sha256("\n".join(vocab).encode()).hexdigest() == manifest.get("vocab_sha256") else None


def write_vocab_folder(vocab: list[str], out_dir: str, settings: VocabSettings) -> None:
    """vocab.txt and tokenizer_config.json (the checkpoint writer's files), each renamed into place."""
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".vocab-tmp-", dir=out_dir)
    try:
        tokenizer = TokenizerSettings(tuple(vocab), settings.lowercase, settings.resolved_strip_accents)
        write_tokenizer_files(tokenizer, tmp, settings.model_max_length)
        for name in (VOCAB_FILE, TOKENIZER_CONFIG):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_vocab(corpus_file: str | os.PathLike, out_dir: str | os.PathLike, settings: VocabSettings | None = None,
                force: bool = False) -> dict:
    """Learn a vocabulary from ``corpus_file`` (one document per line) into ``out_dir``; returns the
    manifest. A folder made from the same corpus bytes with the same settings is reused unless ``force``."""
    corpus_file, out_dir = os.fspath(corpus_file), os.fspath(out_dir)
    settings = settings or VocabSettings()
    if not os.path.isfile(corpus_file):
        raise DataError(f"{corpus_file}: no such corpus file")
    corpus_sha = file_sha256(corpus_file)
    if not force:
        manifest = cached_vocab(out_dir, settings, corpus_sha)
        if manifest is not None:
            logger.info("vocabulary in %s is up to date (%d tokens)", out_dir, manifest["size"])
            return manifest
    start = time.perf_counter()
    documents = tf.data.TextLineDataset(corpus_file).filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)
    try:
        vocab = learn_vocab(documents, settings)
    except DataError as e:
        raise DataError(f"{corpus_file}: {e}") from None
    manifest_path = os.path.join(out_dir, MANIFEST_FILE)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    write_vocab_folder(vocab, out_dir, settings)
    manifest = {"format": FORMAT, "settings": _manifest_settings(settings, corpus_sha), "corpus_file": corpus_file,
                "size": len(vocab), "vocab_sha256": hashlib.sha256("\n".join(vocab).encode()).hexdigest(),
                "seconds": round(time.perf_counter() - start, 2)}
    atomic_write_json(manifest_path, manifest)
    logger.info("vocabulary of %d tokens learned from %s in %.1f s -> %s", len(vocab), corpus_file,
                manifest["seconds"], out_dir)
    return manifest


def unk_rate(tokenizer: WordPieceTokenizer, texts: list[str]) -> float:
    """Fraction of the WordPiece tokens of ``texts`` that are [UNK]."""
    ids = tokenizer.tokenize(tf.constant(texts)).flat_values.numpy()
    return float((ids == tokenizer.special_ids.unk).mean()) if ids.size else 0.0
