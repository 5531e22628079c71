"""Sums over the replicas of a ``tf.distribute`` step, and their count: the one home of the all-reduce.

A loss normalised by a global count (the Distiller's terms), a gradient summed over replicas (the training
step) and a custom loss Keras does not scale (the task distiller) all need the same two things inside a
replica's function: the sum of a value over every replica, and how many replicas there are. Outside a
multi-replica step (no strategy, one device, or cross-replica code) there is one replica and the sum is
the value itself, so the same code runs unchanged on one device.

This module imports only TensorFlow: it sits below the Distiller.
"""

from __future__ import annotations

import tensorflow as tf


def _multi_replica_context():
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def global_sum(value):
    """The sum of ``value`` over all replicas of the current step (``value`` itself outside one).

    Args:
      value: a tensor, or a nest (dict, list, tuple) of tensors, as ``ReplicaContext.all_reduce`` takes.

    Example:
    >>> import tensorflow as tf
    >>> float(global_sum(tf.constant(3.0)))  # one replica: the value itself
    3.0
    """
    ctx = _multi_replica_context()
    return value if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas() -> int:
    """The number of replicas of the current step (1 outside a multi-replica step).

    Example:
    >>> num_replicas()
    1
    """
    ctx = _multi_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync
