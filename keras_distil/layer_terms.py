"""The layer-wise distillation terms (TinyBERT, MiniLM) and the projections that let them cross widths.

Four terms, each weighted by its ``distill.alpha_*`` and off at 0 (config.py documents each):

* ``layer_mse`` (TinyBERT): the MSE between student block ``j``'s output and teacher block
  ``layer_map[j]``'s, the student's side through a learned linear projection when the widths differ;
* ``embedding_mse`` (TinyBERT): the same for the embedding layers' outputs;
* ``attention`` (MiniLM): ``KL(teacher || student)`` between the self-attention distributions of each
  query token over the keys, per head when both models have the same head count, else between the
  head-averaged maps (MiniLM's per-head form needs equal counts; averaging keeps the term defined for any
  pair of shapes);
* ``value_relation`` (MiniLM): the same KL between ``softmax(V V^T / sqrt(d))``, ``V`` split into
  ``distill.relation_heads`` heads (the teacher's head count by default), which works across widths.

The attention maps and values are recomputed from each block's input with its own query/key/value
weights (:meth:`BertMLM.attention_projections`) for the compared blocks only (the last by default), so a
model returns only its layers' hidden states. Every term is a per-token quantity averaged over the
compared pairs, then a weighted mean over the real tokens with the global token count, like the
last-layer terms: 1 device and 2 replicas agree, and gradient accumulation is exact.

The projections (:class:`Projections`) belong to the :class:`~keras_distil.distiller.Distiller`: they
train and are checkpointed with the student but are not part of it, so no export carries them.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_distil import losses
from keras_distil.config import ConfigError, DistillConfig, ModelConfig

LAYER_TERMS = ("layer_mse", "attention", "value_relation", "embedding_mse")


def uniform_layer_map(num_student_layers: int, num_teacher_layers: int) -> list[int]:
    """TinyBERT's uniform map: student block ``i`` -> teacher block ``(i + 1) * n_t // n_s - 1`` (0-based).

    Example:
    >>> uniform_layer_map(3, 6), uniform_layer_map(4, 12)
    ([1, 3, 5], [2, 5, 8, 11])
    """
    return [(i + 1) * num_teacher_layers // num_student_layers - 1 for i in range(num_student_layers)]


def resolve_layer_map(config: DistillConfig, num_student_layers: int, num_teacher_layers: int) -> list[int]:
    """``distill.layer_map``, or :func:`uniform_layer_map` when null; a wrong one raises ``ConfigError``."""
    if config.layer_map is None:
        return uniform_layer_map(num_student_layers, num_teacher_layers)
    layer_map = list(config.layer_map)
    if len(layer_map) != num_student_layers:
        raise ConfigError(f"distill.layer_map: {layer_map} has {len(layer_map)} entries; the student has "
                          f"{num_student_layers} layers: give one teacher layer per student layer")
    bad = [i for i in layer_map if not 0 <= i < num_teacher_layers]
    if bad:
        raise ConfigError(f"distill.layer_map: {bad} out of range; the teacher's layers are 0..{num_teacher_layers - 1}")
    return layer_map


def resolve_relation_heads(config: DistillConfig, teacher: ModelConfig, student: ModelConfig) -> int:
    """``distill.relation_heads`` (null: the teacher's head count), checked to divide both widths."""
    heads = config.relation_heads or teacher.num_heads
    for who, cfg in (("teacher", teacher), ("student", student)):
        if cfg.hidden_size % heads:
            raise ConfigError(f"distill.relation_heads: {heads} does not divide the {who}'s width "
                              f"{cfg.hidden_size}; set it to a common divisor of {teacher.hidden_size} and "
                              f"{student.hidden_size}")
    return heads


@keras.saving.register_keras_serializable(package="keras_distil")
class Projections(keras.layers.Layer):
    """Learned linear maps from the student's width to the teacher's, one per compared pair (TinyBERT's W).

    Args:
      names: one map per name (``"last"``, ``"embeddings"``, ``"layer_0"``, ...).
      student_width: the student's hidden size.
      teacher_width: the teacher's hidden size.
      basis: None, or the basis ``P`` [teacher_width, student_width] a reduced student was built with
        (:func:`keras_distil.models.narrow_init.reduce_teacher`): every map then starts at ``P^T``, the
        reduction's own way back to the teacher's coordinates, instead of at random.

    Example:
    >>> p = Projections(["last"], 8, 16)
    >>> tuple(p.project("last", tf.zeros((2, 3, 8))).shape)
    (2, 3, 16)
    """

    def __init__(self, names, student_width: int, teacher_width: int, basis=None, **kwargs):
        super().__init__(**kwargs)
        self.names = list(names)
        self.student_width = student_width
        self.teacher_width = teacher_width
        for name in self.names:
            dense = keras.layers.Dense(teacher_width, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=0.02), dtype=self.dtype_policy, name=f"project_{name}")
            dense.build((None, student_width))
            if basis is not None:
                dense.kernel.assign(tf.cast(tf.transpose(basis), dense.kernel.dtype))
            # One attribute per map: tf.train.Checkpoint finds a layer's sub-layers through its attributes
            # (it sees none inside a dict attribute).
            setattr(self, f"project_{name}", dense)
        self.built = True

    @property
    def maps(self) -> dict:
        """Name -> the ``Dense`` layer of that map."""
        return {name: getattr(self, f"project_{name}") for name in self.names}

    def project(self, name: str, values):
        return getattr(self, f"project_{name}")(values)

    def get_config(self):
        return {**super().get_config(), "names": self.names, "student_width": self.student_width,
                "teacher_width": self.teacher_width}


class LayerTerms:
    """The active layer-wise terms of ``config`` for a teacher and a student of these shapes.

    Args:
      config: the objective.
      teacher: the teacher's shape.
      student: the student's shape.

    Example:
    >>> t = ModelConfig(hidden_size=16, num_layers=4, num_heads=2, intermediate_size=32)
    >>> terms = LayerTerms(DistillConfig(alpha_layer_mse=1.0), t, t.replace(hidden_size=8, num_layers=2))
    >>> terms.active, terms.layer_map, terms.projection_names
    (('layer_mse',), [1, 3], ['layer_0', 'layer_1'])
    """

    def __init__(self, config: DistillConfig, teacher: ModelConfig, student: ModelConfig):
        self.config = config
        self.active = tuple(t for t in LAYER_TERMS if getattr(config, f"alpha_{t}") > 0)
        self.layer_map = resolve_layer_map(config, student.num_layers, teacher.num_layers)
        if config.relation_layers == "last":
            self.relation_pairs = [(student.num_layers - 1, teacher.num_layers - 1)]
        else:
            self.relation_pairs = list(enumerate(self.layer_map))
        self.relation_heads = resolve_relation_heads(config, teacher, student) \
            if config.alpha_value_relation > 0 else None
        self.same_heads = teacher.num_heads == student.num_heads
        narrower = teacher.hidden_size != student.hidden_size
        names = []
        if narrower and config.alpha_embedding_mse > 0:
            names.append("embeddings")
        if narrower and config.alpha_layer_mse > 0:
            names += [f"layer_{j}" for j in range(student.num_layers)]
        self.projection_names = names

    def _project(self, projections, name, values):
        return values if projections is None or name not in projections.names else projections.project(name, values)

    def _relation_log_probs(self, model, layers, index, padding, term):
        """Log-probabilities [B, h, L, L] of block ``index``'s attention or value relation."""
        queries, keys, values = model.attention_projections(index, layers[index])
        if term == "attention":
            log_probs = losses.masked_log_softmax(losses.attention_scores(queries, keys), padding)
            return log_probs if self.same_heads else losses.head_average_log_probs(log_probs)
        return losses.masked_log_softmax(losses.self_relation_scores(values, self.relation_heads), padding)

    def per_token(self, student, teacher, student_out, teacher_out, padding, projections) -> dict:
        """Each active term's per-token value [B, L], before the weighted mean over real tokens."""
        s_layers, t_layers = student_out["layers"], teacher_out["layers"]
        values = {}
        if "embedding_mse" in self.active:
            projected = self._project(projections, "embeddings", s_layers[0])
            values["embedding_mse"] = losses.mse_per_token(projected, t_layers[0])
        if "layer_mse" in self.active:
            per_pair = [losses.mse_per_token(self._project(projections, f"layer_{j}", s_layers[j + 1]),
                                             t_layers[i + 1]) for j, i in enumerate(self.layer_map)]
            values["layer_mse"] = tf.add_n(per_pair) / len(per_pair)
        for term in ("attention", "value_relation"):
            if term in self.active:
                per_pair = [losses.relation_kl_per_token(
                    self._relation_log_probs(student, s_layers, j, padding, term),
                    tf.stop_gradient(self._relation_log_probs(teacher, t_layers, i, padding, term)))
                    for j, i in self.relation_pairs]
                values[term] = tf.add_n(per_pair) / len(per_pair)
        return values
