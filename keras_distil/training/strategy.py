"""Which ``tf.distribute`` strategy to train under: ``auto | default | mirrored | multiworker | tpu``.

``auto`` looks at what is present, in this order: a ``TF_CONFIG`` naming more than one task (a cluster:
MultiWorkerMirroredStrategy), a TPU named by ``--tpu`` or ``TPU_NAME`` (TPUStrategy), more than one GPU
(MirroredStrategy), else the default strategy (one device). :func:`choose_strategy` is the pure
decision (unit-tested with fake environments); :func:`make_strategy` builds the object.

TPU: ``--tpu local`` on a TPU VM, ``--tpu NAME`` for a TPU node of this project and zone (the
resolver asks the Cloud TPU API), ``--tpu grpc://HOST:8470`` for an explicit worker. Nothing is
guessed without a name: ``TPUClusterResolver()`` with no argument asks the GCE metadata server, which
on a machine outside Google Cloud waits on the network instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping

import tensorflow as tf

from keras_distil.config import ConfigError

logger = logging.getLogger("keras_distil.training")

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """The parsed ``TF_CONFIG`` (None when unset or empty); ConfigError when it is not a JSON object."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({e})") from None
    if not isinstance(value, dict) or not isinstance(value.get("cluster", {}), dict):
        raise ConfigError("TF_CONFIG: expected {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
                          "\"task\": {\"type\": \"worker\", \"index\": i}}")
    return value


def cluster_size(tf_config: dict | None) -> int:
    """Number of training tasks (chief + workers) in a TF_CONFIG."""
    if not tf_config:
        return 0
    cluster = tf_config.get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def tpu_address(tpu: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The TPU to connect to: the flag, else ``TPU_NAME``, else ``COLAB_TPU_ADDR`` (as grpc://), else None."""
    env = os.environ if environ is None else environ
    if tpu:
        return tpu
    if env.get("TPU_NAME"):
        return env["TPU_NAME"]
    if env.get("COLAB_TPU_ADDR"):
        return f"grpc://{env['COLAB_TPU_ADDR']}"
    return None


def choose_strategy(requested: str, *, tf_config: dict | None, num_gpus: int, tpu: str | None) -> tuple[str, str]:
    """``(kind, reason)``: the strategy kind to build and why (logged). Pure: no TF calls."""
    if requested not in STRATEGIES:
        raise ConfigError(f"train.strategy: got {requested!r}; accepted: {', '.join(STRATEGIES)}")
    if requested == "multiworker" and cluster_size(tf_config) == 0:
        raise ConfigError("train.strategy=multiworker needs TF_CONFIG with a 'cluster' of workers "
                          "(see docs/runtime.md, 'Strategies')")
    if requested == "tpu" and tpu is None:
        raise ConfigError("train.strategy=tpu needs --tpu local|NAME|grpc://HOST:PORT, or TPU_NAME set")
    if requested != "auto":
        return requested, "train.strategy=" + requested
    if cluster_size(tf_config) > 1:
        return "multiworker", f"TF_CONFIG names {cluster_size(tf_config)} tasks"
    if tpu is not None:
        return "tpu", f"TPU {tpu!r} named"
    if num_gpus > 1:
        return "mirrored", f"{num_gpus} GPUs present"
    return "default", f"{num_gpus} GPU(s), no cluster, no TPU: one device"


def connect_tpu(tpu: str) -> tf.distribute.Strategy:
    """Resolve, connect to and initialise a TPU system; ConfigError naming it when it cannot be found."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ConfigError(f"--tpu {tpu}: no TPU could be reached ({type(e).__name__}: {e})") from None
    return tf.distribute.TPUStrategy(resolver)


def make_strategy(requested: str = "auto", tpu: str | None = None, devices: list[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> tf.distribute.Strategy:
    """Build the strategy for ``requested`` (see :func:`choose_strategy`) and log the choice.

    ``devices``: for ``mirrored``, the devices to mirror over (default: every GPU, else every logical
    CPU, so that ``mirrored`` also runs on a machine split into logical CPUs).
    """
    tf_config = read_tf_config(environ)
    tpu = tpu_address(tpu, environ)
    # Physical devices only: MultiWorkerMirroredStrategy must be built before TF's runtime starts.
    kind, reason = choose_strategy(requested, tf_config=tf_config,
                                   num_gpus=len(tf.config.list_physical_devices("GPU")), tpu=tpu)
    if kind == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "tpu":
        strategy = connect_tpu(tpu)
    elif kind == "mirrored":
        if devices is None:
            devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                      [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = tf.distribute.get_strategy()
    logger.info("strategy: %s with %d replica(s) (%s)", kind, strategy.num_replicas_in_sync, reason)
    return strategy


def strategy_kind(strategy: tf.distribute.Strategy) -> str:
    """``default | mirrored | multiworker | tpu`` for a strategy object."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def worker_info(strategy: tf.distribute.Strategy) -> tuple[int, bool]:
    """``(task_index, is_chief)``: the chief writes the run folder; other workers write scratch copies."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if strategy_kind(strategy) != "multiworker" or resolver is None:
        return 0, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and "chief" not in resolver.cluster_spec().as_dict())
    return task_id, is_chief


def on_cpu(strategy: tf.distribute.Strategy) -> bool:
    """Whether the strategy's replicas are CPU devices."""
    if strategy_kind(strategy) == "tpu":
        return False
    if strategy_kind(strategy) == "default":
        return not tf.config.list_logical_devices("GPU")
    return all("CPU" in d.upper() for d in strategy.extended.worker_devices)
