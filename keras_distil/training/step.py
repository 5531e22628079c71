"""One optimizer step under any strategy: ``k`` micro-batches in, one update out.

Why a custom step instead of ``model.fit``: MultiWorkerMirroredStrategy + ``fit`` is broken in Keras
3.15 (docs/runtime.md), Keras' clipping happens before its cross-replica sum, and Keras' gradient
accumulation averages micro-batch means. This step uses the Distiller's own loss code
(``Distiller.compute_gradients``) and is exact by construction:

1. the counts the terms are normalised by (real tokens, used prediction slots, non-empty sequences:
   ``Distiller.batch_counts``) of all ``k`` micro-batches on all replicas are summed first (one all-reduce
   of three scalars);
2. each micro-batch's gradient is that of its local weighted sum divided by those totals, so their sum
   over micro-batches and replicas is the gradient of the whole effective batch on one device;
3. the gradients are summed over replicas here (one all-reduce), their global norm logged, and the
   optimizer clips that global gradient and applies it (its own all-reduce is off: optim.py).

``k == 1`` is one fused ``tf.function``. For ``k > 1`` each micro-batch is a separate call of one traced
function that adds its gradients into per-replica accumulators (``ON_READ`` variables: one copy per
replica, never synchronised until the update), then one call all-reduces them and applies the update.
So the graph, its trace time and the activation memory do not grow with ``k``: the paper's recipe
accumulates ~4K sequences per update (``k`` of 100 and more), which an unrolled graph could neither
trace in reasonable time nor run without holding many micro-batches' activations at once.
"""

from __future__ import annotations

import tensorflow as tf

from keras_distil.distiller import COUNT_KEYS
from keras_distil.replicas import global_sum
from keras_distil.training.optim import loss_scale, use_presummed_gradients


def _dense(grad, variable):
    """A dense gradient; zeros for a variable no active term reaches (an MLM head under embedding-only terms)."""
    if grad is None:
        return tf.zeros_like(variable)
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _add(a, b):
    return b if a is None else tf.nest.map_structure(tf.add, a, b)


class _StepParts:
    """What the fused and the accumulating steps share: the count totals, the micro-step and the update."""

    def __init__(self, model, strategy):
        self.model = model
        self.strategy = strategy
        self.optimizer = model.optimizer
        use_presummed_gradients(self.optimizer)
        self.variables = model.trained_variables
        self.log_keys = ("loss", *model.active_terms)

    def count_totals(self, batches):
        """The global counts of ``batches`` (this replica's micro-batches' ``batch_counts``, all-reduced)."""
        totals = None
        for batch in batches:
            totals = _add(totals, self.model.batch_counts(batch))
        return global_sum(totals)

    def micro_step(self, batch, totals):
        """``(dense grads, logs)`` of this replica's share of the loss on ``batch``."""
        grads, total, terms = self.model.compute_gradients(batch, totals)
        return [_dense(g, v) for g, v in zip(grads, self.variables)], {"loss": total, **terms}

    def update(self, grads, logs, totals):
        """All-reduce the summed gradients and logs, apply the update; the step's global logs."""
        grads, logs = global_sum((grads, logs))
        logs["grad_norm"] = tf.linalg.global_norm(grads) / loss_scale(self.optimizer)
        self.optimizer.apply(grads, self.variables)
        return {**logs, **totals}

    def compiled(self, replica_fn, jit_compile: bool, signature):
        """``replica_fn`` run on every replica inside one ``tf.function``; this worker's first result."""
        if jit_compile:
            replica_fn = tf.function(replica_fn, jit_compile=True)

        def run(*args):
            per_replica = self.strategy.run(replica_fn, args=args)
            # Every replica holds the same global values: take this worker's first.
            return tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], per_replica)

        return tf.function(run, input_signature=signature)


def _fused_step(parts: _StepParts, jit_compile: bool, element_spec):
    def replica_step(batch):
        totals = parts.count_totals([batch])
        grads, logs = parts.micro_step(batch, totals)
        return parts.update(grads, logs, totals)

    return parts.compiled(replica_step, jit_compile, None if element_spec is None else [element_spec])


class _AccumulatingStep:
    """``k > 1``: totals of all micro-batches, then one traced call per micro-batch, then the update."""

    def __init__(self, parts: _StepParts, micro_batches: int, jit_compile: bool, element_spec):
        self.parts = parts
        self.micro_batches = micro_batches

        def local(name, value):
            return tf.Variable(value, trainable=False, name=f"accumulated_{name}",
                               synchronization=tf.VariableSynchronization.ON_READ,
                               aggregation=tf.VariableAggregation.SUM)

        with parts.strategy.scope():
            self.grads = [local("grad", tf.zeros(v.shape, v.dtype)) for v in parts.variables]
            self.logs = {k: local(k, 0.0) for k in parts.log_keys}
            self.totals = {k: local(k, 0.0) for k in COUNT_KEYS}
        one = None if element_spec is None else [element_spec]
        every = None if element_spec is None else [element_spec] * micro_batches
        self._count = parts.compiled(self._replica_count, False, every)
        self._accumulate = parts.compiled(self._replica_accumulate, jit_compile, one)
        self._apply = parts.compiled(self._replica_apply, jit_compile, [])

    def _replica_count(self, *batches):
        totals = self.parts.count_totals(batches)
        for key, value in totals.items():
            self.totals[key].assign(value)
        return totals

    def _replica_accumulate(self, batch):
        totals = {k: v.read_value() for k, v in self.totals.items()}
        grads, logs = self.parts.micro_step(batch, totals)
        for acc, g in zip(self.grads, grads):
            acc.assign_add(g)
        for key, value in logs.items():
            self.logs[key].assign_add(value)
        return tf.constant(0)  # strategy.run needs something to return

    def _replica_apply(self):
        grads = [acc.read_value() for acc in self.grads]
        logs = {k: v.read_value() for k, v in self.logs.items()}
        totals = {k: v.read_value() for k, v in self.totals.items()}
        out = self.parts.update(grads, logs, totals)
        with tf.control_dependencies(tf.nest.flatten(out)):
            for acc in (*self.grads, *self.logs.values()):
                acc.assign(tf.zeros_like(acc))
        return out

    def __call__(self, *batches):
        if len(batches) != self.micro_batches:
            raise ValueError(f"expected {self.micro_batches} micro-batches, got {len(batches)}")
        self._count(*batches)
        for batch in batches:
            self._accumulate(batch)
        return self._apply()


def make_train_step(model, strategy: tf.distribute.Strategy, micro_batches: int = 1, jit_compile: bool = False,
                    element_spec=None):
    """A callable ``(*batches) -> logs`` doing one optimizer step on ``micro_batches`` distributed batches.

    ``model``: a compiled Distiller / Pretrainer built under ``strategy.scope()``. ``element_spec``: the
    distributed dataset's, used as input signature (one trace for every bucket length: workers must
    trace the same functions in the same order, or their collectives would not match).
    Logs (float32 scalars, global values): ``loss``, each active term, ``grad_norm`` (before clipping),
    ``tokens``, ``masked`` and ``sequences`` (the step's real tokens, prediction slots and non-empty rows).
    """
    parts = _StepParts(model, strategy)
    if micro_batches == 1:
        return _fused_step(parts, jit_compile, element_spec)
    return _AccumulatingStep(parts, micro_batches, jit_compile, element_spec)
