"""Shared helpers of the checkpoint tests: fixture folders and their transformers reference outputs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from helpers import TESTS_DIR
from keras_distil.models.parity import all_hidden_states, mlm_logits

FIXTURES = os.path.join(TESTS_DIR, "fixtures", "hf")
ARCHITECTURES = ["bert_mlm", "bert_pretraining", "bert_model", "distilbert_mlm", "bert_mlm_sharded"]
TOLERANCE = 1e-4  # the bar: max abs difference in float32


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(fixture(name), "reference.npz")) as data:
        return dict(data)


def reference_feed(ref: dict) -> dict[str, np.ndarray]:
    feed = {"token_ids": ref["input_ids"], "padding_mask": ref["attention_mask"]}
    if "token_type_ids" in ref:
        feed["segment_ids"] = ref["token_type_ids"]
    return feed


def parity(model, name: str) -> dict[str, float]:
    """Max abs differences between ``model`` and transformers' saved outputs for fixture ``name``."""
    ref = reference(name)
    feed = reference_feed(ref)
    hidden = all_hidden_states(model, feed)
    assert len(hidden) == len(ref["hidden_states"])
    diffs = {f"hidden_{i}": float(np.max(np.abs(h - r))) for i, (h, r) in enumerate(zip(hidden, ref["hidden_states"],
                                                                                            strict=True))}
    if "logits" in ref:
        diffs["logits"] = float(np.max(np.abs(mlm_logits(model, feed) - ref["logits"])))
    return diffs


def copy_fixture(name: str, dst: str) -> str:
    shutil.copytree(fixture(name), dst)
    return dst


def tokenizer_reference() -> dict:
    with open(os.path.join(FIXTURES, "tokenizer_reference.json"), encoding="utf-8") as f:
        return json.load(f)
