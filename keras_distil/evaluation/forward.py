"""The model side of an evaluation: a batch's inputs, its clean text (the token ids before masking),
compiled forwards of the whole model or of its encoder alone, and sentence embeddings."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_distil.models.pooling import SentencePooling, pool_hidden_states


def count_params(model) -> int:
    """The number of weights of ``model`` (trainable or not)."""
    return int(sum(int(np.prod(v.shape)) for v in model.weights))


def has_mlm_head(model) -> bool:
    """False for an encoder-only BertMLM (``with_mlm_head=False``); models without the attribute have one."""
    return getattr(model, "with_mlm_head", True) is not False


def teacher_pooling(teacher) -> SentencePooling:
    """The pooling of the evaluation's sentence embeddings: the teacher's (``teacher.pooling``), else mean."""
    return getattr(teacher, "pooling", None) or SentencePooling()


def model_inputs(batch) -> dict:
    """The model inputs of a batch dict as tensors: ``token_ids``, ``padding_mask`` and, when present,
    ``segment_ids`` and ``mask_positions`` (the other fields are the metrics', not the model's)."""
    keys = ("token_ids", "padding_mask", "segment_ids", "mask_positions")
    return {k: tf.convert_to_tensor(batch[k]) for k in keys if k in batch}


def unmasked_token_ids(batch):
    """The token ids of ``batch`` before masking: ``mask_ids`` written back at the used ``mask_positions``.

    ``mask_ids`` holds the original token of every selected slot, whether it became [MASK], a random
    token or stayed (80/10/10), so this recovers the clean sequences exactly. Without mask fields the
    batch is taken as clean already."""
    ids = tf.cast(batch["token_ids"], tf.int32)
    if "mask_positions" not in batch:
        return ids
    positions = tf.cast(batch["mask_positions"], tf.int32)
    used = tf.cast(batch["mask_weights"], tf.float32) > 0
    rows = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(positions))
    where = tf.boolean_mask(tf.stack([rows, positions], axis=-1), used)
    return tf.tensor_scatter_nd_update(ids, where, tf.boolean_mask(tf.cast(batch["mask_ids"], tf.int32), used))


def clean_inputs(batch) -> dict:
    """The encoder inputs of ``batch``'s clean text: its token ids before masking (:func:`unmasked_token_ids`),
    ``padding_mask`` and ``segment_ids``; no ``mask_positions`` (no head is run)."""
    inputs = {k: v for k, v in model_inputs(batch).items() if k != "mask_positions"}
    inputs["token_ids"] = unmasked_token_ids(batch)
    return inputs


class _Inference:
    """``model(inputs, training=False, **options)``: the Python function a :class:`CompiledForward` traces.

    An object, not a lambda, on purpose: TensorFlow counts the traces of every ``tf.function`` made from one
    piece of code together (all the lambdas of a line share their code object), and warns of "retracing"
    after 5 traces within 10 calls: an evaluation of a few models, each traced once, reached that. The
    traces of an object's function are counted for that object alone."""

    def __init__(self, model, options: dict):
        self.model, self.options = model, options

    def __call__(self, inputs):
        return self.model(inputs, training=False, **self.options)


class CompiledForward:
    """A compiled inference forward of ``model``, traced once for batches of every shape.

    The input signature is the first batch's structure and dtypes with every dimension unknown (``[None,
    None]`` for ``token_ids``): batches of other sizes and lengths reuse that one trace, where a plain
    ``tf.function`` traces again for each new shape. A batch of another structure (other keys, dtypes or
    ranks) gets a trace of its own.

    Args:
      model: a Keras model called as ``model(inputs, training=False, **options)``.
      **options: further call arguments (``return_logits=False``).
    """

    def __init__(self, model, **options):
        self.python_function = _Inference(model, options)
        self._signature, self._compiled = None, None

    def __call__(self, inputs):
        inputs = tf.nest.map_structure(tf.convert_to_tensor, inputs)
        signature = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), inputs)
        if self._compiled is None or signature != self._signature:
            self._signature = signature
            self._compiled = tf.function(self.python_function, input_signature=[signature])
        return self._compiled(inputs)


def forward_fn(model):
    """A compiled inference forward: the batch dict -> the model's outputs (logits at mask_positions)."""
    return CompiledForward(model)


def encoder_fn(model):
    """A compiled forward of the encoder alone (``hidden`` and ``pooled``; a head, if any, is skipped)."""
    if not has_mlm_head(model):
        return forward_fn(model)
    return CompiledForward(model, return_logits=False)


def encode_batch(encoder, inputs: dict, pooling: SentencePooling) -> tuple[np.ndarray, np.ndarray]:
    """(last hidden states [B, L, H], sentence embeddings [B, H]) of ``inputs`` as numpy float32."""
    hidden = encoder(inputs)["hidden"]
    return (tf.cast(hidden, tf.float32).numpy(),
            pool_hidden_states(hidden, inputs["padding_mask"], pooling).numpy())


def sentence_embeddings(model, batch, pooling: SentencePooling | None = None) -> np.ndarray:
    """The sentence embeddings of the non-empty rows of ``batch``, always on its clean text.

    A masked batch (with ``mask_positions``, ``mask_ids``, ``mask_weights``) is unmasked first
    (:func:`clean_inputs`), so it gives the embeddings of the clean batch.

    Args:
      model: a BertMLM-like model (with or without an MLM head; the head is not run).
      batch: a batch dict of the training pipeline (``token_ids``, ``padding_mask``, optional mask fields).
      pooling: how hidden states become one vector (default: the model's ``pooling``, else mean).

    Returns:
      float32 ``[B', H]``, B' the rows with at least one real token.

    Example:
    >>> import keras_distil as kd  # doctest: +SKIP
    >>> model = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=1, num_heads=2,
    ...                                 intermediate_size=32))  # doctest: +SKIP
    >>> batch = {"token_ids": np.array([[2, 7, 9, 3]]), "padding_mask": np.array([[1, 1, 1, 1]])}
    >>> sentence_embeddings(model, batch).shape  # doctest: +SKIP
    (1, 16)
    """
    pooling = pooling or teacher_pooling(model)
    _, embeddings = encode_batch(encoder_fn(model), clean_inputs(batch), pooling)
    return embeddings[np.asarray(batch["padding_mask"]).any(axis=1)]
