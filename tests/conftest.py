"""Shared test set-up: quiet TF, two logical CPUs (for MirroredStrategy tests), tiny model shapes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # sentence-transformers / transformers: local folders only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Logical devices must be configured before TF initialises its runtime, i.e. before any op runs.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from helpers.batches import TINY_MODEL  # noqa: E402  (after the devices: it imports keras_distil)


@pytest.fixture
def tiny_model_config():
    return dict(TINY_MODEL)


# ---------------------------------------------------------------- the export tests' trained run


@pytest.fixture(scope="session")
def export_run(tmp_path_factory):
    """One trained run folder (tiny teacher distilled into a student) shared by the export tests (~15 s)."""
    from helpers.export_run import shared_run

    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def export_student(export_run):
    """The run's student Keras model, loaded afresh for each test module."""
    from helpers.export_run import load_student

    return load_student(export_run)


# ---------------------------------------------------------------- a teacher that knows its data


@pytest.fixture(scope="session")
def confident_teacher():
    """``build(model_config=TINY_MODEL, with_mlm_head=True, pooling=None)`` -> a trained tiny teacher (weights
    trained once per session; build it inside ``strategy.scope()`` when needed). Asserts here that its soft
    targets are far from uniform (tests/helpers/confident_teacher.py gives the measured term magnitudes)."""
    from helpers.batches import pattern_batch
    from helpers.confident_teacher import confidence
    from helpers.confident_teacher import confident_teacher as build_teacher

    def build(model_config=None, with_mlm_head=True, pooling=None, name="teacher"):
        return build_teacher(dict(model_config or TINY_MODEL), with_mlm_head, pooling, name)

    measured = confidence(build(), pattern_batch(seed=0))
    assert measured["kl_to_uniform"] > 3.0, measured  # of log(120) = 4.79 nats
    assert measured["top1_accuracy"] > 0.95 and measured["top1_margin"] > 0.5, measured
    return build
