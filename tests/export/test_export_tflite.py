"""TFLite / LiteRT exports: fp32, fp16, dynamic-range and full-integer int8, and the text-input model.

One export of fp32 + fp16 + dynamic is shared by the tests; each file is run here with ai_edge_litert
and compared with the Keras model on inputs the export's own check never saw.
"""

import json
import os

import numpy as np
import pytest
from helpers.export_run import (
    NEW_SENTENCES,
    VOCAB,
    keras_outputs,
    tokenize_reference,
)

from keras_distil.export import ExportError, export, verify
from keras_distil.export.tflite import LiteModel

MAX_LEN = 32


@pytest.fixture(scope="module")
def lite(export_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tflite"))
    return export(export_run, "tflite", out=out, quantize=["none", "fp16", "dynamic"], with_logits=True)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(11)
    ids = rng.integers(5, len(VOCAB), (4, 18)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[2, 9:] = 0
    ids[:, 0], ids = 2, ids * mask
    return ids, mask


def _real(a, mask):
    return np.asarray(a)[mask.astype(bool)]


def _cosine(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_files_and_report(lite):
    names = sorted(lite.files)
    assert names == ["export_report.json", "model.tflite", "model_dynamic.tflite", "model_fp16.tflite",
                     "model_text.tflite", "model_text_dynamic.tflite", "model_text_fp16.tflite"]
    assert lite.path.endswith(os.path.join("run", "tflite", "1"))
    # Smaller weights (on a model this small the graph dominates the file: sizes at scale are in the benchmark).
    assert lite.files["model_fp16.tflite"] < lite.files["model.tflite"]
    assert lite.files["model_dynamic.tflite"] < lite.files["model.tflite"]


@pytest.mark.parametrize("name,tol", [("model.tflite", 1e-5), ("model_fp16.tflite", 1e-2)])
def test_float_models_match_keras(lite, export_student, batch, name, tol):
    ids, mask = batch
    got = LiteModel(os.path.join(lite.path, name))(token_ids=ids, padding_mask=mask)
    want = keras_outputs(export_student, ids, mask)
    for key in ("pooled", "hidden", "logits"):
        a = got[key] if key == "pooled" else _real(got[key], mask)
        b = want[key] if key == "pooled" else _real(want[key], mask)
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= tol * scale, (name, key, float(np.abs(a - b).max()))


def test_dynamic_range_model_agrees(lite, export_student, batch):
    ids, mask = batch
    got = LiteModel(os.path.join(lite.path, "model_dynamic.tflite"))(token_ids=ids, padding_mask=mask)
    want = keras_outputs(export_student, ids, mask)
    assert _cosine(_real(got["hidden"], mask), _real(want["hidden"], mask)).mean() >= 0.99
    figures = lite.checks["model_dynamic.tflite"]
    assert figures["top1_agreement"] >= 0.99 and figures["hidden_cosine_mean"] >= 0.99


def test_runner_resizes_between_calls(lite, export_student):
    model = LiteModel(os.path.join(lite.path, "model.tflite"))
    for shape in [(1, 5), (3, 11)]:
        ids = np.full(shape, 7, np.int32)
        got = model(token_ids=ids, padding_mask=np.ones_like(ids))
        assert got["hidden"].shape == shape + (32,)


@pytest.mark.parametrize("name,tol", [("model_text.tflite", 1e-5), ("model_text_fp16.tflite", 1e-2)])
def test_text_model_tokenizes_as_training(lite, export_student, name, tol):
    model = LiteModel(os.path.join(lite.path, name), custom_ops=True)
    got = model(text=np.array(NEW_SENTENCES, dtype=object))
    ids, mask = tokenize_reference(NEW_SENTENCES, MAX_LEN)
    np.testing.assert_array_equal(got["token_ids"], ids)
    np.testing.assert_array_equal(got["padding_mask"], mask)
    want = keras_outputs(export_student, ids, mask)
    np.testing.assert_allclose(_real(got["hidden"], mask), _real(want["hidden"], mask), atol=tol * 10)


# Full-integer int8 of the export tests' student (2 layers, width 32) cannot be held to the product gate
# (verify.MIN_TOP1 = 0.99, i.e. no miss at all among the check's 50 masked positions): 4 of those positions are
# near-ties of the Keras model (top-1 minus top-2 logit 0.0075, 0.015, 0.036, 0.047, median 5.4) below the
# int8 logits' resolution (int8 margins there: 0.065 or an exact tie; int8 logits off by up to 0.31), so each
# is a coin toss decided by rounding. Measured here: 50/50 agree; docs/serving.md records a run with 49/50
# (its one miss on a margin of 0.036), which the product gate refuses. The gate met whatever the 4 ties do:
TINY_INT8_MIN_TOP1 = 0.92  # 46 / 50


@pytest.fixture(scope="module")
def int8_export(export_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    return export(export_run, "tflite", out=str(out), quantize="int8", with_logits=True, min_top1=TINY_INT8_MIN_TOP1)


@pytest.mark.slow
def test_full_integer_int8_gated_at_092_not_099_because_4_of_50_positions_are_near_ties(
        int8_export, export_student, batch):
    """Calibrated on masked corpus sequences; accepted under the explicit lower gate (recorded in the report)
    and only if every miss is such a near-tie; its embeddings held to the product's cosine gate, checked again
    here on inputs the export's own check never saw."""
    result = int8_export
    assert sorted(result.files) == ["export_report.json", "model_int8.tflite"]  # no text variant for int8
    figures = result.checks["model_int8.tflite"]
    assert figures["top1_positions"] == 50
    assert figures["top1_agreement"] >= TINY_INT8_MIN_TOP1 and figures["hidden_cosine_mean"] >= verify.MIN_COSINE
    # A miss where the Keras model was decided (margin above the int8 logit error) would be a real error.
    assert all(m < figures["logits_max_abs_diff"] for m in figures["top1_miss_margins"]), figures
    with open(os.path.join(result.path, "export_report.json"), encoding="utf-8") as f:
        assert json.load(f)["thresholds"]["top1"] == TINY_INT8_MIN_TOP1  # the lowered gate is on record
    ids, mask = batch
    got = LiteModel(os.path.join(result.path, "model_int8.tflite"))(token_ids=ids, padding_mask=mask)
    want = keras_outputs(export_student, ids, mask)
    assert _cosine(_real(got["hidden"], mask), _real(want["hidden"], mask)).mean() >= verify.MIN_COSINE


@pytest.mark.slow
def test_the_product_gate_refuses_int8_of_the_tiny_student_with_one_near_tie_flipped(int8_export):
    """This export's figures with one of the 50 near-ties flipped (the 49/50 of docs/serving.md): the default
    gate (MIN_TOP1 = 0.99) refuses it on top-1 agreement alone; the cosine gate passes."""
    figures = dict(int8_export.checks["model_int8.tflite"], top1_agreement=49 / 50)
    problems = verify.failures(figures, "int8")  # the default thresholds: MIN_TOP1, MIN_COSINE
    assert len(problems) == 1 and problems[0].startswith("masked-token top-1 agreement 98.00% < 99%"), problems
    assert verify.failures(figures, "int8", min_top1=TINY_INT8_MIN_TOP1) == []


def test_int8_calibration_masks_like_training():
    from keras_distil.export.calibration import mask_like_training

    seqs = [np.arange(10, 50, dtype=np.int32), np.array([2, 7, 3], np.int32)]
    masked = mask_like_training(seqs, mask_id=4)
    assert (masked[0] == 4).sum() == round(0.15 * 38) and masked[0][0] == 10 and masked[0][-1] == 49
    assert (masked[1] == np.array([2, 7, 3])).all()  # one inner token: 15 % rounds to none
    assert (seqs[0] != 4).all()  # the inputs are not modified


def test_int8_without_corpus_is_refused(export_run, tmp_path):
    import shutil

    bare = tmp_path / "bare.keras"
    shutil.copy(os.path.join(export_run, "student", "student.keras"), bare)
    with pytest.raises(ExportError, match="--calibration"):
        export(str(bare), "tflite", out=str(tmp_path / "out"), quantize="int8", vocab=os.path.join(export_run, "vocab.txt"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["the cat", "THE CAT", "Café naïve", "the\u200bcat", "tab\tnew\nline",
                                  "the\u00a0cat", "İstanbul", "中文 the", "dog🙂cat"])
def test_lite_tokenizer_equals_training_on_these_inputs(text):
    """The claim of docs/serving.md; the known differences (NFKC folding, control characters, U+FFFD) are
    listed there and not asserted here."""
    import tensorflow as tf

    from keras_distil.export.text import LiteTokenizer, training_tokenizer
    from keras_distil.models.tokenizer_settings import TokenizerSettings

    settings = TokenizerSettings(tuple(VOCAB), True, True)
    want = training_tokenizer(settings).tokenize(tf.constant([text])).to_list()
    assert LiteTokenizer(settings).tokenize(tf.constant([text])).to_list() == want
