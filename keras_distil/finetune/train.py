"""Training and evaluating classifiers: fine-tuning with ``model.fit``, task distillation, top-1 accuracy."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_distil.evaluation.forward import CompiledForward
from keras_distil.finetune.classifier import TextClassifier
from keras_distil.finetune.task_distiller import TaskDistiller


def _optimizer(learning_rate: float, steps: int, warmup_prop: float = 0.1):
    """AdamW with a linear warm-up to ``learning_rate`` over 10 % of ``steps``, then cosine decay to 0
    (Keras' own schedule, so a saved classifier's optimizer serialises)."""
    warmup = max(int(warmup_prop * steps), 1)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(steps - warmup, 1), alpha=0.0,
                                                      warmup_target=learning_rate, warmup_steps=warmup)
    return keras.optimizers.AdamW(schedule, weight_decay=0.01)


def finetune_classifier(classifier: TextClassifier, train: tf.data.Dataset, epochs: int = 3,
                        learning_rate: float = 5e-5, validation: tf.data.Dataset | None = None, verbose="auto"):
    """Fit ``classifier`` on ``(inputs, label)`` batches with sparse cross-entropy; returns the History."""
    steps = epochs * int(train.cardinality())
    classifier.compile(optimizer=_optimizer(learning_rate, steps),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return classifier.fit(train, epochs=epochs, validation_data=validation, verbose=verbose)


def distill_classifier(teacher: TextClassifier, student: TextClassifier, train: tf.data.Dataset, epochs: int = 3,
                       learning_rate: float = 5e-5, temperature: float = 2.0, alpha_soft: float = 0.5,
                       alpha_hard: float = 0.5, verbose="auto"):
    """Task-specific distillation of ``teacher``'s logits into ``student``; returns the History."""
    distiller = TaskDistiller(teacher, student, temperature, alpha_soft, alpha_hard)
    distiller.compile(optimizer=_optimizer(learning_rate, epochs * int(train.cardinality())))
    return distiller.fit(train, epochs=epochs, verbose=verbose)


def accuracy(classifier, dataset: tf.data.Dataset) -> float:
    """Top-1 accuracy of ``classifier`` on ``(inputs, label)`` batches."""
    correct = total = 0
    predict = CompiledForward(classifier)  # one trace for every batch shape, no retracing warning
    for inputs, labels in dataset:
        predictions = tf.argmax(predict(inputs), axis=-1, output_type=tf.int32)
        correct += int(tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.int32)))
        total += int(tf.size(labels))
    return correct / total if total else float("nan")
