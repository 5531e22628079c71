"""WordPiece tokenization in the TF graph, identical to Hugging Face's ``BertTokenizerFast``.

The graph reproduces the Rust ``BertNormalizer`` step by step, then lets tensorflow-text's
``FastWordpieceTokenizer`` do BERT's whitespace/punctuation pre-tokenization and the WordPiece split:

1. tab, newline, carriage return and every space separator (``\\p{Zs}``) become a space;
2. every "other" character (``\\p{C}``: control, format such as U+200B, private use, unassigned)
   and U+FFFD are removed, as Hugging Face does (so a byte that was not UTF-8, replaced by U+FFFD,
   vanishes instead of becoming [UNK]);
3. with ``strip_accents``: NFD, then every non-spacing mark (``\\p{Mn}``) is removed;
4. with ``lowercase``: Unicode lower-casing (``ß`` stays ``ß``; no NFKC, no case folding).

``FastBertNormalizer`` / ``BertTokenizer`` differ from Hugging Face on such input (they apply NFKC
case folding and keep control characters as separators), hence the explicit steps. Two documented
differences remain: a literal ``[MASK]`` (or any special token) in the text is split into ``[``,
``mask``, ``]`` here, whereas Hugging Face matches it as the special token (training text must never
produce special ids); and words longer than 100 *bytes* become [UNK] here, 100 *characters* there
(identical for ASCII).

Documents are then cut into training sequences (:func:`split_into_sequences`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import tensorflow as tf
import tensorflow_text as tf_text

from keras_distil.data.base import DataError, DataStats, is_blank
from keras_distil.files import read_json
from keras_distil.models.tokenizer_settings import TokenizerSettings

logger = logging.getLogger("keras_distil.data")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_BYTES_PER_WORD = 100  # Hugging Face's max_input_chars_per_word


def load_vocab(path: str | os.PathLike) -> list[str]:
    """The tokens of a WordPiece ``vocab.txt``, one per line, in id order.

    Raises :class:`DataError` naming the file when it is missing or empty, and naming the missing
    tokens when one of [PAD] [UNK] [CLS] [SEP] [MASK] is absent.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\r\n") for line in f]
    except FileNotFoundError:
        raise DataError(f"{path}: no such vocabulary file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: vocabulary is not UTF-8 ({e})") from None
    while tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise DataError(f"{path}: vocabulary file is empty")
    present = set(tokens)
    missing = [t for t in SPECIAL_TOKENS if t not in present]
    if missing:
        raise DataError(f"{path}: vocabulary lacks the special token(s) {', '.join(missing)}")
    return tokens


def vocab_hash(tokens: list[str]) -> str:
    """SHA-256 of the token list (not the file bytes, so line endings and a trailing newline do not matter)."""
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def read_tokenizer_config(path: str | os.PathLike) -> dict:
    """``lowercase`` / ``strip_accents`` from a Hugging Face ``tokenizer_config.json`` (file or its folder).

    Returns only the keys the file sets; an absent file gives ``{}``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer_config.json")
    if not os.path.exists(path):
        return {}
    data = read_json(path, expect=dict, error=DataError)
    out = {}
    if "do_lower_case" in data:
        out["lowercase"] = bool(data["do_lower_case"])
    if data.get("strip_accents") is not None:
        out["strip_accents"] = bool(data["strip_accents"])
    return out


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    def all(self) -> tuple[int, ...]:
        return (self.pad, self.unk, self.cls, self.sep, self.mask)


class WordPieceTokenizer(tf.Module):
    """Text -> WordPiece ids in the graph; ``tokenize`` takes a string tensor of any batch shape [N]."""

    def __init__(self, vocab: list[str], lowercase: bool = True, strip_accents: bool | None = None,
                 vocab_file: str | None = None, name: str = "wordpiece_tokenizer"):
        super().__init__(name=name)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise DataError(f"{vocab_file or 'vocabulary'}: lacks the special token(s) {', '.join(missing)}")
        self.vocab = list(vocab)
        self.vocab_file = vocab_file
        self.lowercase = bool(lowercase)
        # Hugging Face: strip_accents=None follows do_lower_case.
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        index: dict[str, int] = {}
        duplicates = []
        for i, token in enumerate(self.vocab):
            if index.setdefault(token, i) != i:
                duplicates.append(f"{token!r} (ids {index[token]} and {i})")
        if duplicates:  # tensorflow-text would only say "Tokens in the vocabulary must be unique."
            raise DataError(f"{vocab_file or 'vocabulary'}: duplicate token(s) {', '.join(duplicates[:10])}")
        self.special_ids = SpecialIds(*(index[t] for t in SPECIAL_TOKENS))
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocab, token_out_type=tf.int32, unknown_token="[UNK]",
            max_bytes_per_word=MAX_BYTES_PER_WORD, no_pretokenization=False,
        )

    @classmethod
    def from_vocab_file(cls, vocab_file: str | os.PathLike, lowercase: bool = True,
                        strip_accents: bool | None = None) -> WordPieceTokenizer:
        vocab_file = os.fspath(vocab_file)
        return cls(load_vocab(vocab_file), lowercase, strip_accents, vocab_file=vocab_file)

    @classmethod
    def from_settings(cls, settings: TokenizerSettings) -> WordPieceTokenizer:
        """The tokenizer of a checkpoint's tokenizer settings: its vocabulary, lower-casing and accent
        stripping, so that text gets the ids the checkpoint was trained on.

        Args:
          settings: a :class:`~keras_distil.models.tokenizer_settings.TokenizerSettings` (``vocab``,
            ``lowercase``, ``strip_accents``, ``vocab_file``), e.g. ``load_teacher(path).tokenizer``.

        Raises :class:`DataError` naming the vocabulary file for a vocabulary without the special tokens or
        with a duplicate token.

        Example:
        >>> vocab = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello")
        >>> tokenizer = WordPieceTokenizer.from_settings(TokenizerSettings(vocab, True, True))
        >>> tokenizer.tokenize(["Hello"]).to_list()
        [[5]]
        """
        return cls(list(settings.vocab), settings.lowercase, settings.strip_accents, vocab_file=settings.vocab_file)

    def settings(self) -> TokenizerSettings:
        """This tokenizer's vocabulary, case and accent rules as :class:`TokenizerSettings` (what
        :meth:`from_settings` takes and the checkpoint writers record)."""
        return TokenizerSettings(tuple(self.vocab), self.lowercase, self.strip_accents, self.vocab_file)

    @classmethod
    def from_config(cls, data_config, teacher_dir: str | os.PathLike | None = None) -> WordPieceTokenizer:
        """The tokenizer of ``data_config`` (``vocab_file``, ``lowercase``, ``strip_accents``).

        With ``teacher_dir``, its ``vocab.txt`` is used when ``data_config.vocab_file`` is null, and the
        settings of its ``tokenizer_config.json`` win over the config's (the teacher was trained with
        them); a disagreement is logged.
        """
        vocab_file = data_config.vocab_file
        settings = {"lowercase": data_config.lowercase, "strip_accents": data_config.strip_accents}
        if teacher_dir is not None:
            teacher_dir = os.fspath(teacher_dir)
            vocab_file = vocab_file or os.path.join(teacher_dir, "vocab.txt")
            for key, value in read_tokenizer_config(teacher_dir).items():
                if settings[key] is not None and settings[key] != value:
                    logger.warning("data.%s=%s overridden by the teacher's tokenizer_config.json (%s) in %s",
                                   key, settings[key], value, teacher_dir)
                settings[key] = value
        if vocab_file is None:
            raise DataError("data.vocab_file: not set and no teacher folder given to take vocab.txt from")
        return cls.from_vocab_file(vocab_file, **settings)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def vocab_hash(self) -> str:
        return vocab_hash(self.vocab)

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """Hugging Face BertNormalizer in the graph (see the module docstring)."""
        text = tf.strings.regex_replace(text, r"[\t\n\r\p{Zs}]", " ")
        text = tf.strings.regex_replace(text, r"[\p{C}\x{FFFD}]", "")
        if self.strip_accents:
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        if self.lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
        return text

    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        """UTF-8 strings [N] -> int32 ids [N, (tokens)], without [CLS] / [SEP]."""
        return self._wordpiece.tokenize(self.normalize(tf.convert_to_tensor(text, tf.string)))

    def __call__(self, text):
        return self.tokenize(text)

    def encode(self, text: tf.Tensor, max_len: int) -> dict[str, tf.Tensor]:
        """Strings [N] -> the model's inputs for inference: ``[CLS] tokens [SEP]`` cut to ``max_len``
        (truncation is right for serving, unlike training data), padded to ``max_len``.

        Returns ``token_ids``, ``padding_mask`` and ``segment_ids``, int32 [N, max_len]; the same ids as
        Hugging Face's ``tokenizer(text, truncation=True, max_length=max_len, padding="max_length")``.
        """
        ids = self.tokenize(text)[:, : max_len - 2]
        edge = tf.ones([ids.nrows(), 1], tf.int32)
        ids = tf.concat([edge * self.special_ids.cls, ids, edge * self.special_ids.sep], axis=1)
        token_ids = ids.to_tensor(default_value=self.special_ids.pad, shape=[None, max_len])
        padding_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=[None, max_len])
        return {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": tf.zeros_like(token_ids)}


def split_into_sequences(token_ids: tf.RaggedTensor, max_len: int, cls_id: int, sep_id: int) -> tf.RaggedTensor:
    """Documents [N, (n)] -> sequences [M, (<= max_len)], each ``[CLS] chunk [SEP]``.

    A document of ``n`` tokens becomes ``k = ceil(n / (max_len - 2))`` chunks of nearly equal size
    (sizes differ by at most one), so nothing is truncated and a long document does not leave a tiny
    tail chunk that the length filter would then drop. An empty document gives no sequence.
    """
    capacity = max_len - 2
    n = token_ids.row_lengths()
    k = (n + capacity - 1) // capacity
    safe_k = tf.maximum(k, 1)
    base, rem = n // safe_k, n % safe_k
    doc = tf.repeat(tf.range(tf.size(n, out_type=tf.int64)), k)
    j = tf.ragged.range(k).flat_values
    sizes = tf.gather(base, doc) + tf.cast(j < tf.gather(rem, doc), tf.int64)
    chunks = tf.RaggedTensor.from_row_lengths(token_ids.flat_values, sizes)
    edge = tf.ones_like(sizes, dtype=token_ids.dtype)[:, None]
    return tf.concat([edge * cls_id, chunks, edge * sep_id], axis=1)


def tokenize_to_sequences(text: tf.Tensor, tokenizer: WordPieceTokenizer, max_len: int, min_len: int,
                          stats: DataStats | None = None) -> tf.RaggedTensor:
    """Documents [N] -> sequences [M, (min_len..max_len)]; shorter ones are dropped (and counted)."""
    sequences = split_into_sequences(tokenizer.tokenize(text), max_len, tokenizer.special_ids.cls,
                                     tokenizer.special_ids.sep)
    keep = sequences.row_lengths() >= min_len
    kept = tf.ragged.boolean_mask(sequences, keep)
    if stats is not None:
        stats.add("documents", tf.reduce_sum(tf.cast(~is_blank(text), tf.int64)))
        stats.add("sequences", kept.nrows())
        stats.add("dropped_short", tf.reduce_sum(tf.cast(~keep, tf.int64)))
        stats.add("tokens", tf.size(kept.flat_values))
    return kept
