"""BERT masked-LM models on KerasHub's ``BertBackbone``, with Hugging Face BERT's numerics.

KerasHub's BERT differs from Hugging Face's in two places that move logits by ~1 on a random model:
its feed-forward uses tanh-approximate GELU, and its ``MaskedLMHead`` uses LayerNorm epsilon 1e-5.
:class:`BertMLM` keeps KerasHub's backbone (so presets and tooling work) but switches every
feed-forward activation to exact erf GELU and carries its own MLM head, laid out as
``BertOnlyMLMHead``: dense -> GELU -> LayerNorm(1e-12) -> decoder tied to the word embeddings + bias.

The model returns the last hidden states and, when it has a head, the MLM logits, computed only at
``mask_positions`` when the input has them: projecting onto a 30k vocabulary at ~15 % of positions
instead of all of them is about half the step time of a small model.
"""

from __future__ import annotations

import keras
import keras_hub
import tensorflow as tf

from keras_distil import compat
from keras_distil.config import ModelConfig
from keras_distil.models.pooling import SentencePooling

SERIALIZATION_PACKAGE = "keras_distil"


def exact_gelu(x):
    """GELU with erf, as Hugging Face BERT's ``hidden_act="gelu"``."""
    return keras.activations.gelu(x, approximate=False)


def _initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class MLMHead(keras.layers.Layer):
    """Hugging Face's ``BertOnlyMLMHead``; the decoder is the word-embedding matrix passed at call time."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.transform_dense = keras.layers.Dense(
            hidden_size, kernel_initializer=_initializer(), dtype=self.dtype_policy, name="transform_dense"
        )
        self.transform_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="transform_layer_norm"
        )

    def build(self, input_shape):
        self.transform_dense.build(input_shape)
        self.transform_layer_norm.build(tuple(input_shape[:-1]) + (self.hidden_size,))
        self.output_bias = self.add_weight(name="output_bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, hidden, token_embedding):
        x = exact_gelu(self.transform_dense(hidden))
        x = self.transform_layer_norm(x)
        logits = token_embedding(x, reverse=True)  # x @ E^T, E tied to the input embeddings
        return logits + tf.cast(self.output_bias, logits.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
        }


def use_hf_numerics(backbone: keras_hub.models.BertBackbone, layer_norm_eps: float) -> None:
    """Switch a KerasHub ``BertBackbone`` to exact GELU and the given LayerNorm epsilon, in place.

    The functional backbone re-runs each layer's ``call`` on every forward pass, and ``Dense.call`` and
    ``LayerNormalization.call`` read ``activation`` / ``epsilon`` at call time, so patching built layers
    is enough. ``BertMLM.from_config`` re-applies it, so saved models keep the numerics. The layers'
    parts are private in KerasHub: :func:`keras_distil.compat.transformer_encoder_parts` checks them.
    """
    backbone.embeddings_layer_norm.epsilon = layer_norm_eps
    for layer in backbone.transformer_layers:
        intermediate_dense, attention_norm, feedforward_norm = compat.transformer_encoder_parts(layer)
        layer.activation = exact_gelu
        intermediate_dense.activation = exact_gelu
        attention_norm.epsilon = layer_norm_eps
        feedforward_norm.epsilon = layer_norm_eps


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class BertMLM(keras.Model):
    """A BERT encoder with an optional masked-LM head.

    Inputs (a dict): ``token_ids`` [B, L] int, ``padding_mask`` [B, L] (1 real, 0 pad), optional
    ``segment_ids`` [B, L] (zeros when absent) and optional ``mask_positions`` [B, P] int.

    Outputs (a dict): ``hidden`` [B, L, H] (last hidden states), ``pooled`` [B, H] (BERT's tanh pooler
    on [CLS]; frozen, since no MLM or distillation loss reaches it), and with a head ``logits``:
    [B, P, V] at ``mask_positions`` when given, else [B, L, V]; with ``return_layers=True``, ``layers``
    (every layer's output, for the layer-wise terms: the default call does none of that work).

    ``pooling``: how the model's sentence embedding is made from ``hidden``
    (:class:`~keras_distil.models.pooling.SentencePooling`; None for a model that is not a sentence encoder).
    It is saved with the model, read from and written to sentence-transformers files, and used by the
    sentence-level distillation terms and the ``embed`` export signature.

    Args:
      model_config: the shape, a :class:`~keras_distil.config.ModelConfig` or its dict.
      with_mlm_head: add the masked-LM head (False: an encoder, like Hugging Face's ``BertModel``).
      pooling: the sentence pooling (a ``SentencePooling`` or its dict), or None.
      **kwargs: ``keras.Model`` arguments (``name``, ``dtype``, ``trainable``).

    Example:
    >>> import numpy as np
    >>> import keras_distil as kd
    >>> config = kd.ModelConfig(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    >>> model = kd.BertMLM(config)
    >>> batch = {"token_ids": np.array([[2, 17, 4, 9, 3, 0]]), "padding_mask": np.array([[1, 1, 1, 1, 1, 0]])}
    >>> out = model(batch)
    >>> tuple(out["hidden"].shape), tuple(out["logits"].shape)
    ((1, 6, 16), (1, 6, 100))
    >>> tuple(model({**batch, "mask_positions": np.array([[2]])})["logits"].shape)  # logits at [MASK] only
    (1, 1, 100)
    """

    def __init__(self, model_config: dict | ModelConfig, with_mlm_head: bool = True,
                 pooling: SentencePooling | dict | None = None, **kwargs):
        # Keras only propagates `trainable` to sub-layers that exist when it is set, and ignores a
        # later assignment of the same value: apply it once the layers are built (a reloaded frozen
        # teacher would otherwise come back trainable).
        trainable = kwargs.pop("trainable", True)
        super().__init__(**kwargs)
        cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(model_config)
        self.model_config = cfg
        self.with_mlm_head = with_mlm_head
        self.pooling = pooling if isinstance(pooling, SentencePooling) or pooling is None \
            else SentencePooling.from_dict(pooling)
        self.backbone = keras_hub.models.BertBackbone(
            vocabulary_size=cfg.vocab_size,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            hidden_dim=cfg.hidden_size,
            intermediate_dim=cfg.intermediate_size,
            dropout=cfg.dropout,
            max_sequence_length=cfg.max_position_embeddings,
            num_segments=cfg.type_vocab_size,
            dtype=self.dtype_policy,
            name="backbone",
        )
        use_hf_numerics(self.backbone, cfg.layer_norm_eps)
        self.mlm_head = None
        if with_mlm_head:
            self.mlm_head = MLMHead(
                cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps, dtype=self.dtype_policy, name="mlm_head"
            )
            self.mlm_head.build((None, cfg.hidden_size))
        type(self).trainable.fset(self, trainable)  # an assignment of the unchanged value would be skipped
        self.built = True  # every weight exists now: copying, saving and fit() need no dummy call

    def call(self, inputs, training=None, return_logits=True, return_layers=False):
        """``return_logits=False`` skips the MLM head (a teacher needed for its hidden states only).
        ``return_layers=True`` adds ``layers``: the embedding layer's output then every block's, a list of
        ``num_layers + 1`` tensors [B, L, H] (the layer-wise distillation terms)."""
        token_ids = inputs["token_ids"]
        segment_ids = inputs.get("segment_ids")
        if segment_ids is None:
            segment_ids = tf.zeros_like(token_ids)
        if return_layers:
            layers = self._layer_outputs(token_ids, segment_ids, inputs["padding_mask"], training)
            result = {"hidden": layers[-1], "pooled": self.backbone.pooled_dense(layers[-1][:, 0, :]),
                      "layers": layers}
        else:
            out = self.backbone(
                {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": inputs["padding_mask"]},
                training=training,
            )
            result = {"hidden": out["sequence_output"], "pooled": out["pooled_output"]}
        if self.mlm_head is not None and return_logits:
            hidden = result["hidden"]
            positions = inputs.get("mask_positions")
            if positions is not None:
                hidden = tf.gather(hidden, tf.cast(positions, tf.int32), batch_dims=1)
            result["logits"] = self.mlm_head(hidden, token_embedding=self.backbone.token_embedding)
        return result

    def _layer_outputs(self, token_ids, segment_ids, padding_mask, training):
        """KerasHub ``BertBackbone``'s forward pass, layer by layer, keeping every layer's output (the same
        layers and arithmetic as the functional backbone: tests/models/test_layer_outputs.py)."""
        b = self.backbone
        tokens = b.token_embedding(token_ids)
        x = b.embeddings_add((tokens, b.position_embedding(tokens), b.segment_embedding(segment_ids)))
        x = b.embeddings_dropout(b.embeddings_layer_norm(x), training=training)
        outputs = [x]
        for layer in b.transformer_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
            outputs.append(x)
        return outputs

    def attention_projections(self, index: int, layer_input):
        """``(queries, keys, values)`` [B, L, heads, head_dim] of block ``index`` for its input
        ``layer_input`` (``layers[index]`` of :meth:`call`): the tensors its self-attention computes, recomputed
        with its own weights for the attention and value-relation terms."""
        query, key, value = compat.attention_projections(self.backbone.transformer_layers[index])
        return query(layer_input), key(layer_input), value(layer_input)

    @property
    def trainable(self):
        return keras.Model.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        """As Keras', but the pooler stays frozen: no MLM or distillation loss reaches it."""
        keras.Model.trainable.fset(self, value)
        if hasattr(self, "backbone"):
            self.backbone.pooled_dense.trainable = False

    @property
    def transformer_layers(self):
        return self.backbone.transformer_layers

    def get_config(self):
        return {**super().get_config(), "model_config": self.model_config.to_dict(),
                "with_mlm_head": self.with_mlm_head,
                "pooling": None if self.pooling is None else self.pooling.to_dict()}


def precision_copy(model: BertMLM, dtype: str) -> BertMLM:
    """``model`` computing under the Keras dtype policy ``dtype``: itself when it already does, else a copy
    holding its weights (cast to the new variable dtype).

    Used both ways: what a run trained under ``mixed_bfloat16`` saves for serving computes in float32, and
    a frozen teacher runs its forward pass in ``bfloat16`` where the device has fast bfloat16 matmuls
    (``train.teacher_precision``: half the weight memory, no per-step weight casts).

    Args:
      model: a :class:`BertMLM`.
      dtype: a Keras dtype policy name: "float32", "bfloat16", "mixed_bfloat16", ...

    Example:
    >>> m = build_mlm_model(dict(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
    ...                          intermediate_size=32, max_position_embeddings=16))
    >>> precision_copy(m, "bfloat16").weights[0].dtype
    'bfloat16'
    >>> precision_copy(m, "float32") is m
    True
    """
    if model.dtype_policy.name == dtype:
        return model
    copy = BertMLM.from_config({**model.get_config(), "dtype": dtype})
    copy.set_weights(model.get_weights())
    copy.trainable = model.trainable
    return copy


def float32_copy(model: BertMLM) -> BertMLM:
    """``model`` computing in float32: :func:`precision_copy` ``(model, "float32")``. A model trained under
    ``mixed_bfloat16`` / ``mixed_float16`` keeps float32 variables but computes in the lower precision, and
    records that policy in its config; what a run saves for serving and evaluation computes in float32.

    Args:
      model: a :class:`BertMLM`.

    Example:
    >>> m = build_mlm_model(dict(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
    ...                          intermediate_size=32, max_position_embeddings=16), dtype="mixed_bfloat16")
    >>> float32_copy(m).dtype_policy.name
    'float32'
    """
    return precision_copy(model, "float32")


def build_mlm_model(model_config: dict | ModelConfig, with_mlm_head: bool = True, dtype=None) -> BertMLM:
    """A randomly initialised BERT (the teacher to pretrain, or a baseline student). No download.

    Args:
      model_config: the shape, a :class:`~keras_distil.config.ModelConfig` or its dict.
      with_mlm_head: add the masked-LM head (False: an encoder only).
      dtype: a Keras dtype policy (``"mixed_bfloat16"``, ...); None: Keras' global policy.

    Example:
    >>> import keras_distil as kd
    >>> model = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2,
    ...                                 intermediate_size=32))
    >>> model.model_config.num_layers, model.mlm_head is not None
    (2, True)
    >>> kd.build_mlm_model(model.model_config, with_mlm_head=False).mlm_head is None
    True
    """
    return BertMLM(model_config, with_mlm_head=with_mlm_head, dtype=dtype)


def dummy_inputs(batch_size: int = 2, seq_len: int = 8, num_predictions: int | None = None, vocab_size: int = 100):
    """A small deterministic input dict (for tracing, tests and exports)."""
    ids = (tf.range(batch_size * seq_len, dtype=tf.int32) % max(vocab_size - 1, 1)) + 1
    inputs = {
        "token_ids": tf.reshape(ids, (batch_size, seq_len)),
        "padding_mask": tf.ones((batch_size, seq_len), tf.int32),
        "segment_ids": tf.zeros((batch_size, seq_len), tf.int32),
    }
    if num_predictions:
        inputs["mask_positions"] = tf.tile(tf.range(num_predictions, dtype=tf.int32)[None], (batch_size, 1))
    return inputs
