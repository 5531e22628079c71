"""The WordPiece settings of a checkpoint folder: vocabulary, lower-casing, accent stripping.

Hugging Face keeps them in up to three files: ``vocab.txt`` (one token per line, the id is the line
number), ``tokenizer_config.json`` (``do_lower_case``, ``strip_accents``) and ``tokenizer.json`` (the
fast tokenizer: ``model.vocab`` and a ``BertNormalizer`` with ``lowercase`` / ``strip_accents``).
``strip_accents`` null means "follow lowercase", as in transformers. When two files disagree the
folder is refused rather than guessed at: a teacher fed the wrong ids is not the teacher.
"""

from __future__ import annotations

import dataclasses
import json
import os

from keras_distil.files import read_json
from keras_distil.models.tensor_store import CheckpointError

VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}


@dataclasses.dataclass(frozen=True)
class TokenizerSettings:
    """What a WordPiece tokenizer needs to give a checkpoint's ids.

    ``vocab_file`` is the folder's vocab.txt, or None when the vocabulary came from tokenizer.json
    only (use :meth:`write_vocab`). ``strip_accents`` is resolved (never None).
    """

    vocab: tuple[str, ...]
    lowercase: bool
    strip_accents: bool
    vocab_file: str | None = None

    def write_vocab(self, path: str) -> str:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(token + "\n" for token in self.vocab))
        return path

    def keras_hub_tokenizer(self, tokenizer_class=None):
        """A KerasHub WordPiece tokenizer with these settings (gives transformers' ids): an instance of
        ``tokenizer_class`` (e.g. ``keras_hub.tokenizers.DistilBertTokenizer``; default ``BertTokenizer``)."""
        if tokenizer_class is None:
            import keras_hub

            tokenizer_class = keras_hub.tokenizers.BertTokenizer
        return tokenizer_class(vocabulary=list(self.vocab), lowercase=self.lowercase,
                               strip_accents=self.strip_accents)


def _read_vocab_txt(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as f:
            tokens = tuple(line.rstrip("\n") for line in f)
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 ({e})") from None
    if not tokens:
        raise CheckpointError(f"{path}: empty vocabulary")
    return tokens


def _from_tokenizer_json(path: str) -> tuple[tuple[str, ...], bool | None, bool | None]:
    data = read_json(path, expect=dict, error=CheckpointError)
    model = data.get("model") or {}
    if model.get("type") != "WordPiece":
        raise CheckpointError(f"{path}: model type {model.get('type')!r} is not WordPiece")
    vocab = model.get("vocab") or {}
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise CheckpointError(f"{path}: model.vocab ids are not 0..{len(ids) - 1}")
    by_id = tuple(sorted(vocab, key=vocab.get))
    norm = data.get("normalizer") or {}
    if norm.get("type") == "BertNormalizer":
        return by_id, norm.get("lowercase"), norm.get("strip_accents")
    return by_id, None, None


def read_tokenizer_settings(folder: str) -> TokenizerSettings | None:
    """The folder's tokenizer settings, or None when it has no vocabulary at all.

    Reads ``vocab.txt``, ``tokenizer_config.json`` (``do_lower_case``, ``strip_accents``) and
    ``tokenizer.json`` (its WordPiece vocabulary and ``BertNormalizer``); unset casing is BERT's default
    (lower-cased, accents stripped with it). Files that disagree raise :class:`CheckpointError`.

    Args:
      folder: a Hugging Face checkpoint or tokenizer folder.

    Example:
    >>> import json, os, tempfile
    >>> import keras_distil as kd
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "vocab.txt"), "w") as f:
    ...     _ = f.write("[PAD]\\n[UNK]\\n[CLS]\\n[SEP]\\n[MASK]\\nHello\\n")
    >>> with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
    ...     json.dump({"do_lower_case": False}, f)
    >>> settings = kd.read_tokenizer_settings(folder)
    >>> settings.vocab[-1], settings.lowercase, settings.strip_accents
    ('Hello', False, False)
    >>> kd.read_tokenizer_settings(tempfile.mkdtemp()) is None
    True
    """
    vocab_path = os.path.join(folder, VOCAB_FILE)
    config_path = os.path.join(folder, TOKENIZER_CONFIG)
    json_path = os.path.join(folder, TOKENIZER_JSON)
    vocab = _read_vocab_txt(vocab_path) if os.path.isfile(vocab_path) else None
    lowercase = strip = None
    if os.path.isfile(config_path):
        tok_config = read_json(config_path, expect=dict, error=CheckpointError)
        lowercase, strip = tok_config.get("do_lower_case"), tok_config.get("strip_accents")
    if os.path.isfile(json_path):
        json_vocab, json_lower, json_strip = _from_tokenizer_json(json_path)
        if vocab is not None and json_vocab != vocab:
            raise CheckpointError(f"{json_path}: its vocabulary differs from {vocab_path}")
        for key, ours, theirs in (("lowercase", lowercase, json_lower), ("strip_accents", strip, json_strip)):
            if ours is not None and theirs is not None and ours != theirs:
                raise CheckpointError(f"{json_path}: normalizer {key}={theirs} contradicts {config_path} ({ours})")
        vocab = vocab or json_vocab
        lowercase = json_lower if lowercase is None else lowercase
        strip = json_strip if strip is None else strip
    if vocab is None:
        return None
    lowercase = True if lowercase is None else bool(lowercase)  # BertTokenizer's default
    strip = lowercase if strip is None else bool(strip)
    return TokenizerSettings(vocab, lowercase, strip, vocab_path if os.path.isfile(vocab_path) else None)


def write_tokenizer_files(settings: TokenizerSettings, folder: str, max_length: int) -> None:
    """vocab.txt and the tokenizer_config.json transformers' ``AutoTokenizer`` reads (BertTokenizer)."""
    settings.write_vocab(os.path.join(folder, VOCAB_FILE))
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": settings.lowercase,
              "strip_accents": settings.strip_accents, "tokenize_chinese_chars": True,
              "model_max_length": max_length, **SPECIAL_TOKENS}
    with open(os.path.join(folder, TOKENIZER_CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
