"""A tiny teacher that knows its data: trained once per session on batches with learnable structure.

An untrained tiny teacher makes every distillation term but MLM vanish, so tests on it exercise the MLM
gradient alone. Measured on ``helpers.batches.make_batch()`` with a random TINY_MODEL teacher (student: its
layers 0 and 2): ce 1e-6, cos 8e-5, hidden_mse 1.7e-4, sentence_cos 1.2e-4, sentence_mse 7e-6, mlm 4.77.

This teacher is trained on *pattern* rows (``helpers.batches.pattern_batch``: a motif of one or two
random tokens repeated, ``a a a ...`` or ``a b a b ...``), where a masked token is fixed by the tokens
around it. After :data:`TRAIN_STEPS` Adam
steps (about 20 s on two busy cores, once per session) it predicts the masked tokens of fresh pattern
batches confidently. Measured on ``pattern_batch(seed=0)``: KL(teacher || uniform) 4.12 nats (log 120 =
4.79 is the most there is), top-1 accuracy 1.0, mean top-1 minus top-2 probability 0.88; the terms of the
student copied from its layers 0 and 2 (T=2, mean pooling, normalised): ce 1.24 on all tokens / 0.68 at
the masked positions, mlm 0.44, cos 0.17, hidden_mse 0.35, sentence_cos 0.16, sentence_mse 0.010. Every
term carries a gradient of the order of MLM's. :func:`confidence` measures the teacher; the fixture
``confident_teacher`` in conftest asserts it.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from helpers.batches import pattern_batch

TRAIN_STEPS = 300
TRAIN_SEED = 1234
LEARNING_RATE = 3e-3


@functools.cache
def _trained_weights(model_items: tuple) -> tuple:
    """Train once per model shape per session, always in float32 (whatever policy a test has set); the
    weights as numpy arrays, the MLM head's included."""
    import tensorflow as tf

    from keras_distil.distiller import Pretrainer
    from keras_distil.models.bert import BertMLM

    config = dict(model_items)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        keras.utils.set_random_seed(TRAIN_SEED)
        model = BertMLM(config, with_mlm_head=True)
        trainer = Pretrainer(model)
        trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
        batches = [pattern_batch(batch_size=32, seq_len=16, vocab_size=config["vocab_size"], seed=1000 + i)
                   for i in range(TRAIN_STEPS)]
        data = tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in batches]) for k in batches[0]})
        trainer.fit(data, epochs=1, verbose=0)
        return tuple((v.path, v.numpy()) for v in model.weights)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def confident_teacher(model_config: dict, with_mlm_head: bool = True, pooling=None, name="teacher"):
    """A BertMLM of ``model_config`` with the session's trained weights (built where it is called: inside a
    ``strategy.scope()`` if the test needs one). ``pooling``: a SentencePooling for the sentence terms."""
    from keras_distil.models.bert import BertMLM

    weights = dict(_trained_weights(tuple(sorted(model_config.items()))))
    model = BertMLM(model_config, with_mlm_head=with_mlm_head, pooling=pooling, name=name)
    for variable in model.weights:
        variable.assign(weights[variable.path])
    return model


def confidence(teacher, batch: dict) -> dict:
    """How far the teacher's predictions at the used masked slots are from uniform: mean KL(p || uniform)
    in nats, top-1 accuracy, and mean top-1 minus top-2 probability."""
    import tensorflow as tf

    out = teacher({k: batch[k] for k in ("token_ids", "padding_mask", "mask_positions")}, training=False)
    probs = tf.nn.softmax(out["logits"], axis=-1).numpy().astype("float64")
    used = batch["mask_weights"] > 0
    p = probs[used]
    kl_uniform = float((p * np.log(np.maximum(p * p.shape[-1], 1e-30))).sum(-1).mean())
    top2 = np.sort(p, axis=-1)[:, -2:]
    accuracy = float((p.argmax(-1) == batch["mask_ids"][used]).mean())
    return {"kl_to_uniform": kl_uniform, "top1_accuracy": accuracy, "top1_margin": float((top2[:, 1] - top2[:, 0]).mean())}
