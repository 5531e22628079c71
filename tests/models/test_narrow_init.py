"""A narrower student initialised from the teacher (models/narrow_init.py).

The reduction is checked where it must be exact (through the identity basis it rebuilds the copied
student: every bilinear map and neuron kept), for determinism, and for what it keeps on the trained
confident teacher against a random student of the same shape. Its value on a real teacher is measured in
benchmarks/narrow_students.py (docs/narrow-students.md).
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers.batches import TINY_MODEL, clean, pattern_batch

from keras_distil.config import ConfigError, StudentConfig
from keras_distil.models.narrow_init import reduce_teacher, reduced_weights, residual_basis
from keras_distil.models.student import build_student

HALF = StudentConfig(num_layers=2, hidden_size=TINY_MODEL["hidden_size"] // 2)


def sample(seed: int = 0):
    return [clean(pattern_batch(batch_size=16, seq_len=16, num_predictions=3, seed=seed + i, min_len=4))
            for i in range(2)]


def hidden(model, batch):
    out = model({"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}, training=False)
    return np.asarray(out["hidden"], np.float64)


def test_through_the_identity_basis_the_reduction_is_the_copied_student(confident_teacher):
    """p = I keeps every direction, head and neuron: the reduced blocks compute what the teacher's do."""
    teacher = confident_teacher()
    copied = build_student(teacher, [1, 3])
    rebuilt = build_student(teacher, [1, 3], init="random", seed=9)
    values = reduced_weights({v.path: np.asarray(v, np.float64) for v in teacher.weights},
                             np.eye(TINY_MODEL["hidden_size"]), [1, 3], TINY_MODEL["num_heads"],
                             TINY_MODEL["intermediate_size"])
    for variable in rebuilt.weights:
        variable.assign(values[variable.path].astype(np.float32).reshape(variable.shape))
    batch = sample()[0]
    np.testing.assert_allclose(hidden(rebuilt, batch), hidden(copied, batch), atol=2e-5)


def test_the_reduction_is_deterministic_and_orthonormal(confident_teacher):
    teacher = confident_teacher()
    p = residual_basis(teacher, sample(), 16)
    np.testing.assert_allclose(p.T @ p, np.eye(16), atol=1e-10)
    np.testing.assert_array_equal(p, residual_basis(teacher, sample(), 16))
    a = build_student(teacher, init="teacher", shape=HALF, sample=sample())
    b = build_student(teacher, init="teacher", shape=HALF, sample=sample())
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_reduced_student_keeps_more_of_the_teacher_than_a_random_one(confident_teacher):
    """Cosine between the teacher's last hidden states and the student's mapped back through P^T, on text
    outside the sample: the reduction's start is far above a random student's (~0)."""
    teacher = confident_teacher()
    reduced = build_student(teacher, init="random", seed=1, shape=HALF)
    p = reduce_teacher(teacher, reduced, sample())
    random_student = build_student(teacher, init="random", seed=1, shape=HALF)
    held_out = clean(pattern_batch(batch_size=16, seq_len=16, num_predictions=3, seed=99, min_len=4))
    real = held_out["padding_mask"].astype(bool)
    target = hidden(teacher, held_out)[real]

    def cosine(model):
        mapped = hidden(model, held_out)[real] @ p.T
        return float(np.mean((mapped * target).sum(-1) /
                             (np.linalg.norm(mapped, axis=-1) * np.linalg.norm(target, axis=-1))))

    reduced_cos, random_cos = cosine(reduced), cosine(random_student)
    print(f"cosine to the teacher through P^T: reduced {reduced_cos:.3f}, random {random_cos:.3f}")
    assert reduced_cos > random_cos + 0.3


def test_a_reduction_cannot_invent_heads_or_neurons(confident_teacher):
    teacher = confident_teacher()
    with pytest.raises(ConfigError, match="student.num_heads: 8 is more than the teacher's 4"):
        build_student(teacher, init="teacher", shape=StudentConfig(hidden_size=16, num_heads=8), sample=sample())
    with pytest.raises(ConfigError, match="student.intermediate_size: 128 is more than the teacher's 64"):
        build_student(teacher, init="teacher", shape=StudentConfig(hidden_size=16, intermediate_size=128),
                      sample=sample())
    with pytest.raises(ConfigError, match="needs a sample of the training text"):
        build_student(teacher, init="teacher", shape=HALF)


def test_the_student_shape_defaults_follow_the_teacher(confident_teacher):
    teacher = confident_teacher()
    narrow = build_student(teacher, init="random", shape=StudentConfig(hidden_size=16))
    cfg = narrow.model_config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (2, 16, 4, 32)
    deep = build_student(teacher, init="random", shape=StudentConfig(num_layers=3))
    assert (deep.model_config.num_layers, deep.model_config.hidden_size) == (3, 32)
    copied = build_student(teacher, shape=StudentConfig(num_layers=3))  # same width: copies evenly spaced layers
    batch = sample()[0]
    inputs = {k: tf.constant(batch[k]) for k in ("token_ids", "padding_mask")}
    np.testing.assert_allclose(np.asarray(copied(inputs)["hidden"]),
                               np.asarray(build_student(teacher, [0, 1, 2])(inputs)["hidden"]), atol=1e-6)
