"""A student of the teacher: fewer layers, and as wide or narrower, initialised from the teacher.

DistilBERT's initialisation (Sanh et al. 2019, section 3): take one layer out of two, since the
teacher and the student share the hidden size. Embeddings (word, position, token type and their
LayerNorm), the chosen transformer blocks and the MLM head are copied; the student is then an exact
sub-network of the teacher.

:func:`build_student` also makes the paper's "random init" ablation: the same shape with fresh weights
(``distill.student_init = "random"``). A student narrower than the teacher (the ``student`` section:
TinyBERT, MiniLM) starts from a reduction of the teacher's weights (models/narrow_init.py) or at random.
"""

from __future__ import annotations

import dataclasses
from typing import get_args, get_type_hints

import keras

from keras_distil.config import ConfigError, DistillConfig, ModelConfig, StudentConfig
from keras_distil.models.bert import BertMLM


def default_student_layers(num_teacher_layers: int) -> list[int]:
    """Every other teacher layer, starting at 0: 12 -> [0, 2, 4, 6, 8, 10].

    What ``distill.student_layers`` null means, and what :func:`student_from_teacher` copies by default.

    Args:
      num_teacher_layers: the teacher's transformer blocks.

    Example:
    >>> import keras_distil as kd
    >>> kd.default_student_layers(12), kd.default_student_layers(5)
    ([0, 2, 4, 6, 8, 10], [0, 2, 4])
    """
    return list(range(0, num_teacher_layers, 2))


def check_student_layers(layers, num_teacher_layers: int) -> list[int]:
    """Validate a list of teacher layer indices; raise ``ConfigError`` naming the bad entries."""
    layers = list(layers)
    if not layers:
        raise ConfigError("distill.student_layers: empty; give at least one teacher layer index")
    bad = [i for i in layers if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < num_teacher_layers]
    if bad:
        raise ConfigError(
            f"distill.student_layers: {bad} out of range; the teacher has {num_teacher_layers} layers, "
            f"so indices must lie in [0, {num_teacher_layers - 1}]"
        )
    if len(set(layers)) != len(layers):
        raise ConfigError(f"distill.student_layers: {layers} repeats a layer; give each teacher layer once")
    return layers


def evenly_spaced_layers(num_teacher_layers: int, num_layers: int) -> list[int]:
    """``num_layers`` teacher layer indices spread evenly from layer 0: ``(12, 4) -> [0, 3, 6, 9]``."""
    return [i * num_teacher_layers // num_layers for i in range(num_layers)]


def copied_layers(num_teacher_layers: int, num_layers: int) -> list[int]:
    """The teacher layers a ``num_layers``-deep student copies by default: every other layer when that
    gives ``num_layers`` (DistilBERT), else :func:`evenly_spaced_layers`."""
    every_other = default_student_layers(num_teacher_layers)
    return every_other if len(every_other) == num_layers else evenly_spaced_layers(num_teacher_layers, num_layers)


def student_model_config(teacher_config: ModelConfig, shape: StudentConfig | None = None,
                         layers: list[int] | None = None) -> ModelConfig:
    """The student's :class:`ModelConfig`: the teacher's, with the ``student`` section's shape applied.

    Each null of ``shape`` means "as the teacher": the teacher's width and heads; depth
    ``len(layers)`` when copied layers are given, else half the teacher's (rounded up); feed-forward width
    the teacher's ratio to the width times the student's width. Conflicts raise :class:`ConfigError`
    naming the key.

    Args:
      teacher_config: the teacher's shape.
      shape: the recipe's ``student`` section (None: all "as the teacher").
      layers: ``distill.student_layers``, when given.

    Example:
    >>> t = ModelConfig(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)
    >>> s = student_model_config(t, StudentConfig(hidden_size=192))
    >>> s.num_layers, s.hidden_size, s.num_heads, s.intermediate_size
    (3, 192, 12, 768)
    """
    shape = shape or StudentConfig()
    num_layers = shape.num_layers
    if layers is not None:
        if num_layers is not None and num_layers != len(layers):
            raise ConfigError(f"student.num_layers: got {num_layers}, but distill.student_layers={layers} copies "
                              f"{len(layers)} layers; give one of them, or make them agree")
        num_layers = len(layers)
    if num_layers is None:
        num_layers = len(default_student_layers(teacher_config.num_layers))
    hidden = shape.hidden_size or teacher_config.hidden_size
    heads = shape.num_heads or teacher_config.num_heads
    if hidden % heads:
        key = "student.num_heads" if shape.num_heads else "student.hidden_size"
        raise ConfigError(f"{key}: a student {hidden} wide does not divide into {heads} heads"
                          + ("" if shape.num_heads else " (the teacher's count); set student.num_heads to a divisor"))
    intermediate = shape.intermediate_size or \
        max(1, round(teacher_config.intermediate_size * hidden / teacher_config.hidden_size))
    changes = dict(num_layers=num_layers, hidden_size=hidden, num_heads=heads, intermediate_size=intermediate)
    if shape.dropout is not None:
        changes["dropout"] = shape.dropout
    return teacher_config.replace(**changes)


def same_width(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether a block of ``a`` can hold a block of ``b``'s weights (width, heads, feed-forward width)."""
    return (a.hidden_size, a.num_heads, a.intermediate_size) == (b.hidden_size, b.num_heads, b.intermediate_size)


def _copy(dst_layer, src_layer) -> None:
    dst_layer.set_weights(src_layer.get_weights())


STUDENT_INITS = get_args(get_type_hints(DistillConfig)["student_init"])  # ("teacher", "random")


def build_student(teacher: BertMLM, layers=None, init: str = "teacher", seed: int | None = None,
                  dropout: float | None = None, shape: StudentConfig | None = None, sample=None) -> BertMLM:
    """A student of the teacher: as wide by default, half as deep, with the teacher's head presence.

    Args:
      teacher: the teacher :class:`BertMLM`.
      layers: teacher layer indices the student copies, in order (None: :func:`copied_layers` for the
        student's depth). Only used by ``init="teacher"`` at the teacher's width.
      init: ``"teacher"``: at the teacher's width, copy those layers, the embeddings, the pooler and the MLM
        head (DistilBERT); narrower, a reduction of the teacher's weights to the student's shape
        (:func:`keras_distil.models.narrow_init.reduce_teacher`, which needs ``sample``). ``"random"``:
        fresh random weights (BERT's initialisers).
      seed: with ``"random"``, reseed Keras' global RNG first (``keras.utils.set_random_seed``), so the
        weights depend on the seed and the shape alone, not on how many draws loading the teacher consumed;
        None: draw from the global RNG as it stands.
      dropout: the student's dropout rate while training (None: ``shape.dropout``, else the teacher's).
      shape: the recipe's ``student`` section (:func:`student_model_config`); None: the teacher's width.
      sample: for a narrower ``"teacher"`` init, a few batches of the training text (dicts with
        ``token_ids`` and ``padding_mask``) whose teacher activations give the reduction's directions.

    Example:
    >>> from keras_distil import build_mlm_model, build_student
    >>> from keras_distil.config import StudentConfig
    >>> teacher = build_mlm_model(dict(vocab_size=50, hidden_size=16, num_layers=4, num_heads=2,
    ...                                intermediate_size=32, max_position_embeddings=16))
    >>> build_student(teacher).model_config.num_layers
    2
    >>> narrow = build_student(teacher, init="random", shape=StudentConfig(hidden_size=8, num_heads=2))
    >>> narrow.model_config.hidden_size, narrow.model_config.intermediate_size
    (8, 16)
    """
    if init not in STUDENT_INITS:
        raise ConfigError(f"distill.student_init: got {init!r}; accepted: {' | '.join(map(repr, STUDENT_INITS))}")
    n = teacher.model_config.num_layers
    if layers is not None:
        layers = check_student_layers(layers, n)
    if dropout is not None:
        shape = dataclasses.replace(shape or StudentConfig(), dropout=dropout)
    config = student_model_config(teacher.model_config, shape, layers)
    if init == "teacher" and same_width(config, teacher.model_config):
        if layers is None:
            if config.num_layers > n:
                raise ConfigError(f"student.num_layers: {config.num_layers} is deeper than the teacher ({n}); "
                                  "a copied student takes teacher layers: use distill.student_init 'random'")
            layers = copied_layers(n, config.num_layers)
    if init == "random" and seed is not None:
        keras.utils.set_random_seed(seed)
    student = BertMLM(config, with_mlm_head=teacher.with_mlm_head, pooling=teacher.pooling,
                      dtype=teacher.dtype_policy, name="student")
    if init == "teacher":
        if same_width(config, teacher.model_config):
            _copy_from_teacher(student, teacher, layers)
        else:
            from keras_distil.models.narrow_init import reduce_teacher

            if sample is None:
                raise ConfigError("distill.student_init: 'teacher' for a student narrower than the teacher needs "
                                  "a sample of the training text (build_student(..., sample=batches))")
            reduce_teacher(teacher, student, sample, layers)
    return student


def student_from_teacher(teacher: BertMLM, layers=None) -> BertMLM:
    """Build a student with the teacher's width and copy the teacher's weights into it.

    ``layers``: teacher layer indices to copy, in order (default: :func:`default_student_layers`).
    Everything else (embeddings, their LayerNorm, the pooler, the MLM head) is copied whole. The student
    keeps the teacher's head presence and sentence pooling. :func:`build_student` also makes narrower or
    randomly initialised students.

    Args:
      teacher: the teacher :class:`BertMLM` (``load_teacher(path).model``).
      layers: teacher layer indices (0-based) the student's blocks copy, in order; None: every other one.

    Example:
    >>> import numpy as np
    >>> import keras_distil as kd
    >>> teacher = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=4, num_heads=2,
    ...                                   intermediate_size=32))
    >>> student = kd.student_from_teacher(teacher, layers=[0, 3])
    >>> student.model_config.num_layers, student.model_config.hidden_size
    (2, 16)
    >>> np.array_equal(student.transformer_layers[1].get_weights()[0], teacher.transformer_layers[3].get_weights()[0])
    True
    """
    return build_student(teacher, layers, "teacher")


def _copy_from_teacher(student: BertMLM, teacher: BertMLM, layers: list[int]) -> None:
    src, dst = teacher.backbone, student.backbone
    for name in ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm",
                 "pooled_dense"):
        _copy(getattr(dst, name), getattr(src, name))
    for dst_block, i in zip(dst.transformer_layers, layers):
        _copy(dst_block, src.transformer_layers[i])
    if teacher.mlm_head is not None:
        _copy(student.mlm_head, teacher.mlm_head)
