"""Task-specific distillation (the DistilBERT paper's second step): a fine-tuned teacher classifier's
logits distilled into a student classifier with

    loss = alpha_soft * T^2 * KL(softmax(t/T) || softmax(s/T)) + alpha_hard * CE(label, s)

(means over the batch; the functions of keras_distil.losses)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_distil import losses
from keras_distil.config import ConfigError
from keras_distil.replicas import num_replicas


def task_distillation_loss(student_logits, teacher_logits, labels, temperature: float = 2.0,
                           alpha_soft: float = 0.5, alpha_hard: float = 0.5) -> tuple[tf.Tensor, dict]:
    """``alpha_soft * T^2 KL(teacher_T || student_T) + alpha_hard * CE(labels, student)``, batch means;
    returns the total and the two terms."""
    weights = tf.ones(tf.shape(labels)[:1], tf.float32)
    soft = losses.soft_target_cross_entropy(student_logits, teacher_logits, temperature, weights)
    hard = losses.mlm_cross_entropy(labels, student_logits, weights)
    return alpha_soft * soft + alpha_hard * hard, {"soft": soft, "hard": hard}


class TaskDistiller(keras.Model):
    """Train ``student`` (a TextClassifier) on ``(inputs, label)`` batches against a frozen ``teacher``."""

    def __init__(self, teacher, student, temperature: float = 2.0, alpha_soft: float = 0.5,
                 alpha_hard: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ConfigError(f"temperature: got {temperature!r}; accepted: a number > 0")
        if alpha_soft < 0 or alpha_hard < 0 or alpha_soft + alpha_hard == 0:
            raise ConfigError(f"alpha_soft/alpha_hard: got {alpha_soft!r}/{alpha_hard!r}; accepted: numbers >= 0, "
                              "not both 0")
        if teacher.num_classes != student.num_classes:
            raise ConfigError(f"the teacher has {teacher.num_classes} classes, the student {student.num_classes}")
        sizes = [getattr(getattr(m.encoder, "model_config", None), "vocab_size", None) for m in (teacher, student)]
        if None not in sizes and sizes[0] != sizes[1]:
            raise ConfigError(f"model.vocab_size: the teacher has {sizes[0]} tokens, the student {sizes[1]}; they "
                              "must share the vocabulary (both read the same token ids)")
        self.teacher, self.student = teacher, student
        self.teacher.trainable = False
        self.temperature, self.alpha_soft, self.alpha_hard = float(temperature), float(alpha_soft), float(alpha_hard)
        self._trackers = {n: keras.metrics.Mean(name=n) for n in ("loss", "soft", "hard")}
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return [*self._trackers.values(), self._accuracy]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def train_step(self, data):
        inputs, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        teacher_logits = tf.stop_gradient(self.teacher(inputs, training=False))
        variables = self.student.trainable_variables
        replicas = num_replicas()  # a custom loss is not scaled by Keras
        with tf.GradientTape() as tape:
            logits = self.student(inputs, training=True)
            total, terms = task_distillation_loss(logits, teacher_logits, labels, self.temperature,
                                                  self.alpha_soft, self.alpha_hard)
            scaled = self.optimizer.scale_loss(total / replicas)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        for name, value in {"loss": total, **terms}.items():
            self._trackers[name].update_state(value)
        self._accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}
