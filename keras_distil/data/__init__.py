"""Text in, dynamically masked batches out: corpus sources, in-graph WordPiece, masking, pipeline, prepare.

The public API: the sources (:class:`TextFiles`, :class:`TfdsSource`, :class:`ShardSource`,
:func:`parse_source`), the tokenizer (:class:`WordPieceTokenizer`, :func:`load_vocab`), masking
(:class:`MaskingSpec`, :func:`mask_tokens`, :func:`sampling_probabilities`, :func:`load_token_counts`), the
pipeline (:func:`build_dataset`, the Python API's one call, and :func:`build_training_dataset`,
:func:`sequence_dataset` under it), prepared shards (:func:`prepare_corpus`,
:func:`read_manifest`) and :class:`DataError` / :class:`DataStats`. The building blocks stay in their
modules (:mod:`.corpus`, :mod:`.tokenize`, :mod:`.masking`, :mod:`.pipeline`, :mod:`.prepare`); the
``prepare`` command is :mod:`keras_distil.cli.prepare`.
"""

from keras_distil.data.api import build_dataset, resolve_tokenizer
from keras_distil.data.base import DataError, DataStats
from keras_distil.data.corpus import ShardSource, TextFiles, TfdsSource, parse_source, read_manifest
from keras_distil.data.masking import MaskingSpec, load_token_counts, mask_tokens, sampling_probabilities
from keras_distil.data.pipeline import build_training_dataset, sequence_dataset
from keras_distil.data.prepare import prepare_corpus
from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer, load_vocab

__all__ = [
    "SPECIAL_TOKENS", "DataError", "DataStats", "MaskingSpec", "ShardSource", "TextFiles", "TfdsSource",
    "WordPieceTokenizer", "build_dataset", "build_training_dataset", "load_token_counts", "load_vocab", "mask_tokens",
    "parse_source", "prepare_corpus", "read_manifest", "resolve_tokenizer", "sampling_probabilities",
    "sequence_dataset",
]
