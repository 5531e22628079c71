"""The classifier of ``keras-distil finetune``: a BertMLM encoder, pooled, then a dense layer."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_distil.config import ConfigError
from keras_distil.models.pooling import SentencePooling, pool_hidden_states

POOLINGS = ("mean", "cls")


@keras.saving.register_keras_serializable(package="keras_distil")
class TextClassifier(keras.Model):
    """A BertMLM encoder -> pooled hidden state (``mean`` over non-pad tokens, or ``cls``) -> dropout ->
    dense: logits [B, num_classes]."""

    def __init__(self, encoder, num_classes: int, pooling: str = "mean", dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling: got {pooling!r}; accepted: {', '.join(POOLINGS)}")
        self.encoder = encoder
        if getattr(encoder, "mlm_head", None) is not None:
            encoder.mlm_head.trainable = False  # unused here: no gradient reaches it
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.head = keras.layers.Dense(self.num_classes, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=0.02), name="classifier")
        self.head.build((None, encoder.model_config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        inputs = {k: v for k, v in inputs.items() if k in ("token_ids", "padding_mask", "segment_ids")}
        hidden = self.encoder(inputs, training=training, return_logits=False)["hidden"]
        pooled = pool_hidden_states(hidden, inputs["padding_mask"], SentencePooling(self.pooling))
        return self.head(self.dropout(tf.cast(pooled, self.compute_dtype), training=training))

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_classes": self.num_classes, "pooling": self.pooling, "dropout": self.dropout_rate}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)
