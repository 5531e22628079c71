"""Shared test helpers (no tests here): builders of models and batches the test modules import."""

import os

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
REPO_ROOT = os.path.dirname(TESTS_DIR)
