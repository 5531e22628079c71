"""The small shared pieces of keras_distil.data.base: its JSON writes and reads name the file."""

import json
import os

import pytest

from keras_distil.data.base import DataError, read_json
from keras_distil.files import atomic_write_json


def test_atomic_write_json_leaves_only_the_target(tmp_path):
    path = str(tmp_path / "x.json")
    atomic_write_json(path, {"a": [1, 2]})
    assert os.listdir(tmp_path) == ["x.json"]
    with open(path) as f:
        assert json.load(f) == {"a": [1, 2]}


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nothere.json"):
        read_json(str(tmp_path / "nothere.json"), "a test file")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(DataError, match="bad.json"):
        read_json(str(bad), "a test file")
