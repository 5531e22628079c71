"""Export: SavedModel (ids + raw-text signatures), Hugging Face / KerasHub checkpoints, bad input.

Every export is reloaded here, independently of the export's own check, and compared with the Keras
model it came from; text paths are compared with the data pipeline's tokenizer and a numpy packing.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.export_run import (
    NEW_SENTENCES,
    VOCAB,
    keras_outputs,
    load_student,
    reference_pack,
    tokenize_reference,
)

from keras_distil.cli.export import add_export_parser, run_export
from keras_distil.export import ExportError, export, verify
from keras_distil.export.text import pack

MAX_LEN = 32  # the run's data.max_len


def _real(a, mask):
    return np.asarray(a)[np.asarray(mask).astype(bool)]


# ---------------------------------------------------------------- pure functions


def test_pack_matches_numpy_reference():
    import tensorflow as tf

    rows = [[7, 8, 9], [], list(range(10, 50)), [11]]
    ids, mask = pack(tf.ragged.constant(rows, dtype=tf.int32), max_len=8, cls_id=2, sep_id=3)
    want_ids, want_mask = reference_pack(rows, 8)
    np.testing.assert_array_equal(ids.numpy(), want_ids)
    np.testing.assert_array_equal(mask.numpy(), want_mask)


def test_compare_figures_against_numpy():
    ref = {"hidden": np.array([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]]), "pooled": np.array([[0.5, 0.5]]),
           "logits": np.array([[[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])}
    got = {"hidden": np.array([[[1.0, 0.1], [0.0, 2.0], [-9.0, 0.0]]]), "pooled": np.array([[0.5, 0.5]]),
           "logits": np.array([[[0.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]])}
    mask = np.array([[1, 1, 0]])  # the third token is padding and must be ignored
    figures = verify.compare(ref, got, mask, np.array([0, 0]), np.array([0, 1]))
    assert figures["hidden_max_abs_diff"] == pytest.approx(0.1)
    assert figures["logits_max_abs_diff"] == pytest.approx(3.0)
    assert figures["max_rel_diff"] == pytest.approx(3.0 / 2.0)
    assert figures["top1_agreement"] == 0.5
    assert figures["top1_miss_margins"] == [2.0]  # the Keras model's top-1 minus top-2 logit where they disagree
    assert figures["hidden_cosine_min"] == pytest.approx(1 / np.sqrt(1.01))
    assert verify.failures(figures, "none")  # 1.5 > 1e-5
    assert any("top-1" in p for p in verify.failures(figures, "dynamic"))
    assert verify.failures(figures, "dynamic", min_top1=0.5, min_cosine=0.99) == []


def test_fixed_batch_is_deterministic_with_padding_and_masks():
    a = verify.fixed_batch(120, 16, 8, mask_id=4, cls_id=2, sep_id=3)
    b = verify.fixed_batch(120, 16, 8, mask_id=4, cls_id=2, sep_id=3)
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    assert (a.padding_mask == 0).any()  # some rows are padded
    assert (a.token_ids[a.mask_rows, a.mask_cols] == 4).all()
    assert (a.token_ids * (1 - a.padding_mask) == 0).all()


# ---------------------------------------------------------------- one SavedModel export shared below


@pytest.fixture(scope="module")
def saved(export_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("saved_models"))
    return export(export_run, "saved_model", out=out, with_logits=True)


@pytest.fixture(scope="module")
def loaded(saved):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - the text signature's ops

    return tf.saved_model.load(saved.path)


def test_saved_model_stores_each_weight_once(saved, export_student):
    data = os.path.join(saved.path, "variables", "variables.data-00000-of-00001")
    assert os.path.getsize(data) <= 1.25 * 4 * export_student.count_params()  # ExportArchive alone writes 2x


def test_saved_model_in_tf_serving_layout_with_report(saved):
    assert saved.path.endswith(os.path.join("run", "1"))  # <out>/<name>/<version>
    for name in ("saved_model.pb", "variables/variables.index", "export_report.json"):
        assert os.path.exists(os.path.join(saved.path, name)), name
    assert not [d for d in os.listdir(os.path.dirname(saved.path)) if d.startswith(".")]  # no temp left
    with open(os.path.join(saved.path, "export_report.json")) as f:
        report = json.load(f)
    ids_check = report["checks"]["serving_default"]
    assert ids_check["max_rel_diff"] <= 1e-5 and ids_check["top1_agreement"] == 1.0
    assert report["checks"]["serve_text"]["text_rows_with_training_ids"].split("/")[0] == \
        report["checks"]["serve_text"]["text_rows_with_training_ids"].split("/")[1]


def test_ids_signature_matches_keras_model(loaded, export_student):
    rng = np.random.default_rng(7)
    ids = rng.integers(5, len(VOCAB), (3, 20)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    ids = ids * mask
    got = loaded.signatures["serving_default"](token_ids=ids, padding_mask=mask)
    want = keras_outputs(export_student, ids, mask)
    assert set(got) == {"pooled", "hidden", "logits"}
    np.testing.assert_allclose(got["pooled"].numpy(), want["pooled"], atol=1e-5)
    np.testing.assert_allclose(_real(got["hidden"], mask), _real(want["hidden"], mask), atol=1e-5)
    np.testing.assert_allclose(_real(got["logits"], mask), _real(want["logits"], mask), atol=1e-5)


def test_text_signature_tokenizes_as_training_and_matches_keras(loaded, export_student):
    import tensorflow as tf

    got = loaded.signatures["serve_text"](text=tf.constant(NEW_SENTENCES))
    ids, mask = tokenize_reference(NEW_SENTENCES, MAX_LEN)
    np.testing.assert_array_equal(got["token_ids"].numpy(), ids)
    np.testing.assert_array_equal(got["padding_mask"].numpy(), mask)
    assert (ids == 1).sum() < ids.size // 4  # mostly known words: the comparison means something
    want = keras_outputs(export_student, ids, mask)
    np.testing.assert_allclose(_real(got["hidden"], mask), _real(want["hidden"], mask), atol=1e-5)
    np.testing.assert_allclose(got["pooled"].numpy(), want["pooled"], atol=1e-5)


def test_text_signature_repairs_invalid_utf8_as_training(loaded):
    import tensorflow as tf

    got = loaded.signatures["serve_text"](text=tf.constant([b"the big\xff dog ran", b"\xc3 the cat"]))
    ids, _ = tokenize_reference(["the big dog ran", " the cat"], MAX_LEN)  # U+FFFD is deleted, as HF does
    np.testing.assert_array_equal(got["token_ids"].numpy(), ids)


def test_text_signature_truncates_to_max_len(loaded):
    import tensorflow as tf

    long_text = " ".join(["the big dog ran near the park today."] * 20)
    got = loaded.signatures["serve_text"](text=tf.constant([long_text, "the cat"]))
    ids, mask = tokenize_reference([long_text, "the cat"], MAX_LEN)
    assert got["token_ids"].shape == (2, MAX_LEN)
    np.testing.assert_array_equal(got["token_ids"].numpy(), ids)


def _cli(*args, check=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_saved_model_cli_show_lists_both_signatures(saved):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, "show", "--all", "--dir", saved.path], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "signature_def['serving_default']" in proc.stdout
    assert "signature_def['serve_text']" in proc.stdout
    assert "inputs['token_ids']" in proc.stdout and "inputs['text']" in proc.stdout


def test_saved_model_cli_run_on_ids_signature(saved, export_student, tmp_path):
    ids = [[2, 10, 11, 12, 3], [2, 13, 3, 0, 0]]
    mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    _cli("-m", "keras_distil.export.smcli", "run", "--dir", saved.path, "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", f"token_ids={ids};padding_mask={mask}",
         "--outdir", str(tmp_path))
    want = keras_outputs(export_student, np.array(ids, np.int32), np.array(mask, np.int32))
    np.testing.assert_allclose(np.load(tmp_path / "pooled.npy"), want["pooled"], atol=1e-5)
    np.testing.assert_allclose(_real(np.load(tmp_path / "hidden.npy"), mask), _real(want["hidden"], mask), atol=1e-5)


# ---------------------------------------------------------------- bad input: clear errors, nothing written


def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith(".")] if os.path.isdir(folder) else []


def test_existing_version_is_refused_and_untouched(export_run, saved):
    out = os.path.dirname(os.path.dirname(saved.path))
    before = os.path.getmtime(os.path.join(saved.path, "saved_model.pb"))
    with pytest.raises(ExportError, match="already exists.*--overwrite"):
        export(export_run, "saved_model", out=out, version=1)
    assert os.path.getmtime(os.path.join(saved.path, "saved_model.pb")) == before


def test_next_version_is_chosen_by_default(export_run, saved, tmp_path):
    from keras_distil.export.api import destination

    out = os.path.dirname(os.path.dirname(saved.path))
    assert destination(out, "run", "saved_model", None).endswith(os.path.join("run", "2"))
    assert destination(out, "run", "tflite", None).endswith(os.path.join("run", "tflite", "1"))
    with pytest.raises(ExportError, match="integers"):
        destination(out, "run", "saved_model", "v1")


def test_source_without_student(tmp_path, capsys):
    empty_run = tmp_path / "run"
    (empty_run / "checkpoints").mkdir(parents=True)
    (empty_run / "config.json").write_text("{}")
    with pytest.raises(ExportError, match=f"{empty_run}.*no student"):
        export(str(empty_run), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="no such file"):
        export(str(tmp_path / "missing"), out=str(tmp_path / "out"))
    args = _parse(["export", str(empty_run), "--out", str(tmp_path / "out")])
    assert run_export(args) == 2
    assert "no student" in capsys.readouterr().err


def test_run_folder_as_the_trainer_leaves_it(export_run, tmp_path):
    """student/student.keras + student/keras_hub/ (preset with tokenizer), config.json naming train_data."""
    import shutil

    from keras_distil.export.source import resolve_source
    from keras_distil.models.checkpoint_formats import save_student
    from keras_distil.models.tokenizer_settings import TokenizerSettings

    trained = tmp_path / "my-run"
    (trained / "student").mkdir(parents=True)
    shutil.copy(os.path.join(export_run, "student", "student.keras"), trained / "student" / "student.keras")
    save_student(load_student(export_run), str(trained / "student" / "keras_hub"), "keras_hub",
                 tokenizer=TokenizerSettings(tuple(VOCAB), True, True))
    shutil.copy(os.path.join(export_run, "corpus.txt"), trained / "corpus.txt")
    (trained / "config.json").write_text(json.dumps({"train_data": ["corpus.txt"], "data": {"max_len": 24}}))
    source = resolve_source(str(trained))
    assert source.path == str(trained / "student" / "student.keras")
    assert list(source.tokenizer.vocab) == VOCAB and source.tokenizer.lowercase
    assert source.corpus == [str(trained / "corpus.txt")] and source.data_config.max_len == 24
    assert source.name == "my-run"


def test_unwritable_destination(export_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match=str(blocker)):
        export(export_run, out=str(blocker / "saved_models"))
    assert blocker.read_text() == "not a folder"


def test_unknown_format_and_quantisation(export_run, tmp_path):
    with pytest.raises(ExportError, match="--format 'onnx'"):
        export(export_run, "onnx", out=str(tmp_path))
    with pytest.raises(ExportError, match="tflite only"):
        export(export_run, "saved_model", quantize="int8", out=str(tmp_path))
    with pytest.raises(SystemExit) as e:
        _parse(["export", export_run, "--format", "onnx"])
    assert e.value.code == 2
    assert os.listdir(tmp_path) == []


def test_failed_check_removes_the_half_written_export_and_keeps_the_old_one(export_run, tmp_path, monkeypatch):
    first = export(export_run, "saved_model", out=str(tmp_path), text=False)
    pb = os.path.join(first.path, "saved_model.pb")
    before = os.path.getmtime(pb)
    with monkeypatch.context() as m:
        m.setitem(verify.TOLERANCES, "none", -1.0)  # no export can pass: the check must fail
        with pytest.raises(ExportError, match="does not reproduce the model") as e:
            export(export_run, "saved_model", out=str(tmp_path), version=1, overwrite=True, text=False)
        assert "serving_default" in str(e.value)
        with pytest.raises(ExportError, match="does not reproduce the model"):
            export(export_run, "saved_model", out=str(tmp_path), version=2, text=False)
    assert os.path.getmtime(pb) == before  # the failed overwrite left version 1 as it was
    assert not (tmp_path / "run" / "2").exists()
    assert _leftovers(tmp_path / "run") == []
    again = export(export_run, "saved_model", out=str(tmp_path), version=1, overwrite=True, text=False)
    assert again.path == first.path and os.path.getmtime(pb) != before
    assert sorted(os.listdir(tmp_path / "run")) == ["1"]


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="keras-distil")
    add_export_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


# ---------------------------------------------------------------- checkpoints through save_student


@pytest.mark.parametrize("fmt", ["hf", "keras_hub"])
def test_checkpoint_formats_reload_to_the_same_model(export_run, export_student, tmp_path, fmt):
    from keras_distil.models.checkpoint_formats import load_teacher

    result = export(export_run, fmt, out=str(tmp_path), name="tiny", version=3)
    assert result.path == str(tmp_path / "tiny" / fmt / "3")
    assert result.checks[fmt]["max_rel_diff"] <= 1e-5
    reloaded = load_teacher(result.path)
    assert reloaded.tokenizer is not None and list(reloaded.tokenizer.vocab) == VOCAB
    ids, mask = tokenize_reference(NEW_SENTENCES, MAX_LEN)
    got, want = keras_outputs(reloaded.model, ids, mask), keras_outputs(export_student, ids, mask)
    np.testing.assert_allclose(_real(got["logits"], mask), _real(want["logits"], mask), atol=1e-5)
