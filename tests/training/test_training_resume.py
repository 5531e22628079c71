"""Nothing lost: a run killed with SIGKILL and restarted ends where an uninterrupted run ends; a NaN loss
stops training with a clear message and the last good checkpoint intact."""

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO_ROOT
from helpers.batches import pattern_batch
from helpers.tiny_corpus import tiny_recipe, write_corpus, write_recipe
from helpers.training import (
    build_distiller,
    global_batches,
    max_diff,
    read_events,
    save_confident_teacher,
    slices_dataset_fn,
    weights,
)

from keras_distil import TrainConfig
from keras_distil.cli import main
from keras_distil.training import Trainer, TrainingDiverged


def _latest_step(checkpoints: str) -> int:
    path = tf.train.latest_checkpoint(checkpoints) if os.path.exists(os.path.join(checkpoints, "checkpoint")) else None
    return int(path.rsplit("-", 1)[1]) if path else 0


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_sigkill_then_same_command_equals_uninterrupted_run(tmp_path, confident_teacher):
    write_corpus(tmp_path / "corpus", pattern=True)
    # No model section: distill takes the teacher's shape (a model.* knob that disagrees is an error).
    knobs = {k: v for k, v in tiny_recipe(steps=40, checkpoint_every=5).items() if k != "model"}
    recipe = write_recipe(tmp_path / "recipe.json", knobs)
    data = ["--train-data", str(tmp_path / "corpus" / "part*.txt"), "--quiet"]
    # The teacher: the session's confident one (its soft targets on this repeated-motif text are far from
    # uniform), as a KerasHub preset with the corpus' vocabulary. Its config's dropout 0.1 is inherited by the
    # student, so the dropout seed states must be restored too.
    teacher = save_confident_teacher(tmp_path / "teacher", tmp_path / "corpus", dropout=0.1)
    args = ["distill", "--recipe", recipe, "--teacher", teacher] + data

    assert main(args + ["--out", str(tmp_path / "straight")]) == 0
    # Every term of the resumed objective carries weight (an untrained teacher's soft targets gave ~1e-6).
    events = read_events(tmp_path / "straight" / "logs")
    first = {term: float(events[f"loss/{term}"][0][1]) for term in ("ce", "mlm", "cos")}
    print(f"first logged terms of the straight run: {first}")
    assert min(first.values()) > 0.05, first

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "keras_distil"] + args + ["--out", str(killed)]
    with open(tmp_path / "victim.log", "w") as log:
        victim = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while _latest_step(str(killed / "checkpoints")) < 10 and victim.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.02)
            victim.send_signal(signal.SIGKILL)
        finally:
            victim.kill()
            victim.wait()
    assert victim.returncode == -signal.SIGKILL, (tmp_path / "victim.log").read_text()[-3000:]
    at_kill = _latest_step(str(killed / "checkpoints"))
    assert 10 <= at_kill < 40 and not (killed / "student").exists()

    resumed = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resumed from {killed / 'checkpoints' / 'ckpt'}-{at_kill}" in resumed.stdout

    a = keras.saving.load_model(tmp_path / "straight" / "student" / "student.keras")
    b = keras.saving.load_model(killed / "student" / "student.keras")
    diff = max_diff(weights(a), weights(b))
    print(f"killed at checkpoint {at_kill}/40, resumed: max |dw| vs uninterrupted = {diff:.2e}")
    assert diff <= 1e-6


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, confident_teacher):
    batches = global_batches(pattern_batch, 6, 8, seed=1)
    batches[4]["mask_weights"] = batches[4]["mask_weights"] * np.nan  # the 5th step's loss is NaN
    strategy = tf.distribute.get_strategy()
    train = TrainConfig(learning_rate=1e-3, warmup_prop=0.0)
    distiller = build_distiller(strategy, train, 6)
    trainer = Trainer(distiller, strategy, 6, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=2,
                      console=False)
    with pytest.raises(TrainingDiverged, match=r"step 5: the loss is nan.*ckpt-4 \(left as it was\)"):
        trainer.fit(slices_dataset_fn(batches, 8))
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-4")

    # The checkpoint holds the finite weights of step 4: equal to a clean 4-step run's.
    clean = build_distiller(strategy, train, 6)
    Trainer(clean, strategy, 4, console=False).fit(slices_dataset_fn(batches, 8))
    restored = build_distiller(strategy, train, 6)
    Trainer(restored, strategy, 4, checkpoint_dir=str(tmp_path / "ckpt"), console=False).fit(
        slices_dataset_fn(batches, 8))  # resumes at step 4 = total: restores and trains nothing
    assert all(np.isfinite(w).all() for w in weights(restored.student))
    assert max_diff(weights(clean.student), weights(restored.student)) <= 1e-6
