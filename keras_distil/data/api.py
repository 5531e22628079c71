"""``build_dataset``: text in, the Distiller's batches out, tokenized the way the teacher was trained.

The Python API's one data call (exported as ``keras_distil.build_dataset``). It is a thin layer over
:func:`keras_distil.data.pipeline.build_training_dataset`: it takes the tokenizer from what the user
already holds (the teacher's :class:`~keras_distil.models.checkpoint_formats.LoadedCheckpoint`, its folder,
its :class:`~keras_distil.models.tokenizer_settings.TokenizerSettings`, a KerasHub tokenizer, a
:class:`~keras_distil.data.tokenize.WordPieceTokenizer` or a bare ``vocab.txt``), with the teacher's
lower-casing and accent stripping, and builds the :class:`~keras_distil.config.DataConfig` from keyword
arguments.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_distil.config import ConfigError, DataConfig, DistillConfig
from keras_distil.data.corpus import ShardSource, TextFiles, TfdsSource, parse_source
from keras_distil.data.pipeline import build_training_dataset
from keras_distil.data.tokenize import WordPieceTokenizer, read_tokenizer_config
from keras_distil.models.checkpoint_formats import LoadedCheckpoint, load_teacher, resolve_run_folder
from keras_distil.models.keras_hub_preset import is_keras_hub_preset
from keras_distil.models.tokenizer_settings import TokenizerSettings, read_tokenizer_settings

__all__ = ["build_dataset", "resolve_tokenizer"]

CASE_KEYS = ("lowercase", "strip_accents")
TOKENIZER_TYPES = ("a LoadedCheckpoint (load_teacher), a checkpoint folder or .keras file, a vocab.txt path, "
                   "TokenizerSettings, a KerasHub WordPiece tokenizer or a WordPieceTokenizer")


def _from_path(path: str, case: dict) -> tuple[WordPieceTokenizer, bool]:
    """The tokenizer of a path, and whether its casing is the checkpoint's (False: a bare vocab.txt)."""
    if os.path.isfile(path) and not path.endswith(".keras"):
        # A vocab.txt: cased by the tokenizer_config.json beside it (the checkpoint's own settings, checked
        # against the given ones by the caller), else by the given settings, else lower-cased.
        beside = read_tokenizer_config(os.path.dirname(path) or ".")
        if beside:
            return WordPieceTokenizer.from_vocab_file(path, **beside), True
        return WordPieceTokenizer.from_vocab_file(path, **case), False
    if not os.path.exists(path):
        raise ConfigError(f"tokenizer: {path}: no such file or folder (expected {TOKENIZER_TYPES})")
    resolved = resolve_run_folder(path)
    if os.path.isdir(resolved) and not is_keras_hub_preset(resolved):
        settings = read_tokenizer_settings(resolved)  # a Hugging Face folder: no need to read the weights
    else:
        settings = load_teacher(resolved, require_mlm_head=False).tokenizer
    if settings is None:
        raise ConfigError(f"tokenizer: {path} holds no vocabulary (vocab.txt or tokenizer.json); pass the "
                          "teacher's vocab.txt or its TokenizerSettings")
    return WordPieceTokenizer.from_settings(settings), True


def resolve_tokenizer(tokenizer, **case) -> WordPieceTokenizer:
    """The :class:`WordPieceTokenizer` that gives ``tokenizer``'s ids, with its checkpoint's casing.

    Args:
      tokenizer: a :class:`LoadedCheckpoint` (from :func:`keras_distil.load_teacher`), a checkpoint
        (a Hugging Face or KerasHub preset folder, a ``.keras`` file, a keras-distil run folder), a
        ``vocab.txt`` path, :class:`TokenizerSettings`, a KerasHub WordPiece tokenizer (e.g.
        ``keras_hub.tokenizers.BertTokenizer``) or a :class:`WordPieceTokenizer` (used as it is).
      **case: ``lowercase`` and ``strip_accents``: required to agree with the checkpoint's own settings
        (a teacher fed other ids is not the teacher); for a bare ``vocab.txt`` they are the settings
        (default: those of a ``tokenizer_config.json`` beside it, else lower-cased).

    Raises :class:`ConfigError` naming the argument for a wrong type, a missing path, a checkpoint without a
    vocabulary or a casing that contradicts the checkpoint's.

    Example:
    >>> from keras_distil.data import resolve_tokenizer
    >>> from keras_distil.models.tokenizer_settings import TokenizerSettings
    >>> settings = TokenizerSettings(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello"), False, False)
    >>> resolve_tokenizer(settings).tokenize(["Hello hello"]).to_list()
    [[5, 1]]
    """
    unknown = sorted(set(case) - set(CASE_KEYS))
    if unknown:
        raise TypeError(f"resolve_tokenizer: unexpected keyword argument(s) {', '.join(unknown)}")
    case = {k: v for k, v in case.items() if v is not None}
    own_casing = True
    if isinstance(tokenizer, LoadedCheckpoint):
        if tokenizer.tokenizer is None:
            raise ConfigError(f"tokenizer: the checkpoint {tokenizer.source} carries no vocabulary (a .keras file of "
                              "a BertMLM); pass the teacher's vocab.txt or its TokenizerSettings")
        result = WordPieceTokenizer.from_settings(tokenizer.tokenizer)
    elif isinstance(tokenizer, TokenizerSettings):
        result = WordPieceTokenizer.from_settings(tokenizer)
    elif isinstance(tokenizer, WordPieceTokenizer):
        result = tokenizer
    elif isinstance(tokenizer, (str, os.PathLike)):
        result, own_casing = _from_path(os.fspath(tokenizer), case)
    elif callable(getattr(tokenizer, "get_vocabulary", None)) and hasattr(tokenizer, "lowercase"):
        vocab = tokenizer.get_vocabulary()
        if not vocab:
            raise ConfigError(f"tokenizer: the {type(tokenizer).__name__} has no vocabulary yet")
        result = WordPieceTokenizer(list(vocab), bool(tokenizer.lowercase), bool(tokenizer.strip_accents))
    else:
        hint = (" (a model carries no vocabulary: pass the LoadedCheckpoint load_teacher returned)"
                if hasattr(tokenizer, "model_config") else "")
        raise ConfigError(f"tokenizer: expected {TOKENIZER_TYPES}; got {type(tokenizer).__name__}{hint}")
    if own_casing:
        for key, value in case.items():
            if bool(value) != getattr(result, key):
                raise ConfigError(f"{key}={value!r}: the tokenizer's own setting is {key}={getattr(result, key)} "
                                  "(the teacher was trained so, and other ids would not be its ids); leave it out")
    return result


def _check_sources(source) -> None:
    one = (str, os.PathLike, TextFiles, TfdsSource, ShardSource)
    if isinstance(source, one):
        return
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, one) for s in source):
        return
    raise ConfigError("source: expected a text file, a glob, a folder written by prepare_corpus, 'tfds:NAME', "
                      f"a source object or a non-empty list of them; got {source!r}"[:300])


def build_dataset(source, tokenizer, *, batch_size: int | None = None, max_len: int | None = None,
                  objective: DistillConfig | dict | None = None, repeat: bool = True,
                  data_config: DataConfig | None = None, token_counts=None, input_context=None,
                  tfds_data_dir: str | None = None, **data) -> tf.data.Dataset:
    """Batches of ``source``'s text for :meth:`Distiller.fit`, tokenized with the teacher's vocabulary and casing.

    Text is tokenized in the graph (Hugging Face's ``BertTokenizerFast`` ids), cut into sequences of at most
    ``max_len`` tokens, shuffled, batched and, when the objective needs it, masked dynamically (fresh masks
    every batch). The same seed gives the same batches.

    Args:
      source: text files (a path, a glob, or a list of them; one document per line), a folder written by
        ``keras_distil.data.prepare_corpus``, ``"tfds:NAME[:SPLIT[:TEXT_KEY]]"``, or a list mixing them.
      tokenizer: whose ids and casing to use: the teacher's :class:`LoadedCheckpoint` (what
        :func:`load_teacher` returns), a checkpoint folder or ``.keras`` file, ``TokenizerSettings``, a
        KerasHub WordPiece tokenizer, a ``WordPieceTokenizer``, or a bare ``vocab.txt`` path (cased by the
        ``tokenizer_config.json`` beside it, else by ``lowercase`` / ``strip_accents``, else lower-cased).
      batch_size: sequences per batch (global; split over replicas with ``input_context``); None: 32, or
        ``data_config``'s.
      max_len: longest sequence in tokens, [CLS] and [SEP] included; None: 128, or ``data_config``'s.
      objective: the :class:`DistillConfig` the batches are for: with the default ``masking="auto"``, batches
        are masked for masked-LM only when one of its terms reads MLM logits (None: masked, as DistilBERT).
      repeat: loop over the corpus forever (then give ``fit`` a ``steps_per_epoch``); False: one pass.
      data_config: a base :class:`DataConfig` (a recipe's ``data`` section); the keyword arguments override
        it. Its ``vocab_file``, ``lowercase`` and ``strip_accents`` are not read: ``tokenizer`` says those.
      token_counts: token frequencies for the masking's smoothing (an array [V], a mapping or a
        ``token_counts.json`` path); None: the prepared folders' counts, else uniform.
      input_context: a ``tf.distribute.InputContext``, for ``strategy.distribute_datasets_from_function``.
      tfds_data_dir: where ``tfds:`` sources are read from (offline).
      **data: any other :class:`DataConfig` field, e.g. ``masking="none"``, ``min_len``, ``seed``,
        ``shuffle_buffer``, ``bucket_boundaries``, ``document_separator``; ``lowercase`` and
        ``strip_accents`` must agree with a checkpoint's own settings.

    Returns:
      A ``tf.data.Dataset`` of dicts: ``token_ids``, ``padding_mask``, ``segment_ids`` int32 [B, L] and, when
      masked, ``mask_positions``, ``mask_ids`` int32 [B, P] and ``mask_weights`` float32 [B, P].

    Raises :class:`ConfigError` naming the argument (a wrong type, a missing tokenizer path, an unknown
    DataConfig key, a casing that contradicts the checkpoint's, a ``max_len`` beyond the teacher's positions)
    and :class:`~keras_distil.data.base.DataError` naming the file (a missing or empty corpus).

    Example:
    >>> import os, tempfile
    >>> import keras_distil as kd
    >>> from keras_distil.models.tokenizer_settings import TokenizerSettings
    >>> vocab = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", ".")
    >>> teacher_tokenizer = TokenizerSettings(vocab, lowercase=True, strip_accents=True)
    >>> corpus = os.path.join(tempfile.mkdtemp(), "corpus.txt")
    >>> with open(corpus, "w") as f:
    ...     _ = f.write("The cat sat on the mat. The mat sat on the cat.\\n" * 8)
    >>> dataset = kd.build_dataset(corpus, teacher_tokenizer, batch_size=4, max_len=16, min_len=4)
    >>> batch = next(iter(dataset))
    >>> sorted(batch), batch["token_ids"].shape
    (['mask_ids', 'mask_positions', 'mask_weights', 'padding_mask', 'segment_ids', 'token_ids'], TensorShape([4, 16]))
    >>> sentence = kd.DistillConfig(alpha_ce=0, alpha_mlm=0, alpha_cos=1)  # no term reads MLM logits: clean text
    >>> sorted(next(iter(kd.build_dataset(corpus, teacher_tokenizer, objective=sentence, min_len=4))))
    ['padding_mask', 'segment_ids', 'token_ids']
    """
    _check_sources(source)
    if data_config is not None and not isinstance(data_config, DataConfig):
        raise ConfigError(f"data_config: expected a DataConfig or None; got {type(data_config).__name__}")
    if isinstance(objective, dict):
        objective = DistillConfig.from_dict(objective)
    elif objective is not None and not isinstance(objective, DistillConfig):
        raise ConfigError(f"objective: expected a DistillConfig, a dict or None; got {type(objective).__name__}")
    if "vocab_file" in data:
        raise ConfigError("vocab_file: the vocabulary is the tokenizer argument (e.g. build_dataset(source, "
                          "'path/to/vocab.txt')); leave vocab_file out")
    case = {k: data.pop(k) for k in CASE_KEYS if k in data}
    wordpiece = resolve_tokenizer(tokenizer, **case)
    changes = {k: v for k, v in (("batch_size", batch_size), ("max_len", max_len)) if v is not None}
    changes.update(data, vocab_file=None, lowercase=wordpiece.lowercase, strip_accents=wordpiece.strip_accents)
    config = (data_config or DataConfig()).replace(**changes)
    model_config = getattr(getattr(tokenizer, "model", None), "model_config", None)
    if model_config is not None:
        if wordpiece.vocab_size > model_config.vocab_size:
            raise ConfigError(f"tokenizer: {wordpiece.vocab_size} tokens, more than the teacher's vocab_size "
                              f"{model_config.vocab_size}")
        if config.max_len > model_config.max_position_embeddings:
            raise ConfigError(f"max_len: {config.max_len} is longer than the teacher's "
                              f"{model_config.max_position_embeddings} positions")
    if tfds_data_dir is not None:
        items = source if isinstance(source, (list, tuple)) else [source]
        source = [parse_source(s, tfds_data_dir) if isinstance(s, str) else s for s in items]
    return build_training_dataset(config, source, wordpiece, token_counts=token_counts, input_context=input_context,
                                  repeat=repeat, objective=objective)
