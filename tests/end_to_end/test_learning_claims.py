"""The learning claims, over seeds, on a trained teacher (the session's confident teacher, pattern rows).

* A distilled student (copied layers, triple loss) beats the same shape trained from scratch with masked LM
  for the same steps, by more than the seed-to-seed spread of either.
* With ``alpha_mlm = 0`` (the teacher's signal alone), teacher-student top-1 agreement at the masked
  positions rises during training, for every seed.
* A random-init student's weights do move (and stay finite).

Held-out rows are fresh pattern batches (other seeds than the training ones). Marked slow: ~1 min.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.batches import TINY_MODEL, pattern_batch

from keras_distil import BertMLM, Distiller, build_student, student_from_teacher
from keras_distil.distiller import Pretrainer

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)
STEPS = 60
HELD_OUT = [pattern_batch(batch_size=32, seed=90_000 + i) for i in range(4)]


def training_data(seed: int) -> tf.data.Dataset:
    batches = [pattern_batch(batch_size=16, seed=10_000 * (seed + 1) + i) for i in range(STEPS)]
    return tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in batches]) for k in batches[0]})


def masked_accuracy(model, reference=None) -> float:
    """Top-1 accuracy at the used masked slots of the held-out rows: against the true tokens, or against
    ``reference``'s predictions (teacher-student agreement)."""
    hits = total = 0.0
    for batch in HELD_OUT:
        inputs = {k: batch[k] for k in ("token_ids", "padding_mask", "mask_positions")}
        predicted = np.argmax(model(inputs)["logits"], -1)
        target = batch["mask_ids"] if reference is None else np.argmax(reference(inputs)["logits"], -1)
        used = batch["mask_weights"] > 0
        hits += float((predicted == target)[used].sum())
        total += float(used.sum())
    return hits / total


def distilled_accuracy(teacher, seed: int) -> float:
    keras.utils.set_random_seed(seed)
    distiller = Distiller(teacher, student_from_teacher(teacher), {"ce_positions": "masked"})
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    distiller.fit(training_data(seed), verbose=0)
    return masked_accuracy(distiller.student)


def scratch_accuracy(seed: int) -> float:
    keras.utils.set_random_seed(seed)
    trainer = Pretrainer(BertMLM(dict(TINY_MODEL, num_layers=2)))
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    trainer.fit(training_data(seed), verbose=0)
    return masked_accuracy(trainer.model)


@pytest.mark.timeout(900)
def test_distilled_student_beats_scratch_by_more_than_the_seed_spread(confident_teacher):
    teacher = confident_teacher()
    distilled = np.array([distilled_accuracy(teacher, s) for s in SEEDS])
    scratch = np.array([scratch_accuracy(s) for s in SEEDS])
    spread = max(distilled.max() - distilled.min(), scratch.max() - scratch.min())
    gap = distilled.mean() - scratch.mean()
    assert gap > spread, (distilled, scratch)
    assert distilled.min() > scratch.max(), (distilled, scratch)


@pytest.mark.timeout(900)
def test_agreement_with_the_teacher_rises_without_the_mlm_term(confident_teacher):
    """alpha_mlm 0: only the teacher's signal (soft targets, cosine) trains the student (one copied layer:
    far enough from the teacher to have something to learn)."""
    teacher = confident_teacher()
    for seed in SEEDS:
        keras.utils.set_random_seed(seed)
        student = student_from_teacher(teacher, [seed % 2 + 1])
        before = masked_accuracy(student, reference=teacher)
        distiller = Distiller(teacher, student, {"alpha_mlm": 0.0, "ce_positions": "masked"})
        distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
        distiller.fit(training_data(seed), verbose=0)
        after = masked_accuracy(student, reference=teacher)
        assert after > before + 0.15 and after > 0.8, (seed, before, after)


@pytest.mark.timeout(900)
def test_a_random_init_student_moves(confident_teacher):
    teacher = confident_teacher()
    student = build_student(teacher, [0, 2], init="random", seed=5)
    start = {v.path: v.numpy().copy() for v in student.trainable_weights}
    distiller = Distiller(teacher, student, {"ce_positions": "masked"})
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    distiller.fit(training_data(5).take(20), verbose=0)
    moved = {path: float(np.abs(v.numpy() - start[path]).max()) for path, v in
             ((v.path, v) for v in student.trainable_weights)}
    assert all(np.isfinite(v.numpy()).all() for v in student.trainable_weights)
    # Every trained kernel moved by many Adam steps' worth (lr 3e-3), not by rounding.
    kernels = {p: d for p, d in moved.items() if p.endswith("kernel")}
    assert kernels and min(kernels.values()) > 1e-2, sorted(kernels.items(), key=lambda kv: kv[1])[:3]
