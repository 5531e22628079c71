"""Shared test helpers (no tests here): builders of models and batches the test modules import."""
