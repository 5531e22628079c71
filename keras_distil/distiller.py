"""The Distiller: a ``keras.Model`` that trains a student against a frozen teacher.

    loss = alpha_ce  * T^2 * KL(softmax(t/T) || softmax(s/T))   soft targets
         + alpha_mlm * CE(mask_ids, s at mask_positions)       masked LM on the true tokens
         + alpha_cos * (1 - cos(h_s, h_t))                      last hidden states, padding masked out
         + alpha_mse * mean (s - t)^2                           logits (off by default)
         + alpha_hidden_mse * mean (h_s - h_t)^2                last hidden states over hidden dims and
                                                                non-pad tokens (off by default)
         + alpha_sentence_mse * mean (e_s - e_t)^2              pooled sentence embeddings, over dims and
                                                                sequences (off by default)
         + alpha_sentence_cos * (1 - cos(e_s, e_t))             pooled sentence embeddings, per sequence
                                                                (off by default)

The sentence embedding ``e = pool(h)`` is the teacher's (sentence-transformers' mean / CLS / max pooling,
normalised or not: :mod:`keras_distil.models.pooling`) unless ``distill.pooling`` says otherwise. The
hidden-state and sentence terms work with an encoder-only (head-less) teacher; they need the teacher's
width.

Input batches are dicts (see ``BATCH_KEYS``): ``token_ids`` and ``padding_mask`` [B, L] (token ids
after masking), ``mask_positions``, ``mask_ids`` and ``mask_weights`` [B, P]; ``segment_ids`` optional.
Batches of clean text (``data.masking="none"``) have no ``mask_*`` fields; only terms that need no masked
position (cosine, hidden-state MSE, sentence terms, soft targets on all tokens) can be used with them.

Distribution: each term is a weighted mean over tokens (or masked slots, or sequences), whose weights
sum to a count: the real tokens, the prediction slots in use, the non-empty sequences
(:meth:`Distiller.batch_counts`). Under a strategy every replica divides its *local* weighted sum by the
*global* count (an all-reduce of the local counts, :mod:`keras_distil.replicas`), so the gradients the
optimizer sums over replicas are exactly those of the whole batch on one device, however unevenly
padding and masks fall across replicas. With equal weights per replica this is the usual
``loss / num_replicas_in_sync``.

Gradient accumulation uses the same rule one level up: a training loop that sums the gradients of
several micro-batches passes the count totals of all of them (:meth:`Distiller.batch_counts`, summed
over micro-batches and replicas) to :meth:`Distiller.compute_gradients`, so the summed gradient is the
one of the whole effective batch, not a mean of micro-batch means (see keras_distil/training/step.py).

:class:`Pretrainer` is the same model and step with the masked-LM term alone and no teacher
(``keras-distil pretrain``: a teacher, or a same-size baseline student, trained from scratch).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_distil import losses
from keras_distil.config import ConfigError, DistillConfig
from keras_distil.layer_terms import LAYER_TERMS, LayerTerms, Projections
from keras_distil.models.pooling import pool_hidden_states, resolve_pooling
from keras_distil.replicas import global_sum, num_replicas

BATCH_KEYS = ("token_ids", "padding_mask", "mask_positions", "mask_ids", "mask_weights")
MASK_KEYS = ("mask_positions", "mask_ids", "mask_weights")  # absent from clean (unmasked) batches
COUNT_KEYS = ("tokens", "masked", "sequences")  # the keys of Distiller.batch_counts
# Each weighted by DistillConfig.alpha_<term>.
TERMS = ("ce", "mlm", "cos", "mse", "hidden_mse", "sentence_mse", "sentence_cos", *LAYER_TERMS)

# Terms that compare last hidden states: a narrower student's go through a learned projection ("last").
HIDDEN_STATE_TERMS = ("alpha_cos", "alpha_hidden_mse", "alpha_sentence_mse", "alpha_sentence_cos")


def _globally_weighted_mean(values, weights, total=None):
    """This replica's share of the global weighted mean: ``sum_local(w*v) / sum_global(w)``.

    ``total``: the global sum of the weights (a count of :meth:`Distiller.batch_counts`) when the caller
    already knows it (accumulation over micro-batches); None: the all-reduce of this batch's local weights.
    """
    weights = tf.cast(weights, tf.float32)
    local = tf.reduce_sum(tf.cast(values, tf.float32) * weights)
    if total is None:
        total = global_sum(tf.reduce_sum(weights))
    return tf.math.divide_no_nan(local, total)


@keras.saving.register_keras_serializable(package="keras_distil")
class Distiller(keras.Model):
    """Distil ``teacher`` into ``student`` with ``fit()``.

    ``teacher`` and ``student`` are models that take the batch dict and return a dict with ``hidden``
    [B, L, H] and ``logits`` (at ``mask_positions`` when present in the input, else at every
    position), as :class:`keras_distil.models.bert.BertMLM` does. The teacher is frozen and always
    runs in inference mode outside the gradient tape.

    ``compile`` takes the optimizer (and Keras' runtime options); the loss is the config's weighted terms,
    so ``loss`` and ``metrics`` raise :class:`ConfigError`. ``fit`` takes batches as
    :func:`keras_distil.build_dataset` makes them and logs ``loss`` and each active term. The trained model
    is ``distiller.student`` (:func:`keras_distil.save_student` writes it).

    Args:
      teacher: the frozen teacher, a ``BertMLM`` (``load_teacher(path).model``).
      student: the model to train, a ``BertMLM`` (e.g. :func:`keras_distil.student_from_teacher`).
      config: the objective, a :class:`DistillConfig` or its dict (None: DistilBERT's).
      projection_basis: initial weights of the learned projections of a narrower student's hidden-state
        terms (a reduction's basis; None: Keras' initialiser).
      **kwargs: ``keras.Model`` arguments (``name``).

    Example:
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_distil as kd
    >>> teacher = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2,
    ...                                   intermediate_size=32))
    >>> distiller = kd.Distiller(teacher, kd.student_from_teacher(teacher, layers=[1]), kd.DistillConfig())
    >>> distiller.compile(optimizer="adam")
    >>> batch = {"token_ids": np.array([[2, 10, 4, 12, 3, 0]] * 2), "padding_mask": np.array([[1] * 5 + [0]] * 2),
    ...          "mask_positions": np.array([[2]] * 2), "mask_ids": np.array([[11]] * 2),
    ...          "mask_weights": np.ones((2, 1), "float32")}  # what kd.build_dataset yields
    >>> history = distiller.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=2, verbose=0)
    >>> sorted(history.history)
    ['ce', 'cos', 'loss', 'mlm']
    >>> distiller.compile(optimizer="adam", loss="mse")
    Traceback (most recent call last):
    ...
    keras_distil.config.ConfigError: Distiller.compile: loss would be ignored; the loss is the DistillConfig's ...
    """

    def __init__(self, teacher, student, config: DistillConfig | dict | None = None, projection_basis=None,
                 **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = DistillConfig()
        elif isinstance(config, dict):
            config = DistillConfig.from_dict(config)
        self.teacher = teacher
        self.student = student
        self.config = config
        if teacher is not None:  # None: a Pretrainer (masked LM alone)
            self.teacher.trainable = False
        self.pooling = resolve_pooling(config, getattr(teacher, "pooling", None))
        self._check_compatible()
        self.layer_terms, self.projections = self._layer_wise_parts(projection_basis)
        self.active_terms = tuple(t for t in TERMS if getattr(config, f"alpha_{t}") > 0)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in ("loss",) + self.active_terms}
        # Both models are built at construction; marking the Distiller built lets fit() callbacks
        # (ModelCheckpoint, BackupAndRestore) and .keras saving see its weights and optimizer state.
        self.built = True

    # ---- checks -------------------------------------------------------------------------------
    def _layer_wise_parts(self, basis):
        """``(LayerTerms or None, Projections or None)``: what the layer-wise terms and a narrower student's
        hidden-state terms need (the projections map the student's width to the teacher's)."""
        t_cfg = getattr(self.teacher, "model_config", None)
        s_cfg = getattr(self.student, "model_config", None)
        if t_cfg is None or s_cfg is None:
            if self.config.uses_layers:
                raise ConfigError("distill.alpha_layer_mse/alpha_attention/alpha_value_relation/alpha_embedding_mse: "
                                  "the layer-wise terms need BertMLM teacher and student models")
            return None, None
        layer_terms = LayerTerms(self.config, t_cfg, s_cfg) if self.config.uses_layers else None
        names = list(layer_terms.projection_names) if layer_terms else []
        if t_cfg.hidden_size != s_cfg.hidden_size and any(getattr(self.config, k) > 0 for k in HIDDEN_STATE_TERMS):
            names.append("last")
        projections = Projections(names, s_cfg.hidden_size, t_cfg.hidden_size, basis,
                                                 name="projections") if names else None
        return layer_terms, projections

    @property
    def trained_variables(self) -> list:
        """What the optimizer updates: the student's trainable variables (less its MLM head when no term reads
        logits: nothing would reach it, and weight decay alone would shrink it), then the projections'."""
        variables = self.student.trainable_variables
        head = getattr(self.student, "mlm_head", None)
        if head is not None and not self.config.uses_logits:
            skipped = {id(v) for v in head.trainable_variables}
            variables = [v for v in variables if id(v) not in skipped]
        extra = self.projections.trainable_variables if self.projections is not None else []
        return variables + extra

    def _check_compatible(self) -> None:
        cfg = self.config
        t_cfg = getattr(self.teacher, "model_config", None)
        s_cfg = getattr(self.student, "model_config", None)
        if t_cfg is not None and s_cfg is not None:
            if t_cfg.vocab_size != s_cfg.vocab_size:
                raise ConfigError(
                    f"model.vocab_size: teacher has {t_cfg.vocab_size} tokens, student {s_cfg.vocab_size}; "
                    "they must share the vocabulary"
                )
        for who, model, needed in (("teacher", self.teacher, cfg.needs_teacher_logits),
                                   ("student", self.student, cfg.needs_teacher_logits or cfg.alpha_mlm > 0)):
            if needed and getattr(model, "with_mlm_head", True) is False:
                raise ConfigError(
                    f"distill.alpha_ce/alpha_mlm/alpha_mse: the {who} has no MLM head (an encoder-only "
                    "checkpoint), so only alpha_cos and alpha_hidden_mse can be used; set the others to 0"
                )

    # ---- Keras plumbing -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                **kwargs):
        """Keras' ``compile`` for the optimizer and runtime options. The objective is the config's terms and
        the logged metrics are those terms, so ``loss``, ``loss_weights``, ``metrics`` and ``weighted_metrics``
        would be ignored: they raise ``ConfigError`` naming the config knobs that do the job instead."""
        given = [name for name, value in (("loss", loss), ("loss_weights", loss_weights), ("metrics", metrics),
                                          ("weighted_metrics", weighted_metrics)) if value is not None]
        if given:
            raise ConfigError(f"{type(self).__name__}.compile: {', '.join(given)} would be ignored; the loss is the "
                              "DistillConfig's weighted terms (distill.alpha_*), and each term is logged as a metric")
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """What ``keras.Model.compile_from_config`` does when a model is loaded (Keras skips it for a subclass
        that overrides ``compile``): compile with the saved optimizer and build its variables."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def call(self, inputs, training=False):
        """The student's outputs: a Distiller can be called (and exported) like its student."""
        return self.student(inputs, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(teacher, student, **config)

    # ---- the objective ------------------------------------------------------------------------
    @property
    def _logits_everywhere(self) -> bool:
        """Soft targets on all non-pad tokens need the vocabulary projection at every position."""
        return self.config.ce_positions == "all" and self.config.needs_teacher_logits

    def _check_batch(self, batch) -> None:
        """Terms at masked positions need the ``mask_*`` fields (a trace-time check, so it costs nothing)."""
        missing = [k for k in MASK_KEYS if k not in batch]
        needs = self.config.masked_position_terms
        if missing and needs:
            raise ConfigError(f"distill.{needs[0]}: the term needs masked positions, but the batches have no "
                              f"{', '.join(missing)} (clean text: data.masking='none'); mask the batches "
                              "(data.masking='mlm') or turn the term off")

    def _model_inputs(self, batch):
        self._check_batch(batch)
        inputs = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        if "segment_ids" in batch:
            inputs["segment_ids"] = batch["segment_ids"]
        if not self._logits_everywhere and "mask_positions" in batch:
            inputs["mask_positions"] = batch["mask_positions"]
        return inputs

    def teacher_outputs(self, inputs):
        if self.teacher is None:
            return {}
        out = self.teacher(inputs, training=False, return_logits=self.config.needs_teacher_logits,
                           **self._layers_kwarg)
        return tf.nest.map_structure(tf.stop_gradient, out)

    @property
    def _layers_kwarg(self) -> dict:
        """Every layer's output only when a layer-wise term reads them (the default step does no such work)."""
        return {"return_layers": True} if self.layer_terms is not None else {}

    def student_outputs(self, inputs, training):
        """The student's forward; the vocabulary projection only when a term reads the logits."""
        return self.student(inputs, training=training, return_logits=self.config.uses_logits, **self._layers_kwarg)

    def _student_hidden(self, student_out):
        """The student's last hidden states in the teacher's width (through the "last" projection if narrower)."""
        hidden = student_out["hidden"]
        if self.projections is not None and "last" in self.projections.names:
            hidden = self.projections.project("last", hidden)
        return hidden

    @staticmethod
    def batch_counts(batch) -> dict:
        """This replica's counts that the terms are normalised by, float32 scalars: ``tokens`` (real
        tokens), ``masked`` (prediction slots in use, the sum of ``mask_weights``; 0 for clean batches) and
        ``sequences`` (rows with at least one real token). The keys are :data:`COUNT_KEYS`."""
        padding = tf.cast(batch["padding_mask"], tf.float32)
        masked = tf.reduce_sum(tf.cast(batch["mask_weights"], tf.float32)) if "mask_weights" in batch \
            else tf.constant(0.0)
        return {"tokens": tf.reduce_sum(padding), "masked": masked,
                "sequences": tf.reduce_sum(tf.cast(tf.reduce_max(padding, axis=1) > 0, tf.float32))}

    def compute_terms(self, batch, student_out, teacher_out, totals: dict | None = None) -> dict:
        """Each active term as this replica's share of its global weighted mean (float32 scalars).

        ``totals``: the global counts to normalise by (:meth:`batch_counts` summed over replicas and
        micro-batches); None: this batch's counts, all-reduced over replicas.
        """
        cfg = self.config
        totals = totals or {}
        padding = tf.cast(batch["padding_mask"], tf.float32)
        mask_weights = tf.cast(batch["mask_weights"], tf.float32) if "mask_weights" in batch else None
        soft_weights, soft_key = (padding, "tokens") if self._logits_everywhere else (mask_weights, "masked")
        terms = {}
        # DistilBERT's two vocabulary terms on the same logits (the masked positions): one fused pass (losses.py)
        fused = cfg.alpha_ce > 0 and cfg.alpha_mlm > 0 and not self._logits_everywhere
        if fused:
            kl, ce = losses.soft_targets_and_mlm_per_token(student_out["logits"], teacher_out["logits"],
                                                           batch["mask_ids"], cfg.temperature)
            terms["ce"] = _globally_weighted_mean(kl, soft_weights, totals.get(soft_key))
            terms["mlm"] = _globally_weighted_mean(ce, mask_weights, totals.get("masked"))
        elif cfg.alpha_ce > 0:
            kl = losses.soft_target_kl_per_token(student_out["logits"], teacher_out["logits"], cfg.temperature)
            terms["ce"] = _globally_weighted_mean(kl, soft_weights, totals.get(soft_key))
        if cfg.alpha_mlm > 0 and not fused:
            logits = student_out["logits"]
            if self._logits_everywhere:
                logits = tf.gather(logits, tf.cast(batch["mask_positions"], tf.int32), batch_dims=1)
            ce = losses.mlm_cross_entropy_per_token(batch["mask_ids"], logits)
            terms["mlm"] = _globally_weighted_mean(ce, mask_weights, totals.get("masked"))
        student_hidden = self._student_hidden(student_out)
        if cfg.alpha_cos > 0:
            dist = losses.cosine_distance_per_token(student_hidden, teacher_out["hidden"])
            terms["cos"] = _globally_weighted_mean(dist, padding, totals.get("tokens"))
        if cfg.alpha_mse > 0:
            mse = losses.mse_per_token(student_out["logits"], teacher_out["logits"])
            terms["mse"] = _globally_weighted_mean(mse, soft_weights, totals.get(soft_key))
        if cfg.alpha_hidden_mse > 0:
            mse = losses.mse_per_token(student_hidden, teacher_out["hidden"])
            terms["hidden_mse"] = _globally_weighted_mean(mse, padding, totals.get("tokens"))
        if cfg.uses_sentence_embeddings:
            student_emb = pool_hidden_states(student_hidden, padding, self.pooling)
            teacher_emb = pool_hidden_states(teacher_out["hidden"], padding, self.pooling)
            sequences = tf.cast(tf.reduce_max(padding, axis=1) > 0, tf.float32)
            if cfg.alpha_sentence_mse > 0:
                mse = losses.mse_per_token(student_emb, teacher_emb)
                terms["sentence_mse"] = _globally_weighted_mean(mse, sequences, totals.get("sequences"))
            if cfg.alpha_sentence_cos > 0:
                dist = losses.cosine_distance_per_token(student_emb, teacher_emb)
                terms["sentence_cos"] = _globally_weighted_mean(dist, sequences, totals.get("sequences"))
        if self.layer_terms is not None:
            per_token = self.layer_terms.per_token(self.student, self.teacher, student_out, teacher_out, padding,
                                                   self.projections)
            for name, values in per_token.items():
                terms[name] = _globally_weighted_mean(values, padding, totals.get("tokens"))
        return terms

    def total_loss(self, terms: dict):
        return tf.add_n([getattr(self.config, f"alpha_{name}") * value for name, value in terms.items()])

    def _update_trackers(self, total, terms) -> None:
        # Each replica holds its share of the global value; Keras sums the metric updates over
        # replicas and counts one update per replica, so scale by the replica count.
        scale = float(num_replicas())
        self._trackers["loss"].update_state(total * scale)
        for name, value in terms.items():
            self._trackers[name].update_state(value * scale)

    def compute_gradients(self, batch, totals: dict | None = None):
        """``(grads, total, terms)`` of this replica's share of the loss on ``batch``; the gradients are of
        the loss scaled by the optimizer (``mixed_float16``), for :attr:`trained_variables`.
        ``totals``: see :meth:`compute_terms`."""
        inputs = self._model_inputs(batch)
        teacher_out = self.teacher_outputs(inputs)
        variables = self.trained_variables
        with tf.GradientTape() as tape:
            student_out = self.student_outputs(inputs, training=True)
            terms = self.compute_terms(batch, student_out, teacher_out, totals)
            total = self.total_loss(terms)
            scaled = self.optimizer.scale_loss(total)  # loss scaling under mixed_float16, else identity
        return tape.gradient(scaled, variables), total, terms

    def train_step(self, data):
        batch = data[0] if isinstance(data, tuple) else data
        grads, total, terms = self.compute_gradients(batch)
        self.optimizer.apply(grads, self.trained_variables)
        self._update_trackers(total, terms)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        batch = data[0] if isinstance(data, tuple) else data
        inputs = self._model_inputs(batch)
        teacher_out = self.teacher_outputs(inputs)
        student_out = self.student_outputs(inputs, training=False)
        terms = self.compute_terms(batch, student_out, teacher_out)
        self._update_trackers(self.total_loss(terms), terms)
        return {m.name: m.result() for m in self.metrics}


@keras.saving.register_keras_serializable(package="keras_distil")
class Pretrainer(Distiller):
    """Masked-LM training of one model from scratch (a teacher, or a same-size baseline student).

    The Distiller with no teacher and the MLM term alone (weight 1): same batches, same normalisation
    over replicas and micro-batches, same step, same runtime. ``pretrainer.student`` is the model.
    """

    def __init__(self, model, **kwargs):
        kwargs.pop("config", None)
        kwargs.pop("teacher", None)
        config = DistillConfig(alpha_ce=0.0, alpha_mlm=1.0, alpha_cos=0.0, alpha_mse=0.0)
        super().__init__(None, model, config, **kwargs)

    @property
    def model(self):
        return self.student

    def get_config(self):
        config = super().get_config()
        for key in ("teacher", "config"):
            config.pop(key)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("student")), **config)
