"""Encoder-only teachers end to end: a head-less Hugging Face ``BertModel`` folder with sentence-transformers
files (a sentence-embedding model) distilled with keras_distil/recipes/sentence-embedding.json, the student saved,
reloaded and compared with the teacher by ``keras-distil evaluate``. Plumbing only (the teacher is random);
the quality claim on a real teacher is tests/test_real_teacher.py. About a minute on two busy cores: slow."""

import json
import math
import os
import re

import keras
import numpy as np
import pytest

from keras_distil.cli.evaluate import main as evaluate_main
from keras_distil.config import load_recipe, recipe_path
from keras_distil.data.tokenize import SPECIAL_TOKENS
from keras_distil.models.bert import BertMLM, build_mlm_model
from keras_distil.models.checkpoint_formats import load_teacher, save_student
from keras_distil.models.pooling import SentencePooling
from keras_distil.models.tokenizer_settings import TokenizerSettings

pytestmark = pytest.mark.slow
RECIPE = recipe_path("sentence-embedding")
# 300 pronounceable words: syllable pairs, each one WordPiece token of the vocabulary.
SYLLABLES = [c + v for c in "bdfgklmnprst" for v in "aeiou"]
WORDS = [a + b for a in SYLLABLES for b in SYLLABLES[:5]]
TEACHER = dict(hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64, max_position_embeddings=64,
               dropout=0.0)


def write_teacher(folder, vocab) -> None:
    """A random head-less BERT written as transformers writes a ``BertModel`` (no MLM head tensors), with
    sentence-transformers' files for mean pooling and normalisation."""
    keras.utils.set_random_seed(11)
    encoder = build_mlm_model(dict(TEACHER, vocab_size=len(vocab)), with_mlm_head=False)
    encoder.pooling = SentencePooling("mean", normalize=True)
    save_student(encoder, str(folder), "hf", tokenizer=TokenizerSettings(tuple(vocab), True, True))
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["architectures"] == ["BertModel"]


def write_text(path, lines: int, seed: int) -> str:
    """``lines`` documents of 12 to 27 words: each one sequence (>= min_len, <= max_len 32 tokens)."""
    rng = np.random.default_rng(seed)
    path.write_text("".join(" ".join(rng.choice(WORDS, rng.integers(12, 28))) + "\n" for _ in range(lines)))
    return str(path)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """(teacher folder, held-out text, run folder, distill()'s result) of a 3-step encoder-only run."""
    from keras_distil.training.run import distill

    root = tmp_path_factory.mktemp("encoder_only")
    vocab = list(SPECIAL_TOKENS) + WORDS
    teacher = root / "teacher"
    write_teacher(teacher, vocab)
    train, heldout = write_text(root / "train.txt", 80, 0), write_text(root / "heldout.txt", 24, 1)
    recipe = load_recipe(RECIPE, overrides=[
        f"teacher={teacher}", f"train_data={json.dumps([train])}", f"out={root / 'run'}",
        "train.steps=3", "train.gradient_accumulation_steps=1", "train.checkpoint_every=3", "train.log_every=1",
        "train.strategy=default", "train.jit_compile=off", "data.batch_size=8", "data.max_len=32",
        "data.min_len=6", "data.max_predictions_per_seq=5", "data.bucket_boundaries=[16]",
        "data.shuffle_buffer=64", "distill.student_layers=[0, 2]"])
    assert recipe.distill.alpha_cos > 0 and recipe.distill.alpha_sentence_cos > 0
    assert recipe.distill.alpha_ce == recipe.distill.alpha_mlm == recipe.distill.alpha_mse == 0
    result = distill(recipe, console=False)  # any failure fails the tests that use this fixture
    return {"teacher": str(teacher), "heldout": heldout, "run": str(root / "run"), "result": result}


@pytest.mark.timeout(600)
def test_distil_an_encoder_only_teacher(distilled):
    result = distilled["result"]
    assert result["steps"] == 3
    for key, value in result.items():
        if isinstance(value, float):
            assert math.isfinite(value), (key, value)
    # Only the recipe's token cosine (weight 1) and sentence cosine (weight 2) are trained (last step's logs),
    # on clean text: no masked positions were counted.
    assert "ce" not in result and "mlm" not in result and "mse" not in result and "hidden_mse" not in result
    assert result["loss"] == pytest.approx(result["cos"] + 2 * result["sentence_cos"], rel=1e-5)
    assert result["masked"] == 0 and result["sequences"] == 8
    with open(os.path.join(distilled["run"], "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["distill"]["alpha_sentence_cos"] == 2.0 and config["data"]["masking"] == "auto"
    teacher = load_teacher(distilled["teacher"], require_mlm_head=False).model
    keras_file = os.path.join(distilled["run"], "student", "student.keras")
    hub = os.path.join(distilled["run"], "student", "keras_hub")
    assert result["student"]["keras"] == keras_file and result["student"]["keras_hub"] == hub
    preset = load_teacher(hub, require_mlm_head=False)
    students = {"keras": keras.saving.load_model(keras_file), "keras_hub": preset.model}
    inputs = {"token_ids": np.arange(2, 26).reshape(2, 12) % len(WORDS) + 5,
              "padding_mask": np.array([[1] * 12, [1] * 7 + [0] * 5])}
    for student in students.values():
        assert isinstance(student, BertMLM) and not student.with_mlm_head and student.mlm_head is None
        assert student.model_config == teacher.model_config.replace(num_layers=2)
        assert student.pooling.mode == "mean" and student.pooling.normalize  # the teacher's, carried along
        assert "logits" not in student(inputs)
    np.testing.assert_allclose(students["keras"](inputs)["hidden"], students["keras_hub"](inputs)["hidden"],
                               atol=1e-5)
    # The head-less preset carries its tokenizer (tokenizer.json, assets/tokenizer/vocabulary.txt), read back
    # although Backbone.from_preset ignores it: the student can be a teacher or be evaluated without --vocab.
    assert os.path.exists(os.path.join(hub, "tokenizer.json"))
    assert preset.tokenizer is not None
    assert preset.tokenizer.vocab == tuple(list(SPECIAL_TOKENS) + WORDS)


@pytest.mark.timeout(600)
def test_evaluate_the_student_against_its_teacher(distilled, tmp_path, capsys):
    """The CLI on the teacher's HF folder and both saved students: masked-LM figures null ('-' in the table),
    cosines on the unmasked text; a student copied from the teacher and trained 3 steps stays close to it."""
    run_student = os.path.join(distilled["run"], "student")
    out = tmp_path / "report.json"
    assert evaluate_main(["evaluate", "--teacher", distilled["teacher"],
                          "--model", f"hub={os.path.join(run_student, 'keras_hub')}",
                          "--model", f"keras={os.path.join(run_student, 'student.keras')}",
                          "--data", distilled["heldout"], "--max-len", "32", "--batch-size", "8",
                          "--latency-runs", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["data"]["texts"] == report["data"]["sequences"] == 24
    for name, m in report["models"].items():
        assert m["mlm_head"] is False and m["masked_lm_accuracy"] is None and m["perplexity"] is None, name
        assert m["latency_s"] > 0
    hub, keras_file = (report["models"][n]["vs_teacher"] for n in ("hub", "keras"))
    for key in ("hidden_cosine", "sentence_cosine"):
        assert math.isfinite(hub[key]) and hub[key] == pytest.approx(keras_file[key], abs=1e-5)
    # A random student would be near 0: the student starts as the teacher's layers 0 and 2.
    assert 0.98 < hub["sentence_cosine"] <= 1.0 + 1e-6 and 0.95 < hub["hidden_cosine"] <= 1.0 + 1e-6
    assert hub["top1_agreement"] is None and hub["kl"] is None
    assert hub["param_ratio"] < 1 and hub["speedup"] > 0
    table = capsys.readouterr().out.splitlines()
    header = re.split(r"\s{2,}", table[0].strip())
    row = dict(zip(header, table[2].split()))
    assert row["model"] == "hub" and row["MLM acc"] == row["ppl"] == row["agree"] == row["KL"] == "-"
