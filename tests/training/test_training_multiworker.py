"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1 against one process, with the
confident teacher and plain SGD, so that the update's size is compared (averaging over workers halves it)."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO_ROOT, TESTS_DIR
from helpers import step_reference as ref
from helpers.batches import pattern_batch
from helpers.training import (
    TEACHER_WEIGHTS_ENV,
    build_distiller,
    global_batches,
    max_diff,
    run_local_workers,
    save_teacher_weights,
    slices_dataset_fn,
    weights,
)

from keras_distil import TrainConfig
from keras_distil.training import Trainer


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_two_workers_bit_identical_and_equal_to_one_process(tmp_path, confident_teacher):
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_ROOT]), TF_CPP_MIN_LOG_LEVEL="2",
               **{TEACHER_WEIGHTS_ENV: save_teacher_weights(tmp_path / "teacher.npz")})
    runs = run_local_workers(
        lambda i: [sys.executable, os.path.join(TESTS_DIR, "helpers", "multiworker_worker.py"), str(outs[i]), str(tmp_path / "ckpt")],
        2, timeout=420, env=env, merge_stderr=True)
    for returncode, log, _ in runs:
        assert returncode == 0, log[-4000:]

    results = [np.load(o) for o in outs]
    n = (len(results[0].files) - 3) // 2  # the student's weights after, then before
    (w0, b0), (w1, _) = (([r[f"arr_{i}"] for i in range(n)], [r[f"arr_{n + i}"] for i in range(n)]) for r in results)
    assert [bool(r["chief"]) for r in results] == [True, False]
    # Bit-identical across workers.
    assert max_diff(w0, w1) == 0.0
    # Each worker read its own half of every global batch: disjoint, together the whole data.
    rows0, rows1 = results[0]["rows"], results[1]["rows"]
    batches = global_batches(pattern_batch, 6, 16, seed=21)
    everything = np.concatenate([b["token_ids"] for b in batches])
    assert rows0.shape == rows1.shape == (48, 16)
    seen = {r.tobytes() for r in rows0} | {r.tobytes() for r in rows1}
    assert not ({r.tobytes() for r in rows0} & {r.tobytes() for r in rows1})
    assert seen == {r.tobytes() for r in everything}
    # The chief wrote the run's checkpoints; the other worker's scratch copy is gone.
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-3")
    assert not (tmp_path / ".scratch-worker-1").exists()

    # One process, one device, same global batches, same steps: the same update, in size too.
    strategy = tf.distribute.get_strategy()
    train = TrainConfig(learning_rate=0.01, warmup_prop=0.0, max_grad_norm=0.0)
    single = build_distiller(strategy, train, 3, optimizer=lambda: keras.optimizers.SGD(0.01))
    start = weights(single.student)
    assert max_diff(start, b0) == 0.0
    Trainer(single, strategy, 3, micro_batches=2, console=False).fit(slices_dataset_fn(batches, 16))
    want = [a - b for a, b in zip(weights(single.student), start)]
    error = ref.relative_error([a - b for a, b in zip(w0, b0)], want)
    print(f"2 workers vs 1 process after 3 SGD steps: |update| {ref.global_norm(want):.3f}, relative error {error:.1e}")
    assert ref.global_norm(want) > 0.5
    assert error <= 1e-5
