"""keras_distil.files: atomic file writes and the staged folder swapped in atomically."""

import json
import os

import pytest

from keras_distil.files import (
    DestinationError,
    FileReadError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
    save_model_atomically,
    staged_folder,
    try_read_json,
)


def _listing(folder):
    return sorted(os.listdir(folder))


def test_json_round_trip_and_format(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"ü": "text"}, "c": True}
    path = tmp_path / "x.json"
    atomic_write_json(path, obj)
    assert json.loads(path.read_text(encoding="utf-8")) == obj
    assert path.read_text(encoding="utf-8") == json.dumps(obj, indent=2, sort_keys=True) + "\n"
    assert _listing(tmp_path) == ["x.json"]


def test_text_and_bytes_replace_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old ü")
    atomic_write_bytes(str(path), b"new")
    assert path.read_bytes() == b"new"
    atomic_write_text(path, "ü")
    assert path.read_bytes() == "ü".encode()
    assert _listing(tmp_path) == ["f.txt"]


def test_failed_file_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})  # not JSON: fails before anything is written
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails in the middle: the temporary file exists
    assert json.loads(path.read_text()) == {"v": 1}
    assert _listing(tmp_path) == ["x.json"]


def test_staged_folder_creates_and_replaces(tmp_path):
    dest = tmp_path / "nested" / "export"
    with staged_folder(dest) as tmp:
        assert os.path.dirname(tmp) == str(dest.parent) and _listing(tmp) == []
        assert not dest.exists()  # nothing visible before the swap
        (open(os.path.join(tmp, "a"), "w")).close()
    assert _listing(dest) == ["a"]
    with staged_folder(dest, overwrite=True) as tmp:
        (open(os.path.join(tmp, "b"), "w")).close()
    assert _listing(dest) == ["b"]  # replaced as a whole, not merged
    assert _listing(dest.parent) == ["export"]  # no temporary or old folder left


def test_failure_in_the_middle_leaves_the_old_folder_and_no_litter(tmp_path):
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "weights").write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with staged_folder(dest, overwrite=True) as tmp:
            with open(os.path.join(tmp, "weights"), "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert _listing(dest) == ["weights"] and (dest / "weights").read_text() == "old"
    assert _listing(tmp_path) == ["ckpt"]


def test_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "weights").write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(str(src)).startswith(".ckpt.tmp-") and not str(src).endswith(".old"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        with staged_folder(dest, overwrite=True) as tmp:
            (open(os.path.join(tmp, "weights"), "w")).close()
    assert (dest / "weights").read_text() == "old"
    assert _listing(tmp_path) == ["ckpt"]


def test_overwrite_false_refuses_an_existing_folder_naming_it(tmp_path):
    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "keep").write_text("x")
    with pytest.raises(DestinationError, match=f"{dest}: folder exists and is not empty.*overwrite"):
        with staged_folder(dest):
            pytest.fail("the body must not run")
    assert _listing(dest) == ["keep"] and _listing(tmp_path) == ["export"]


def test_empty_existing_folder_is_replaced_without_overwrite(tmp_path):
    dest = tmp_path / "export"
    dest.mkdir()
    with staged_folder(dest) as tmp:
        (open(os.path.join(tmp, "a"), "w")).close()
    assert _listing(dest) == ["a"]


def test_errors_are_raised_as_the_callers_type(tmp_path):
    class MyError(ValueError):
        pass

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MyError, match=f"{blocker}: exists and is not a folder"):
        with staged_folder(blocker, error=MyError):
            pass
    with pytest.raises(MyError, match=f"{blocker / 'sub'}: cannot be written: {blocker} is a file, not a folder"):
        with staged_folder(blocker / "sub", error=MyError):  # its parent is a file: the reason, not "File exists"
            pass


def test_read_json_names_the_file_as_the_callers_error(tmp_path):
    class MyError(ValueError):
        pass

    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good) == {"a": [1, 2]} == read_json(good, expect=dict) == try_read_json(good)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(MyError, match=rf"{bad}: not valid JSON \(a test file\): Expecting"):
        read_json(bad, "a test file", error=MyError)
    with pytest.raises(FileReadError, match=rf"{tmp_path / 'missing.json'}: no such file"):
        read_json(tmp_path / "missing.json")
    with pytest.raises(FileReadError, match=rf"{good}: expected a JSON list at the top level, got dict"):
        read_json(good, expect=list)
    with pytest.raises(FileReadError, match=rf"{tmp_path}: cannot be read"):
        read_json(tmp_path)  # a folder
    assert try_read_json(bad) is None and try_read_json(tmp_path / "missing.json") is None
    assert try_read_json(good, expect=list) is None


def test_keras_model_is_saved_atomically(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "m.keras")
    assert save_model_atomically(model, path) == path
    assert _listing(tmp_path) == ["m.keras"]
    assert keras.saving.load_model(path).count_params() == model.count_params()

    class Failing:
        def save(self, name):
            with open(name, "w") as f:
                f.write("half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model_atomically(Failing(), path)
    assert _listing(tmp_path) == ["m.keras"]  # the old file kept, no temporary left
