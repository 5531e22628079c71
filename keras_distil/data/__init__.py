"""Text in, dynamically masked batches out: corpus sources, in-graph WordPiece, masking, pipeline, prepare."""

from keras_distil.data.base import DataError, DataStats
from keras_distil.data.corpus import (
    ShardSource,
    TextFiles,
    TfdsSource,
    check_utf8,
    decode_utf8,
    parse_source,
    read_manifest,
    resolve_files,
    shard_sequences,
    text_documents,
    tfds_documents,
)
from keras_distil.data.masking import (
    MaskingSpec,
    load_token_counts,
    mask_tokens,
    sampling_probabilities,
    select_positions,
)
from keras_distil.data.pipeline import (
    bucket_and_batch,
    bucket_lengths,
    build_training_dataset,
    documents_to_sequences,
    ensure_nonempty,
    mask_batches,
    resolve_token_counts,
    sequence_dataset,
)
from keras_distil.data.prepare import main_prepare, prepare_corpus, register_cli
from keras_distil.data.tokenize import (
    SPECIAL_TOKENS,
    WordPieceTokenizer,
    load_vocab,
    read_tokenizer_config,
    split_into_sequences,
    tokenize_to_sequences,
    vocab_hash,
)

__all__ = [
    "SPECIAL_TOKENS", "DataError", "DataStats", "MaskingSpec", "ShardSource", "TextFiles", "TfdsSource",
    "WordPieceTokenizer", "bucket_and_batch", "bucket_lengths", "build_training_dataset", "check_utf8",
    "decode_utf8", "documents_to_sequences", "ensure_nonempty", "load_token_counts", "load_vocab",
    "main_prepare", "mask_batches", "mask_tokens", "parse_source", "prepare_corpus", "read_manifest",
    "read_tokenizer_config", "register_cli", "resolve_files", "resolve_token_counts", "sampling_probabilities", "select_positions",
    "sequence_dataset", "shard_sequences", "split_into_sequences", "text_documents", "tfds_documents",
    "tokenize_to_sequences", "vocab_hash",
]
