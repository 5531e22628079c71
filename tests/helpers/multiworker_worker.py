"""Worker script for test_runtime_multiworker.py: ``python tests/test_runtime_worker.py OUT.npz CKPT_DIR``.

Run with TF_CONFIG set, and KERAS_DISTIL_TEST_TEACHER_WEIGHTS naming the confident teacher's weights (saved
by the test: no worker trains it again); trains the tiny distiller under MultiWorkerMirroredStrategy through
the runtime's Trainer with plain SGD (no clipping: the update is the gradient, so its size is compared), then
saves the student's weights before and after and the token ids this worker read. No tests here.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from helpers.batches import pattern_batch
    from helpers.training import (
        TEACHER_WEIGHTS_ENV,
        build_distiller,
        global_batches,
        slices_dataset_fn,
        weights,
    )
    from keras_distil import TrainConfig
    from keras_distil.training import Trainer, make_strategy, worker_info

    STEPS, MICRO, GLOBAL, LR = 3, 2, 16, 0.01
    out, ckpt = sys.argv[1], sys.argv[2]
    assert os.environ.get(TEACHER_WEIGHTS_ENV), f"{TEACHER_WEIGHTS_ENV} is not set"
    strategy = make_strategy("auto")  # TF_CONFIG names two workers: auto must pick multiworker
    assert strategy.num_replicas_in_sync == 2, strategy
    train = TrainConfig(learning_rate=LR, warmup_prop=0.0, max_grad_norm=0.0)
    distiller = build_distiller(strategy, train, STEPS, optimizer=lambda: keras.optimizers.SGD(LR))
    before = weights(distiller.student)
    batches = global_batches(pattern_batch, STEPS * MICRO, GLOBAL, seed=21)
    base_fn = slices_dataset_fn(batches, GLOBAL)
    seen = {}

    def dataset_fn(ctx):
        seen["pipeline"] = (ctx.input_pipeline_id, ctx.num_input_pipelines)
        return base_fn(ctx)

    Trainer(distiller, strategy, STEPS, micro_batches=MICRO, checkpoint_dir=ckpt, checkpoint_every=2,
            console=False).fit(dataset_fn)
    pipeline_id, pipelines = seen["pipeline"]
    ctx = tf.distribute.InputContext(pipelines, pipeline_id, strategy.num_replicas_in_sync)
    rows = np.concatenate([b["token_ids"] for b in base_fn(ctx).take(STEPS * MICRO).as_numpy_iterator()])
    task, chief = worker_info(strategy)
    np.savez(out, *weights(distiller.student), *before, rows=rows, task=task, chief=chief)
