"""A student of the teacher's width and fewer layers, initialised by copying teacher layers.

DistilBERT's initialisation (Sanh et al. 2019, section 3): take one layer out of two, since the
teacher and the student share the hidden size. Embeddings (word, position, token type and their
LayerNorm), the chosen transformer blocks and the MLM head are copied; the student is then an exact
sub-network of the teacher.

:func:`build_student` also makes the paper's "random init" ablation: the same shape with fresh weights
(``distill.student_init = "random"``).
"""

from __future__ import annotations

from typing import get_args, get_type_hints

import keras

from keras_distil.config import ConfigError, DistillConfig, ModelConfig
from keras_distil.models.bert import BertMLM


def default_student_layers(num_teacher_layers: int) -> list[int]:
    """Every other teacher layer, starting at 0: 12 -> [0, 2, 4, 6, 8, 10]."""
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


def student_config(teacher_config: ModelConfig, num_layers: int) -> ModelConfig:
    """The teacher's shape with ``num_layers`` blocks."""
    return teacher_config.replace(num_layers=num_layers)


def _copy(dst_layer, src_layer) -> None:
    dst_layer.set_weights(src_layer.get_weights())


STUDENT_INITS = get_args(get_type_hints(DistillConfig)["student_init"])  # ("teacher", "random")


def build_student(teacher: BertMLM, layers=None, init: str = "teacher", seed: int | None = None,
                  dropout: float | None = None) -> BertMLM:
    """A student of the teacher's width, ``len(layers)`` blocks deep, with the teacher's head presence.

    ``layers``: teacher layer indices, in order (default: :func:`default_student_layers`, half the depth).
    ``init``: ``"teacher"`` copies those layers, the embeddings, the pooler and the MLM head from the
    teacher (:func:`student_from_teacher`); ``"random"`` keeps fresh random weights (BERT's initialisers).
    ``seed``: with ``"random"``, reseed Keras' global RNG first (``keras.utils.set_random_seed``), so the
    weights depend on the seed and the shape alone, not on how many draws loading the teacher consumed;
    None: draw from the global RNG as it stands.
    ``dropout``: the student's dropout rate while training (None: the teacher's).
    """
    if init not in STUDENT_INITS:
        raise ConfigError(f"distill.student_init: got {init!r}; accepted: {' | '.join(map(repr, STUDENT_INITS))}")
    n = teacher.model_config.num_layers
    layers = default_student_layers(n) if layers is None else check_student_layers(layers, n)
    if init == "random" and seed is not None:
        keras.utils.set_random_seed(seed)
    config = student_config(teacher.model_config, len(layers))
    if dropout is not None:
        config = config.replace(dropout=dropout)
    student = BertMLM(
        config,
        with_mlm_head=teacher.with_mlm_head,
        pooling=teacher.pooling,
        dtype=teacher.dtype_policy,
        name="student",
    )
    if init == "teacher":
        _copy_from_teacher(student, teacher, layers)
    return student


def student_from_teacher(teacher: BertMLM, layers=None) -> BertMLM:
    """Build a student with the teacher's width and copy the teacher's weights into it.

    ``layers``: teacher layer indices to copy, in order (default: :func:`default_student_layers`).
    Everything else (embeddings, their LayerNorm, the pooler, the MLM head) is copied whole.
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
