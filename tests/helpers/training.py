"""Helpers for the runtime tests and for the worker script they spawn (no tests here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import keras
import numpy as np
import tensorflow as tf

from helpers.batches import TINY_MODEL
from keras_distil import BertMLM, Distiller, TrainConfig, student_from_teacher
from keras_distil.distiller import Pretrainer
from keras_distil.training import build_optimizer

TINY = dict(vocab_size=120, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64, dropout=0.0)
# An .npz of the confident teacher's weights (save_teacher_weights), for worker processes: they load it
# instead of training the teacher again.
TEACHER_WEIGHTS_ENV = "KERAS_DISTIL_TEST_TEACHER_WEIGHTS"


def confident_teacher_model(name: str = "teacher") -> BertMLM:
    """The session's confident TINY_MODEL teacher (tests/helpers/confident_teacher.py), built where it is
    called (inside ``strategy.scope()`` when needed); from $KERAS_DISTIL_TEST_TEACHER_WEIGHTS when set."""
    path = os.environ.get(TEACHER_WEIGHTS_ENV)
    if not path:
        from helpers.confident_teacher import confident_teacher

        return confident_teacher(TINY_MODEL, name=name)
    model = BertMLM(TINY_MODEL, name=name)
    with np.load(path) as saved:
        assert len(saved.files) == len(model.weights), path
        for i, variable in enumerate(model.weights):
            variable.assign(saved[f"arr_{i}"])
    return model


def save_teacher_weights(path) -> str:
    """Write the confident teacher's weights where worker processes read them (TEACHER_WEIGHTS_ENV)."""
    np.savez(path, *[v.numpy() for v in confident_teacher_model().weights])
    return str(path)


def build_distiller(strategy, train: TrainConfig, total_steps: int, seed: int = 7, pretrain: bool = False,
                    distill=None, model=None, optimizer=None):
    """A compiled Distiller of the confident teacher (TINY_MODEL, 4 layers) and the student copied from its
    layers 0 and 2, or (``pretrain``) a Pretrainer of a random TINY model (``model`` overrides its shape).
    ``optimizer``: a callable making the optimizer (default: ``build_optimizer(train, total_steps)``)."""
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        if pretrain:
            trainer = Pretrainer(BertMLM(dict(TINY, **(model or {})), name="teacher"))
        else:
            teacher = confident_teacher_model()
            trainer = Distiller(teacher, student_from_teacher(teacher), distill)
        trainer.compile(optimizer=optimizer() if optimizer else build_optimizer(train, total_steps))
    return trainer


def read_events(logdir) -> dict:
    """TensorBoard tensors of ``logdir``: ``{tag: [(step, numpy value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def save_confident_teacher(folder, vocab_folder, dropout: float = 0.0) -> str:
    """The confident teacher written as a KerasHub preset (with ``vocab_folder``'s vocab.txt) for runs from
    text files; ``dropout``: recorded in its config (the student inherits it; the teacher runs in inference)."""
    from keras_distil.models.checkpoint_formats import save_student

    model = BertMLM(dict(TINY_MODEL, dropout=dropout), name="teacher")
    for variable, value in zip(model.weights, confident_teacher_model().weights, strict=True):
        variable.assign(value)
    save_student(model, str(folder), "keras_hub", tokenizer=str(vocab_folder), model_type="bert")
    return str(folder)


def global_batches(make_batch, n, batch_size, seed=0, min_len=3):
    return [make_batch(batch_size=batch_size, vocab_size=TINY["vocab_size"], seed=seed + i, min_len=min_len)
            for i in range(n)]


def slices_dataset_fn(batches, micro_batch: int):
    """``dataset_fn(ctx)``: every global batch cut into per-replica slices of ``micro_batch / replicas`` rows;
    pipeline ``i`` of ``n`` reads slices ``i, i+n, ...`` (each worker its own part of every batch)."""
    stacked = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

    def fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(micro_batch)
        ds = tf.data.Dataset.from_tensor_slices(stacked).batch(per_replica, drop_remainder=True)
        return ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).repeat()

    return fn


def weights(model):
    return [w.numpy().copy() for w in model.weights]


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now (bound, read, released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_local_workers(argv_for, n: int, timeout: float, env: dict | None = None, merge_stderr: bool = False):
    """Run ``n`` MultiWorkerMirroredStrategy workers on loopback ports; ``[(returncode, stdout, stderr)]``.

    ``argv_for(i)``: worker ``i``'s command line; each gets its own ``TF_CONFIG`` on top of ``env``
    (default: this process' environment). Workers still running after ``timeout`` seconds, or when
    another fails to start, are killed.
    """
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(n)]}
    procs = []
    try:
        for i in range(n):
            worker_env = dict(env if env is not None else os.environ,
                              TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            procs.append(subprocess.Popen(argv_for(i), env=worker_env, stdout=subprocess.PIPE, text=True,
                                          stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE))
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]
