"""Distil a small random teacher on synthetic token ids, printing each loss term (no data, no download).

    python examples/synthetic_demo.py [--steps 40]

The smallest end-to-end use of the public API: a teacher, a student initialised from every other
teacher layer, dynamic masking in the graph with frequency smoothing, and ``Distiller.fit``. The token
ids follow a Zipf law, so masking's smoothing has frequent and rare tokens to tell apart.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_distil import BertMLM, Distiller, student_from_teacher  # noqa: E402
from keras_distil.data.masking import MaskingSpec, mask_tokens, sampling_probabilities  # noqa: E402

SPECIAL_IDS = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK]
CLS, SEP, MASK = 2, 3, 4


def zipf_sequences(num, vocab_size, max_len, seed):
    """Token ids [num, max_len] as [CLS] w1 .. wn [SEP] + padding, words Zipf-distributed, and their counts."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocab_size - len(SPECIAL_IDS) + 1)
    word_probs = 1.0 / ranks / np.sum(1.0 / ranks)
    ids = np.zeros((num, max_len), np.int32)
    lengths = rng.integers(max_len // 2, max_len + 1, num)
    for row, n in enumerate(lengths):
        words = rng.choice(ranks, n - 2, p=word_probs) + len(SPECIAL_IDS) - 1
        ids[row, :n] = [CLS, *words, SEP]
    counts = np.bincount(ids[ids >= len(SPECIAL_IDS)], minlength=vocab_size)
    return ids, counts


class PrintLossTerms(keras.callbacks.Callback):
    def __init__(self, every):
        super().__init__()
        self.every = every

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            terms = "  ".join(f"{k} {v:7.4f}" for k, v in sorted(logs.items()))
            print(f"step {batch + 1:4d}  {terms}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    teacher = BertMLM(dict(vocab_size=2000, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512,
                           max_position_embeddings=args.seq_len, dropout=0.1), name="teacher")
    student = student_from_teacher(teacher)  # teacher layers 0 and 2
    print(f"teacher {teacher.count_params():,} parameters, {teacher.model_config.num_layers} layers; "
          f"student {student.count_params():,} parameters, {student.model_config.num_layers} layers")

    ids, counts = zipf_sequences(args.steps * args.batch_size, 2000, args.seq_len, seed=0)
    probabilities = sampling_probabilities(2000, SPECIAL_IDS, counts, smoothing=0.7)
    spec = MaskingSpec(mask_id=MASK, max_predictions=max(1, round(0.15 * args.seq_len)))
    data = (tf.data.Dataset.from_tensor_slices(ids).batch(args.batch_size).enumerate()
            .map(lambda step, batch: mask_tokens(batch, tf.cast(batch > 0, tf.int32), probabilities,
                                                  tf.stack([tf.constant(0, tf.int64), step]), spec))
            .prefetch(tf.data.AUTOTUNE))

    distiller = Distiller(teacher, student)  # T=2, alpha_ce=5, alpha_mlm=2, alpha_cos=1: the paper's
    distiller.compile(optimizer=keras.optimizers.AdamW(5e-4, beta_2=0.98, epsilon=1e-6, weight_decay=0.0))
    history = distiller.fit(data, epochs=1, verbose=0, callbacks=[PrintLossTerms(every=max(1, args.steps // 10))])
    first, last = history.history["loss"][0], history.history["loss"][-1]
    print(f"done: mean loss over the run {last:.4f} (the student started as an exact copy of half the teacher, "
          f"so the soft-target and cosine terms measure what the dropped layers carried)")
    return first


if __name__ == "__main__":
    main()
