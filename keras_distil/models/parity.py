"""Every hidden state of a :class:`BertMLM`, and the output comparisons that checkpoint writers run.

Hugging Face's ``output_hidden_states`` gives the embedding output followed by each layer's output.
KerasHub's backbone is a functional model, so the same tensors are read off its graph
(``embeddings_layer_norm`` and each ``transformer_layer_i``) without re-implementing the forward pass.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def all_hidden_states(model, inputs: dict) -> list[np.ndarray]:
    """[embeddings, layer_1, ..., layer_N] hidden states (inference mode), like transformers' hidden_states."""
    backbone = model.backbone
    outputs = [backbone.get_layer("embeddings_layer_norm").output]
    outputs += [layer.output for layer in backbone.transformer_layers]
    probe = keras.Model(backbone.input, outputs)
    feed = {"token_ids": tf.convert_to_tensor(inputs["token_ids"], tf.int32),
            "padding_mask": tf.convert_to_tensor(inputs["padding_mask"], tf.int32)}
    if "segment_ids" in backbone.input:
        segments = inputs.get("segment_ids")
        feed["segment_ids"] = tf.zeros_like(feed["token_ids"]) if segments is None else tf.cast(segments, tf.int32)
    return [np.asarray(h) for h in probe(feed, training=False)]


def mlm_logits(model, inputs: dict) -> np.ndarray:
    """[B, L, V] logits at every position (inference mode)."""
    feed = {k: tf.convert_to_tensor(v, tf.int32) for k, v in inputs.items() if k != "mask_positions"}
    return np.asarray(model(feed, training=False)["logits"])


def reference_inputs(vocab_size: int, max_len: int, type_vocab_size: int = 1, seed: int = 0) -> dict:
    """A small padded batch: row 0 full length, row 1 padded; segment ids 1 on row 0's second half
    when the model has more than one segment."""
    rng = np.random.default_rng(seed)
    length = min(12, max_len)
    ids = rng.integers(0, vocab_size, size=(2, length)).astype(np.int32)
    mask = np.ones((2, length), np.int32)
    mask[1, length // 2:] = 0
    ids[1, length // 2:] = 0
    segments = np.zeros((2, length), np.int32)
    if type_vocab_size > 1:
        segments[0, length // 2:] = 1
    return {"token_ids": ids, "padding_mask": mask, "segment_ids": segments}


def compare_outputs(a, b, inputs: dict) -> dict[str, float]:
    """Max abs differences between two models on ``inputs``: per hidden state (embeddings first) and logits."""
    ha, hb = all_hidden_states(a, inputs), all_hidden_states(b, inputs)
    if len(ha) != len(hb):
        raise ValueError(f"different depths: {len(ha) - 1} vs {len(hb) - 1} layers")
    diffs = {f"hidden_{i}": float(np.max(np.abs(x - y))) for i, (x, y) in enumerate(zip(ha, hb, strict=True))}
    if getattr(a, "mlm_head", None) is not None and getattr(b, "mlm_head", None) is not None:
        diffs["logits"] = float(np.max(np.abs(mlm_logits(a, inputs) - mlm_logits(b, inputs))))
    return diffs
