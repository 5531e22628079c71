"""One optimizer step under any strategy: ``strategy.run`` over micro-batches, then one update.

Why a custom step instead of ``model.fit``: MultiWorkerMirroredStrategy + ``fit`` is broken in Keras
3.15 (STACK-NOTES), Keras' clipping happens before its cross-replica sum, and Keras' gradient
accumulation averages micro-batch means. This step uses the Distiller's own loss code
(``Distiller.compute_gradients``) and is exact by construction:

1. the weight totals (real tokens, used prediction slots) of all ``k`` micro-batches on all replicas are
   summed first (one all-reduce of two scalars);
2. each micro-batch's gradient is that of its local weighted sum divided by those totals, so their sum
   over micro-batches and replicas is the gradient of the whole effective batch on one device;
3. the gradients are summed over replicas here (one all-reduce), their global norm logged, and the
   optimizer clips that global gradient and applies it (its own all-reduce is off: optim.py).

The ``k`` micro-batches are unrolled in the traced graph (bucketed batches differ in length, so they
cannot be stacked into a loop); trace time grows with ``k``.
"""

from __future__ import annotations

import tensorflow as tf

from keras_distil.training.optim import loss_scale, use_presummed_gradients


def _dense(grad):
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _add(a, b):
    return b if a is None else tf.nest.map_structure(tf.add, a, b)


def make_train_step(model, strategy: tf.distribute.Strategy, micro_batches: int = 1, jit_compile: bool = False,
                    element_spec=None):
    """A ``tf.function(*batches) -> logs`` doing one optimizer step on ``micro_batches`` distributed batches.

    ``model``: a compiled Distiller / Pretrainer built under ``strategy.scope()``. ``element_spec``: the
    distributed dataset's, used as input signature (one trace for every bucket length: workers must
    trace the same functions in the same order, or their collectives would not match).
    Logs (float32 scalars, global values): ``loss``, each active term, ``grad_norm`` (before clipping),
    ``tokens`` and ``masked`` (the step's real tokens and prediction slots).
    """
    optimizer = model.optimizer
    use_presummed_gradients(optimizer)
    variables = model.student.trainable_variables
    replicas = strategy.num_replicas_in_sync

    def all_sum(value):
        if replicas == 1:
            return value
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)

    def replica_step(*batches):
        totals = None
        for batch in batches:
            totals = _add(totals, model.weight_sums(batch))
        totals = all_sum(totals)
        grads, logs = None, None
        for batch in batches:
            g, total, terms = model.compute_gradients(batch, totals)
            grads = _add(grads, [_dense(x) for x in g])
            logs = _add(logs, {"loss": total, **terms})
        grads, logs = all_sum((grads, logs))
        logs["grad_norm"] = tf.linalg.global_norm(grads) / loss_scale(optimizer)
        optimizer.apply(grads, variables)
        return {**logs, **totals}

    if jit_compile:
        replica_step = tf.function(replica_step, jit_compile=True)

    def step(*batches):
        per_replica = strategy.run(replica_step, args=batches)
        # Every replica holds the same global values: take this worker's first.
        return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], per_replica)

    signature = None if element_spec is None else [element_spec] * micro_batches
    return tf.function(step, input_signature=signature)
