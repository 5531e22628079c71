"""Raw text to model inputs inside the exported graph.

Two tokenizers, one packing step:

* :class:`ServingTokenizer` is the data pipeline's own UTF-8 repair and
  :class:`~keras_distil.data.tokenize.WordPieceTokenizer` (Hugging Face's BertNormalizer rebuilt from
  regex / NFD ops, then tensorflow-text's ``FastWordpieceTokenizer``): the SavedModel's text signature
  gives exactly the ids the student was trained on. Its regex and ``NormalizeUTF8`` ops have no TFLite
  kernel.
* :class:`LiteTokenizer` uses only ops with TFLite kernels in ``tensorflow_text.tflite_registrar``:
  ``FastBertNormalizer`` (lower case, NFD, accents stripped) and ``FastWordpieceTokenizer``. It gives the
  training ids on ordinary text; it differs where ``FastBertNormalizer`` does: NFKC case folding
  (``ß`` -> ``ss``, ligatures, full-width letters), ASCII control characters (separators there, deleted
  in training) and U+FFFD (kept there, deleted in training).
  The export verifies the ids on a fixed set of sentences and reports any difference.

:func:`pack` turns ragged WordPiece ids into ``[CLS] ... [SEP]`` rows padded to the longest row (at most
``max_len``) with builtin ops only (no ``RaggedRange``, which TFLite lacks).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from keras_distil.data.base import DataError
from keras_distil.data.corpus import decode_utf8
from keras_distil.data.tokenize import MAX_BYTES_PER_WORD, WordPieceTokenizer
from keras_distil.export.errors import ExportError
from keras_distil.models.tokenizer_settings import TokenizerSettings

# Fixed sentences for checking the text paths (plain prose, punctuation, accents, digits, an empty string).
CHECK_SENTENCES = (
    "The cat sat on the mat.",
    "Hello, world! Distillation keeps 97% of the teacher's score.",
    "Café au lait, naïve résumé: accents are stripped for uncased vocabularies.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9",
    "",
    "Words like transformers, tokenization and embeddings split into word pieces.",
)


def training_tokenizer(settings: TokenizerSettings) -> WordPieceTokenizer:
    """The data pipeline's tokenizer for these settings (same vocabulary, case and accent handling)."""
    try:
        return WordPieceTokenizer.from_settings(settings)
    except (DataError, RuntimeError) as e:  # tensorflow-text raises RuntimeError for duplicate tokens
        raise ExportError(f"{settings.vocab_file or 'vocabulary'}: {e}") from None


class ServingTokenizer(tf.Module):
    """The training tokenizer behind the training pipeline's UTF-8 repair: a request with bytes that are not
    UTF-8 (possible over gRPC) gets U+FFFD for them, which the normalizer deletes, as training did with
    ``data.invalid_utf8="replace"``, instead of failing inside the regex ops."""

    def __init__(self, settings: TokenizerSettings, name: str = "serving_tokenizer"):
        super().__init__(name=name)
        self._tokenizer = training_tokenizer(settings)

    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        return self._tokenizer.tokenize(decode_utf8(text, "replace"))


class LiteTokenizer(tf.Module):
    """WordPiece from TFLite-compatible tensorflow-text ops (see the module docstring)."""

    def __init__(self, settings: TokenizerSettings, name: str = "lite_tokenizer"):
        super().__init__(name=name)
        if settings.strip_accents != settings.lowercase:
            raise ExportError(
                f"lowercase={settings.lowercase} with strip_accents={settings.strip_accents} has no TFLite "
                "normalizer (FastBertNormalizer does both or neither); export the id-input TFLite model and "
                "tokenize on the host, or use the SavedModel's text signature")
        self._normalizer = tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=settings.lowercase)
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=list(settings.vocab), token_out_type=tf.int32, unknown_token="[UNK]",
            max_bytes_per_word=MAX_BYTES_PER_WORD, no_pretokenization=False, support_detokenization=False)

    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        return self._wordpiece.tokenize(self._normalizer.normalize(text))


def special_id(settings: TokenizerSettings, token: str) -> int:
    try:
        return settings.vocab.index(token)
    except ValueError:
        raise ExportError(f"{settings.vocab_file or 'vocabulary'}: no {token} token") from None


def pack(ids: tf.RaggedTensor, max_len: int, cls_id: int, sep_id: int, pad_id: int = 0):
    """Ragged ids [N, (n)] -> (token_ids, padding_mask), int32 [N, min(max_len, 2 + longest)].

    Each row is ``[CLS] ids[:max_len - 2] [SEP]`` then padding; the mask is 1 on those tokens.
    """
    ids = tf.cast(ids, tf.int32)
    body = ids.to_tensor(default_value=pad_id)[:, : max_len - 2]  # RaggedTensorToTensor + strided slice
    splits = ids.row_splits
    lengths = tf.minimum(tf.cast(splits[1:] - splits[:-1], tf.int32), max_len - 2)
    rows = tf.shape(body)[0]
    width = tf.shape(body)[1] + 2
    edge = tf.ones(tf.stack([rows, 1]), tf.int32)
    padded = tf.concat([edge * cls_id, body, edge * pad_id], axis=1)
    positions = tf.range(width)[None, :]
    sep_here = tf.cast(tf.equal(positions, lengths[:, None] + 1), tf.int32)
    token_ids = padded * (1 - sep_here) + sep_here * sep_id
    padding_mask = tf.cast(positions <= lengths[:, None] + 1, tf.int32)
    return token_ids, padding_mask


def pack_for(settings: TokenizerSettings, max_len: int):
    """A ``pack`` with the special ids of ``settings`` bound."""
    cls_id, sep_id, pad_id = (special_id(settings, t) for t in ("[CLS]", "[SEP]", "[PAD]"))

    def packer(ids):
        return pack(ids, max_len, cls_id, sep_id, pad_id)

    return packer
