"""Every term through the real step against numpy, and the update's size against a tape gradient (issue 16).

The runtime's step (``make_train_step``: fused for k = 1, accumulating for k > 1) and Keras ``fit`` train a
Distiller of the session's confident teacher (every term of MLM's order, tests/helpers/confident_teacher.py)
with every term on, plain SGD (no momentum, no clipping) and one effective batch of 24 pattern rows sorted
by length: the micro-batches and the replicas' halves hold very different numbers of tokens and masked
slots, so a mean of per-replica or per-micro-batch means, or a term normalised by the wrong count, is off.

Each run is checked against references computed in the test from the models before the step
(tests/helpers/step_reference.py, nothing from keras_distil.losses):

* its logged terms, total and weight counts against numpy formulas on the whole effective batch, rel 1e-5;
* its logged ``grad_norm`` against the norm of a ``tf.GradientTape`` gradient of the whole batch on one
  device, and the weight update (after - before) against ``-lr * gradient``: with SGD the update *is* the
  gradient, so its size is compared, not only its direction (averaging over replicas halves it).

All configurations see the same 24 rows, so they agree with one another through the same reference:
1 device == 2 replicas == k micro-batches == one big batch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import step_reference as ref
from helpers.batches import clean, pattern_batch

from keras_distil import Distiller, student_from_teacher
from keras_distil.models.pooling import SentencePooling
from keras_distil.training.step import make_train_step

LR = 0.5
ROWS = 24
POOLING = SentencePooling("mean", normalize=True)
REL = 1e-5


def effective_batch(masked: bool = True) -> dict:
    """24 pattern rows (lengths 3..16, 1..4 masked slots) sorted by length: short rows first. Clean batches
    (no mask fields) also get an all-padding row, which must not count as a sequence."""
    batch = pattern_batch(batch_size=ROWS, seq_len=16, num_predictions=4, seed=31, min_len=3)
    order = np.argsort(batch["padding_mask"].sum(1), kind="stable")
    batch = {k: v[order] for k, v in batch.items()}
    if not masked:
        batch = clean(batch)
        batch["token_ids"][0] = 0
        batch["padding_mask"][0] = 0
    return batch


def micro_batches(batch: dict, k: int) -> list:
    rows = ROWS // k
    return [{key: v[i * rows:(i + 1) * rows] for key, v in batch.items()} for i in range(k)]


def alphas_for(positions: str) -> dict:
    return ref.CLEAN_TERMS if positions == "clean" else ref.EVERY_TERM


def build(strategy, build_teacher, positions: str) -> Distiller:
    with strategy.scope():
        teacher = build_teacher(pooling=POOLING)
        student = student_from_teacher(teacher)  # teacher layers 0 and 2
        config = {**alphas_for(positions), "temperature": ref.TEMPERATURE,
                  "ce_positions": "all" if positions == "clean" else positions}
        distiller = Distiller(teacher, student, config)
        distiller.compile(optimizer=keras.optimizers.SGD(LR))
    return distiller


def strategy_for(replicas: int):
    return tf.distribute.get_strategy() if replicas == 1 else ref.two_cpu_replicas()


def references(distiller, batch: dict, positions: str) -> tuple[dict, list]:
    """(numpy logs, tape gradient) of the whole effective batch at the current weights."""
    ce_positions = distiller.config.ce_positions
    pooling = (POOLING.mode, POOLING.normalize)
    alphas = alphas_for(positions)
    want = ref.reference_logs(distiller.teacher, distiller.student, [batch], alphas, ce_positions, pooling)
    grad = ref.tape_gradient(distiller.teacher, distiller.student, [batch], alphas, ce_positions, pooling)
    return want, grad


def run(strategy, distiller, batch, positions, train):
    """References, then one optimizer step by ``train()``; the run's numbers."""
    want, grad = references(distiller, batch, positions)
    variables = distiller.student.trainable_variables
    before = [v.numpy().copy() for v in variables]
    got = train()
    update = [v.numpy() - b for v, b in zip(variables, before)]
    return {"got": got, "want": want, "grad": grad, "update": update,
            "paths": [v.path for v in variables], "active": distiller.active_terms}


# (replicas, micro-batches k, soft-target positions / clean batches)
STEP_CASES = [
    pytest.param((1, 1, "all"), id="1device-k1-all"),
    pytest.param((1, 3, "masked"), id="1device-k3-masked"),
    pytest.param((2, 1, "masked"), id="2replicas-k1-masked"),
    pytest.param((2, 2, "masked"), id="2replicas-k2-masked"),
    pytest.param((2, 2, "clean"), id="2replicas-k2-clean"),
]


@pytest.fixture(scope="module", params=STEP_CASES)
def step_run(request, confident_teacher):
    """One step of ``make_train_step`` on the effective batch in ``k`` micro-batches under ``replicas``."""
    replicas, k, positions = request.param
    strategy = strategy_for(replicas)
    distiller = build(strategy, confident_teacher, positions)
    batch = effective_batch(masked=positions != "clean")

    def train():
        step = make_train_step(distiller, strategy, k)
        logs = step(*[ref.distribute(strategy, b) for b in micro_batches(batch, k)])
        return {key: float(v) for key, v in logs.items()}

    return run(strategy, distiller, batch, positions, train)


# (replicas, soft-target positions)
FIT_CASES = [
    pytest.param((1, "masked"), id="1device-masked"),
    pytest.param((2, "all"), id="2replicas-all"),
    pytest.param((2, "masked"), id="2replicas-masked"),
]


@pytest.fixture(scope="module", params=FIT_CASES)
def fit_run(request, confident_teacher):
    """One step of Keras ``fit`` (the Distiller's own train_step) on the effective batch under ``replicas``."""
    replicas, positions = request.param
    strategy = strategy_for(replicas)
    distiller = build(strategy, confident_teacher, positions)
    batch = effective_batch()

    def train():
        history = distiller.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
        return {key: values[0] for key, values in history.items()}

    return run(strategy, distiller, batch, positions, train)


def assert_logs_match(got: dict, want: dict, active) -> None:
    terms = [key for key in want if key in ref.TERM_NAMES]
    assert sorted(terms) == sorted(active)  # every term of the config is on and logged
    counts = [key for key in ("tokens", "masked", "sequences") if key in got]  # the step logs them, fit does not
    for key in ("loss", *terms, *counts):
        assert got[key] == pytest.approx(want[key], rel=REL, abs=0), key
    assert all(want[key] > 5e-3 for key in terms), want  # no vanishing term: each one is checked for real


def assert_update_is_gradient(run: dict) -> None:
    """SGD: ``update == -lr * grad``, to a tolerance relative to the update's size."""
    want = [-LR * g for g in run["grad"]]
    error = ref.relative_error(run["update"], want)
    print(f"update vs -lr * tape gradient: relative error {error:.1e}, |update| {ref.global_norm(want):.3f}")
    assert error <= REL
    scale = max(float(np.abs(w).max()) for w in want)
    for path, got, w in zip(run["paths"], run["update"], want):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6 * scale, err_msg=path)


def test_step_logs_every_term_as_numpy(step_run):
    got, want = step_run["got"], step_run["want"]
    assert set(got) == {"loss", "grad_norm", "tokens", "masked", "sequences", *step_run["active"]}
    assert_logs_match(got, want, step_run["active"])


def test_step_update_and_grad_norm_are_the_tape_gradient(step_run):
    assert step_run["got"]["grad_norm"] == pytest.approx(ref.global_norm(step_run["grad"]), rel=REL)
    assert_update_is_gradient(step_run)


def test_fit_logs_every_term_as_numpy(fit_run):
    got = fit_run["got"]
    assert set(got) == {"loss", *fit_run["active"]}
    assert_logs_match(got, fit_run["want"], fit_run["active"])


def test_fit_update_is_the_tape_gradient(fit_run):
    assert_update_is_gradient(fit_run)
