"""keras-distil evaluate, the embedding user's figures: the pairwise metrics against independent references
(scipy.stats.spearmanr on the upper triangles, a brute-force nearest neighbour), embeddings on the clean
text with the teacher's pooling, the reference row (the untrained copied-layer student), the CLI table and
JSON, and one slow test on the real all-MiniLM-L6-v2 against sentence-transformers."""

import json
import math
import re

import keras
import numpy as np
import pytest
from helpers.batches import TINY_MODEL, make_batch
from helpers.extras import real_teacher_path, require
from helpers.tiny_corpus import random_lines, write_word_vocab
from scipy.stats import rankdata, spearmanr

from keras_distil import build_mlm_model
from keras_distil.cli.evaluate import main, parse_copied_layers
from keras_distil.config import ConfigError
from keras_distil.evaluation import (
    COPIED_NAME,
    add_copied_reference,
    average_ranks,
    copied_layers_for,
    evaluate_models,
    nearest_neighbours,
    neighbour_agreement,
    pairwise_cosines,
    row_cosines,
    sentence_embeddings,
    similarity_spearman,
    spearman_correlation,
)
from keras_distil.evaluation.reference import run_student_layers
from keras_distil.models.pooling import SentencePooling
from keras_distil.models.student import build_student, evenly_spaced_layers

VOCAB = TINY_MODEL["vocab_size"]
TINY = TINY_MODEL
EMBEDDING_KEYS = ("hidden_cosine", "sentence_cosine", "similarity_spearman", "neighbour_agreement")


# ---- independent references ----------------------------------------------------------------------

def np_cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def np_upper_cosines(e):
    """Cosines of all pairs i < j, pair by pair, in float64."""
    return np.array([np_cos(e[i], e[j]) for i in range(len(e)) for j in range(i + 1, len(e))])


def brute_nearest(e):
    """The most cosine-similar other row of each row, by a double loop (first on ties)."""
    out = []
    for i in range(len(e)):
        sims = [(np_cos(e[i], e[j]), -j) for j in range(len(e)) if j != i]
        out.append(-max(sims)[1])
    return np.array(out)


def reference_figures(model_emb, teacher_emb):
    """(sentence cosine, Spearman of the pairwise cosines, neighbour agreement) by scipy and loops."""
    sentence = np.mean([np_cos(m, t) for m, t in zip(model_emb, teacher_emb)])
    rho = spearmanr(np_upper_cosines(model_emb), np_upper_cosines(teacher_emb)).statistic
    agree = np.mean(brute_nearest(model_emb) == brute_nearest(teacher_emb))
    return sentence, rho, agree


def embeddings_pair(n=40, seed=0):
    """A teacher's embeddings and a model's related, narrower and noisy ones: non-trivial agreement."""
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(n, 8)).astype("float32")
    model = (teacher @ rng.normal(size=(8, 6)) + 0.8 * rng.normal(size=(n, 6))).astype("float32")
    return model, teacher


# ---- the pure metrics ----------------------------------------------------------------------------

def test_pairwise_metrics_match_scipy_and_brute_force():
    model, teacher = embeddings_pair()
    rho = similarity_spearman(model, teacher)
    assert rho == pytest.approx(spearmanr(np_upper_cosines(model), np_upper_cosines(teacher)).statistic, abs=1e-6)
    assert 0.1 < rho < 0.95
    agree = neighbour_agreement(model, teacher)
    assert agree == np.mean(brute_nearest(model) == brute_nearest(teacher)) and 0 < agree < 1
    np.testing.assert_array_equal(nearest_neighbours(model), brute_nearest(model))
    # The upper triangle in np.triu_indices order, the same in any row chunking.
    np.testing.assert_allclose(pairwise_cosines(model), np_upper_cosines(model), atol=1e-6)
    np.testing.assert_allclose(pairwise_cosines(model, chunk_rows=7), pairwise_cosines(model), atol=1e-6)
    np.testing.assert_array_equal(nearest_neighbours(model, chunk_rows=3), nearest_neighbours(model))
    assert similarity_spearman(model, teacher, chunk_rows=5) == pytest.approx(rho, abs=1e-9)
    assert neighbour_agreement(model, teacher, chunk_rows=5) == agree
    # Identical embeddings give exactly 1; scaling rows changes no cosine.
    assert similarity_spearman(teacher, teacher) == 1.0 and neighbour_agreement(teacher, teacher) == 1.0
    assert similarity_spearman(teacher * np.arange(1, 41)[:, None], teacher) == pytest.approx(1.0, abs=1e-9)


def test_ranks_and_spearman_with_ties():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, 200)
    np.testing.assert_array_equal(average_ranks(x), rankdata(x, method="average"))
    y = x + rng.integers(0, 3, 200)
    assert spearman_correlation(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    # Teacher embeddings along 4 axes (scaled at random): every pairwise cosine is exactly 0 or 1, in float32
    # as in float64, so the teacher side is two big ties.
    axes = rng.integers(0, 4, 30)
    teacher = (np.eye(4)[axes] * rng.uniform(0.5, 3, (30, 1))).astype("float32")
    model = (np.eye(4)[axes] + 0.6 * rng.normal(size=(30, 4))).astype("float32")
    ties = np_upper_cosines(teacher)
    assert set(np.unique(ties)) == {0.0, 1.0} and set(np.unique(pairwise_cosines(teacher))) == {0.0, 1.0}
    expected = spearmanr(np_upper_cosines(model), ties).statistic
    assert similarity_spearman(model, teacher) == pytest.approx(expected, abs=1e-6) and 0 < expected < 1


def test_degenerate_inputs():
    e = np.eye(3, dtype="float32")
    assert similarity_spearman(e[:2], e[:2]) is None and neighbour_agreement(e[:2], e[:2]) is None
    assert similarity_spearman(np.ones((4, 2)), e[[0, 1, 2, 0]]) is None  # constant similarities
    assert spearman_correlation([1.0], [2.0]) is None and spearman_correlation([1, np.nan], [1, 2]) is None
    with pytest.raises(ValueError, match="3 model rows and 2 teacher rows"):
        similarity_spearman(e, e[:2])
    assert row_cosines([[0.0, 0.0]], [[1.0, 2.0]]).tolist() == [0.0]
    a = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    assert (row_cosines(a, a) == 1.0).all()


# ---- embeddings through evaluate_models ------------------------------------------------------------

def clean_ids(batch):
    ids = np.array(batch["token_ids"]).copy()
    for b, p in zip(*np.nonzero(np.asarray(batch["mask_weights"]) > 0)):
        ids[b, batch["mask_positions"][b, p]] = batch["mask_ids"][b, p]
    return ids


def np_pool(hidden, padding, pooling):
    real = padding > 0
    rows = []
    for h, r in zip(hidden, real):
        e = h[0] if pooling.mode == "cls" else h[r].max(0) if pooling.mode == "max" else h[r].mean(0)
        rows.append(e / np.linalg.norm(e) if pooling.normalize else e)
    return np.array(rows)


def np_embeddings(model, batches, pooling):
    """(token hidden states list, sentence embeddings) of ``batches``' clean text, numpy pooling."""
    hiddens, embeddings = [], []
    for batch in batches:
        h = model({"token_ids": clean_ids(batch), "padding_mask": batch["padding_mask"]})["hidden"].numpy()
        hiddens.append(h)
        embeddings.append(np_pool(h, batch["padding_mask"], pooling))
    return hiddens, np.concatenate(embeddings)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(21)
    teacher = build_mlm_model(TINY)
    keras.utils.set_random_seed(22)
    other = build_mlm_model(dict(TINY, num_layers=2))

    def strip(model):
        bare = build_mlm_model(model.model_config, with_mlm_head=False)
        bare.backbone.set_weights(model.backbone.get_weights())
        return bare

    return {"teacher": teacher, "other": other, "bare_teacher": strip(teacher), "bare_other": strip(other)}


@pytest.fixture(scope="module")
def padded_batches():
    """Masked batches with much padding (lengths 4 to 16 of 16)."""
    return [make_batch(batch_size=8, seq_len=16, num_predictions=3, vocab_size=VOCAB, seed=s, min_len=4)
            for s in range(3)]


def test_figures_use_the_teachers_pooling_on_clean_padded_text(models, padded_batches):
    pooling = SentencePooling("max", normalize=True)
    teacher, other = models["bare_teacher"], models["bare_other"]
    teacher.pooling = pooling
    try:
        report = evaluate_models({"teacher": teacher, "other": other}, padded_batches, "teacher", latency_runs=0)
        capped = evaluate_models({"teacher": teacher, "other": other}, padded_batches, "teacher", latency_runs=0,
                                 max_texts=10)
    finally:
        teacher.pooling = None
    assert report["data"]["pooling"] == {"mode": "max", "normalize": True, "max_seq_length": None,
                                         "source": "teacher"}
    assert report["data"]["texts"] == report["data"]["sequences"] == 24 and capped["data"]["texts"] == 10
    t_hidden, t_emb = np_embeddings(teacher, padded_batches, pooling)
    m_hidden, m_emb = np_embeddings(other, padded_batches, pooling)
    v = report["models"]["other"]["vs_teacher"]
    sentence, rho, agree = reference_figures(m_emb, t_emb)
    assert v["sentence_cosine"] == pytest.approx(sentence, abs=1e-5)
    assert v["similarity_spearman"] == pytest.approx(rho, abs=1e-5)
    assert v["neighbour_agreement"] == pytest.approx(agree, abs=1e-9)
    for key in ("sentence_cosine", "similarity_spearman", "neighbour_agreement"):
        assert 0 < v[key] < 1, key
    pads = [b["padding_mask"] > 0 for b in padded_batches]
    token_cos = np.concatenate([[np_cos(a, b) for a, b in zip(ht[p], hm[p])]
                                for ht, hm, p in zip(t_hidden, m_hidden, pads)])
    assert v["hidden_cosine"] == pytest.approx(token_cos.mean(), abs=1e-5)
    # Capped: the pairwise figures over the first 10 texts, the cosines still over all 24.
    c = capped["models"]["other"]["vs_teacher"]
    _, rho10, agree10 = reference_figures(m_emb[:10], t_emb[:10])
    assert c["similarity_spearman"] == pytest.approx(rho10, abs=1e-5)
    assert c["neighbour_agreement"] == pytest.approx(agree10, abs=1e-9)
    assert c["sentence_cosine"] == v["sentence_cosine"] and c["hidden_cosine"] == v["hidden_cosine"]
    # Mean pooling (the default of a teacher without one) gives other figures.
    mean = evaluate_models({"teacher": teacher, "other": other}, padded_batches, "teacher", latency_runs=0)
    assert mean["data"]["pooling"]["mode"] == "mean" and mean["data"]["pooling"]["source"] == "default"
    assert mean["models"]["other"]["vs_teacher"]["sentence_cosine"] == pytest.approx(
        reference_figures(np_embeddings(other, padded_batches, SentencePooling())[1],
                          np_embeddings(teacher, padded_batches, SentencePooling())[1])[0], abs=1e-5)
    assert abs(mean["models"]["other"]["vs_teacher"]["sentence_cosine"] - v["sentence_cosine"]) > 1e-3
    none = evaluate_models({"teacher": teacher, "other": other}, padded_batches, "teacher", latency_runs=0,
                           max_texts=0)
    assert none["data"]["texts"] == 0 and none["models"]["other"]["vs_teacher"]["similarity_spearman"] is None


def test_embeddings_are_computed_on_the_clean_text(models, padded_batches):
    batch = padded_batches[0]
    masked_as_text = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
    clean = {"token_ids": clean_ids(batch), "padding_mask": batch["padding_mask"]}
    for model in (models["teacher"], models["bare_teacher"]):
        np.testing.assert_array_equal(sentence_embeddings(model, batch), sentence_embeddings(model, clean))
        assert np.abs(sentence_embeddings(model, batch) - sentence_embeddings(model, masked_as_text)).max() > 1e-3
    # Headed models on masked batches (MLM figures on the masks) and their head-less encoders on the clean
    # batches give the same embedding figures.
    headed = evaluate_models({"teacher": models["teacher"], "other": models["other"]}, padded_batches, "teacher",
                             latency_runs=0)
    plain = [{"token_ids": clean_ids(b), "padding_mask": b["padding_mask"]} for b in padded_batches]
    bare = evaluate_models({"teacher": models["bare_teacher"], "other": models["bare_other"]}, plain, "teacher",
                           latency_runs=0)
    assert headed["models"]["other"]["masked_lm_accuracy"] is not None and headed["data"]["masked_tokens"] > 0
    for key in EMBEDDING_KEYS:
        assert headed["models"]["other"]["vs_teacher"][key] == pytest.approx(
            bare["models"]["other"]["vs_teacher"][key], abs=1e-6), key


def test_a_narrower_model_gets_the_width_free_figures_only(models, padded_batches):
    """Cosines need equal widths (null across widths); the Spearman of pairwise similarities and the
    neighbour agreement compare each model's own similarities, so a narrower student gets them too."""
    narrow = build_mlm_model(dict(TINY, hidden_size=16, num_layers=1))
    report = evaluate_models({"teacher": models["teacher"], "narrow": narrow, "same": models["teacher"]},
                             padded_batches, "teacher", latency_runs=0)
    v = report["models"]["narrow"]["vs_teacher"]
    assert v["hidden_cosine"] is None and v["sentence_cosine"] is None and v["top1_agreement"] is not None
    assert -1 <= v["similarity_spearman"] < 0.999 and 0 <= v["neighbour_agreement"] <= 1
    assert report["models"]["same"]["vs_teacher"]["similarity_spearman"] == pytest.approx(1.0)


# ---- the reference row ---------------------------------------------------------------------------

def test_reference_row_layers_and_weights(models, tmp_path):
    teacher = models["teacher"]
    two, three = build_student(teacher, [1, 3]), build_student(teacher, [0, 1, 3])
    out, info = add_copied_reference({"teacher": teacher, "student": two}, "teacher")
    assert list(out) == ["teacher", "student", COPIED_NAME]
    assert info == {"name": COPIED_NAME, "layers": [0, 2], "source": "every other layer", "like": "student"}
    expected = build_student(teacher, [0, 2])
    for got, want in zip(out[COPIED_NAME].get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(got, want)
    inputs = {"token_ids": np.arange(5, 17).reshape(2, 6), "padding_mask": np.array([[1] * 6, [1] * 4 + [0] * 2])}
    np.testing.assert_array_equal(out[COPIED_NAME](inputs)["hidden"], expected(inputs)["hidden"])
    assert out[COPIED_NAME].with_mlm_head == teacher.with_mlm_head
    _, info = add_copied_reference({"teacher": teacher, "student": three}, "teacher")
    assert (info["layers"], info["source"]) == ([0, 1, 2], "evenly spaced")
    # Explicit layers add the row even without a smaller model; "none" adds none; a clash renames it.
    out, info = add_copied_reference({"teacher": teacher, COPIED_NAME: teacher}, "teacher", [3, 1])
    assert info["name"] == f"{COPIED_NAME} 2" and (info["layers"], info["source"], info["like"]) == ([3, 1], "given", None)
    assert add_copied_reference({"teacher": teacher, "student": two}, "teacher", "none") == (
        {"teacher": teacher, "student": two}, None)
    assert add_copied_reference({"teacher": teacher, "same": teacher}, "teacher")[1] is None
    assert add_copied_reference({"a": teacher, "b": two}, None)[1] is None
    with pytest.raises(ConfigError, match="need a teacher"):
        add_copied_reference({"a": teacher}, None, [0])
    with pytest.raises(ConfigError, match=r"--copied-layers: \[9\] out of range"):
        add_copied_reference({"teacher": teacher, "student": two}, "teacher", [0, 9])
    # From the run folder a saved student lies in.
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"distill": {"student_layers": [1, 3]}}))
    for leaf in ("keras_hub", "student.keras", "keras_hub/"):
        assert run_student_layers(str(run / "student" / leaf)) == [1, 3]
    assert run_student_layers(str(tmp_path / "elsewhere" / "student.keras")) is None
    assert copied_layers_for(4, 2, str(run / "student" / "keras_hub")) == ([1, 3], "run config")
    assert copied_layers_for(4, 3, str(run / "student" / "keras_hub")) == ([0, 1, 2], "evenly spaced")
    _, info = add_copied_reference({"teacher": teacher, "student": two}, "teacher",
                                   paths={"student": str(run / "student" / "student.keras")})
    assert (info["layers"], info["source"]) == ([1, 3], "run config")
    (run / "config.json").write_text(json.dumps({"distill": {"student_layers": None}}))
    assert run_student_layers(str(run / "student" / "keras_hub")) is None
    assert evenly_spaced_layers(12, 4) == [0, 3, 6, 9] and evenly_spaced_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert parse_copied_layers("0, 2,4") == [0, 2, 4] and parse_copied_layers("none") == "none"
    assert parse_copied_layers(None) is None and parse_copied_layers("auto") is None
    with pytest.raises(ConfigError, match="--copied-layers"):
        parse_copied_layers("0,two")


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, models):
    """A teacher, a run folder whose student copied layers [1, 3] then moved, build_student's [1, 3] saved
    elsewhere, a vocabulary and 40 held-out lines."""
    root = tmp_path_factory.mktemp("eval_embeddings")
    rng = np.random.default_rng(3)
    (root / "heldout.txt").write_text(random_lines(write_word_vocab(root, VOCAB), 40, rng))
    teacher = models["teacher"]
    teacher.save(root / "teacher.keras")
    (root / "run" / "student").mkdir(parents=True)
    (root / "run" / "config.json").write_text(json.dumps({"distill": {"student_layers": [1, 3]}}))
    student = build_student(teacher, [1, 3])
    student.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in student.get_weights()])
    student.save(root / "run" / "student" / "student.keras")
    build_student(teacher, [1, 3]).save(root / "manual.keras")
    return root


def _table(printed: str) -> tuple[list[str], dict[str, dict]]:
    lines = printed.splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    rows = {}
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            rows[cells[0]] = dict(zip(header, cells))
    return lines, rows


def test_cli_table_json_and_reference_row(cli_files, tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["evaluate", "--teacher", str(cli_files / "teacher.keras"),
            "--model", f"student={cli_files / 'run' / 'student' / 'student.keras'}",
            "--model", f"manual={cli_files / 'manual.keras'}", "--data", str(cli_files / "heldout.txt"),
            "--vocab", str(cli_files / "vocab.txt"), "--max-len", "32", "--batch-size", "8",
            "--latency-runs", "0", "--max-texts", "30", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    data = report["data"]
    assert data["copied_reference"] == {"name": COPIED_NAME, "layers": [1, 3], "source": "run config",
                                        "like": "student"}
    assert data["texts"] == 30 and data["sequences"] == 40 and data["min_len"] == 12
    assert data["pooling"] == {"mode": "mean", "normalize": False, "max_seq_length": None, "source": "default"}
    copied, manual, student = (report["models"][n] for n in (COPIED_NAME, "manual", "student"))
    assert copied["copied_layers"] == [1, 3] and "copied_layers" not in student
    # The row is build_student(teacher, [1, 3]): the same figures as that model saved and loaded.
    for key in ("masked_lm_accuracy", "perplexity", "params"):
        assert copied[key] == pytest.approx(manual[key], abs=1e-9), key
    for key, value in copied["vs_teacher"].items():
        assert value == pytest.approx(manual["vs_teacher"][key], abs=1e-6), key
    for key in EMBEDDING_KEYS:
        assert isinstance(student["vs_teacher"][key], float) and -1 <= student["vs_teacher"][key] <= 1, key
    assert student["vs_teacher"]["sentence_cosine"] != copied["vs_teacher"]["sentence_cosine"]
    lines, rows = _table(capsys.readouterr().out)
    assert re.split(r"\s{2,}", lines[0].strip()) == [
        "model", "params", "MLM acc", "ppl", "ms/batch", "agree", "KL", "tok cos", "sent cos", "sim rho",
        "NN agree", "retention", "speedup"]
    assert set(rows) == {"teacher", "student", "manual", COPIED_NAME}
    assert rows[COPIED_NAME]["sim rho"] == f"{copied['vs_teacher']['similarity_spearman']:.4f}"
    assert rows[COPIED_NAME]["NN agree"] == f"{copied['vs_teacher']['neighbour_agreement']:.4f}"
    assert rows["student"]["sent cos"] == f"{student['vs_teacher']['sentence_cosine']:.4f}"
    assert rows["teacher"]["sim rho"] == rows["teacher"]["NN agree"] == rows["teacher"]["ms/batch"] == "-"
    assert any(line.startswith("sentence embeddings on the clean text: mean pooling") and "over 30 texts" in line
               for line in lines)
    assert f"{COPIED_NAME}: teacher layers 1,3 copied, not trained (run config)" in lines
    # --copied-layers none: no row; explicit layers: those.
    assert main(argv + ["--copied-layers", "none"]) == 0
    report = json.loads(out.read_text())
    assert COPIED_NAME not in report["models"] and report["data"]["copied_reference"] is None
    assert COPIED_NAME not in capsys.readouterr().out
    assert main(argv + ["--copied-layers", "0,3", "--max-texts", "0"]) == 0
    report = json.loads(out.read_text())
    assert report["data"]["copied_reference"]["layers"] == [0, 3] and report["data"]["texts"] == 0
    assert report["models"][COPIED_NAME]["vs_teacher"]["similarity_spearman"] is None


# ---- the real teacher ----------------------------------------------------------------------------

SENTENCES = [
    "The cat sat quietly on the warm windowsill.", "A dog chased the ball across the park.",
    "My neighbour's puppy barks at every passing car.", "Kittens love to play with balls of yarn.",
    "The horse galloped through the open field.", "Birds were singing in the tall oak tree.",
    "A small mouse hid behind the kitchen cupboard.", "The parrot repeated every word it heard.",
    "Fresh bread was baking in the oven this morning.", "She cooked pasta with tomato sauce for dinner.",
    "We ordered pizza and ate it on the balcony.", "The soup needs a little more salt.",
    "He made pancakes with maple syrup for breakfast.", "This restaurant serves the best sushi in town.",
    "I drink a cup of strong coffee every morning.", "The chocolate cake was far too sweet.",
    "The stock market fell sharply on Monday.", "Interest rates were raised by the central bank.",
    "The company reported record profits this quarter.", "Investors are worried about rising inflation.",
    "She opened a savings account at the local bank.", "The price of oil climbed again this week.",
    "Small businesses struggled during the recession.", "He paid off his mortgage ten years early.",
    "The team won the championship after extra time.", "She scored two goals in the second half.",
    "The marathon runners crossed the finish line.", "Our tennis match was cancelled because of rain.",
    "The referee showed him a red card.", "He swims thirty laps in the pool every day.",
    "The basketball game went into overtime.", "The cyclists climbed the steep mountain road.",
    "It rained heavily all night long.", "A strong wind knocked down several trees.",
    "The forecast says it will snow tomorrow.", "The summer heat made everyone tired.",
    "Thick fog covered the harbour at dawn.", "A thunderstorm is moving towards the coast.",
    "The sky cleared up in the afternoon.", "Frost covered the grass this morning.",
    "The new laptop has a faster processor.", "Please restart your computer to install the update.",
    "The software crashed when I opened the file.", "My phone battery dies too quickly.",
    "They released a new version of the app.", "The website was down for maintenance.",
    "He wrote a program to sort the data.", "The printer is out of ink again.",
    "The train to London was delayed by an hour.", "We flew to Rome for a long weekend.",
    "The hotel room had a view of the sea.", "They missed the last bus home.",
    "Our flight was cancelled because of the storm.", "She packed her suitcase the night before.",
    "The museum was full of tourists.", "We hiked along the coast for three days.",
    "The children built a sandcastle on the beach.", "He reads a novel before going to sleep.",
    "The orchestra played a beautiful symphony.", "She is learning to play the violin.",
    "The painting was sold at auction.", "The library closes at eight tonight.",
    "The students passed their final exams.", "The teacher explained the lesson again.",
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_teacher_against_itself_and_its_copied_student(tmp_path, capsys):
    """all-MiniLM-L6-v2 as the teacher and as a model (figures exactly 1), and the copied student of its
    layers 0, 2, 4 (figures strictly inside (0, 1)), the teacher side recomputed with sentence-transformers."""
    SentenceTransformer = require("sentence_transformers").SentenceTransformer

    from keras_distil.models.checkpoint_formats import load_teacher

    path = real_teacher_path()
    assert len(set(SENTENCES)) == len(SENTENCES) == 64
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "report.json"
    assert main(["evaluate", "--teacher", path, "--model", f"self={path}", "--data", str(data),
                 "--copied-layers", "0,2,4", "--batch-size", "16", "--latency-runs", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["data"]["sequences"] == report["data"]["texts"] == 64 and report["data"]["min_len"] == 3
    assert report["data"]["pooling"] == {"mode": "mean", "normalize": True, "max_seq_length": 256,
                                         "source": "teacher"}
    assert report["data"]["copied_reference"]["layers"] == [0, 2, 4]
    assert all(m["mlm_head"] is False for m in report["models"].values())
    same = report["models"]["self"]["vs_teacher"]
    for key in EMBEDDING_KEYS:
        assert same[key] == 1.0, key
    copied = report["models"][COPIED_NAME]["vs_teacher"]
    for key in EMBEDDING_KEYS:
        assert 0 < copied[key] < 1, key

    st = SentenceTransformer(path, device="cpu")
    teacher_emb = st.encode(SENTENCES, convert_to_numpy=True, batch_size=16)
    features = st.tokenize(SENTENCES)
    ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy()
    student = build_student(load_teacher(path, require_mlm_head=False).model, [0, 2, 4])
    hidden = student({"token_ids": ids, "padding_mask": mask})["hidden"].numpy().astype("float64")
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    student_emb = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    sentence, rho, agree = reference_figures(student_emb, teacher_emb)
    assert copied["sentence_cosine"] == pytest.approx(sentence, abs=1e-4)
    assert copied["similarity_spearman"] == pytest.approx(rho, abs=1e-4)
    assert copied["neighbour_agreement"] == pytest.approx(agree, abs=1e-4)
    assert math.isfinite(copied["hidden_cosine"])
    printed = capsys.readouterr().out
    assert "mean pooling, normalized (the teacher's)" in printed and "over 64 texts" in printed
