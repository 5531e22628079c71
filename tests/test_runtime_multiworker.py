"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1 against one process."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_batch
from test_runtime_support import (
    build_distiller,
    global_batches,
    max_diff,
    run_local_workers,
    slices_dataset_fn,
    weights,
)

from keras_distil import TrainConfig
from keras_distil.training import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_two_workers_bit_identical_and_equal_to_one_process(tmp_path):
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]), TF_CPP_MIN_LOG_LEVEL="2")
    runs = run_local_workers(
        lambda i: [sys.executable, os.path.join(HERE, "test_runtime_worker.py"), str(outs[i]), str(tmp_path / "ckpt")],
        2, timeout=420, env=env, merge_stderr=True)
    for returncode, log, _ in runs:
        assert returncode == 0, log[-4000:]

    results = [np.load(o) for o in outs]
    w0, w1 = ([r[f"arr_{i}"] for i in range(len(r.files) - 3)] for r in results)
    assert [bool(r["chief"]) for r in results] == [True, False]
    # Bit-identical across workers.
    assert max_diff(w0, w1) == 0.0
    # Each worker read its own half of every global batch: disjoint, together the whole data.
    rows0, rows1 = results[0]["rows"], results[1]["rows"]
    batches = global_batches(make_batch, 6, 16, seed=21)
    everything = np.concatenate([b["token_ids"] for b in batches])
    assert rows0.shape == rows1.shape == (48, 16)
    seen = {r.tobytes() for r in rows0} | {r.tobytes() for r in rows1}
    assert not ({r.tobytes() for r in rows0} & {r.tobytes() for r in rows1})
    assert seen == {r.tobytes() for r in everything}
    # The chief wrote the run's checkpoints; the other worker's scratch copy is gone.
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-3")
    assert not (tmp_path / ".scratch-worker-1").exists()

    # One process, one device, same global batches, same steps.
    strategy = tf.distribute.get_strategy()
    train = TrainConfig(learning_rate=1e-2, warmup_prop=0.0, max_grad_norm=0.05)
    single = build_distiller(strategy, train, 3)
    Trainer(single, strategy, 3, micro_batches=2, console=False).fit(slices_dataset_fn(batches, 16))
    diff = max_diff(w0, weights(single.student))
    print(f"2 workers vs 1 process after 3 steps: max |dw| = {diff:.2e}")
    assert diff <= 1e-5
