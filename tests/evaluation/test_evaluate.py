"""keras-distil evaluate: metrics against numpy formulas, identical models, deterministic held-out masks,
encoder-only (head-less) models, CLI. The sentence-embedding figures and the reference row:
test_evaluate_embeddings.py."""

import json
import math
import re

import numpy as np
import pytest
import tensorflow as tf
from helpers.batches import TINY_MODEL, make_batch, pattern_batch
from helpers.tiny_corpus import random_lines, write_word_vocab

from keras_distil import build_mlm_model
from keras_distil.cli.evaluate import main
from keras_distil.config import ConfigError
from keras_distil.data.tokenize import WordPieceTokenizer
from keras_distil.evaluation import (
    COPIED_NAME,
    agreement_sums,
    cosine_sums,
    evaluate_models,
    format_report,
    heldout_batches,
    masked_lm_sums,
    unmasked_token_ids,
)

VOCAB = TINY_MODEL["vocab_size"]
TINY = dict(TINY_MODEL, num_layers=2)


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_sums_match_numpy():
    rng = np.random.default_rng(0)
    t_logits = rng.normal(size=(2, 3, 7)).astype("float32") * 3
    s_logits = rng.normal(size=(2, 3, 7)).astype("float32") * 3
    ids = rng.integers(0, 7, (2, 3)).astype("int32")
    w = np.array([[1, 1, 0], [1, 0, 0]], "float32")
    got = masked_lm_sums(s_logits, ids, w)
    logp = np_log_softmax(s_logits.astype("float64"))
    nll = -np.take_along_axis(logp, ids[..., None], -1)[..., 0]
    assert got["weight"] == 3
    assert got["correct"] == ((s_logits.argmax(-1) == ids) * w).sum()
    assert got["nll"] == pytest.approx((nll * w).sum(), rel=1e-5)
    got = agreement_sums(t_logits, s_logits, w)
    logq = np_log_softmax(t_logits.astype("float64"))
    kl = (np.exp(logq) * (logq - logp)).sum(-1)
    assert got["agree"] == ((t_logits.argmax(-1) == s_logits.argmax(-1)) * w).sum()
    assert got["kl"] == pytest.approx((kl * w).sum(), rel=1e-5)


def test_cosine_sums_match_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 2, 4, 5)).astype("float32")
    padding = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "int32")
    got = cosine_sums(a, b, padding)
    assert got["tokens"] == 5 and got["sequences"] == 2
    assert got["hidden_cos"] == pytest.approx((np_cos(a, b) * padding).sum(), rel=1e-5)
    pa = [a[i, padding[i] > 0].mean(0) for i in range(2)]
    pb = [b[i, padding[i] > 0].mean(0) for i in range(2)]
    assert got["sentence_cos"] == pytest.approx(sum(np_cos(x, y) for x, y in zip(pa, pb)), rel=1e-5)


@pytest.fixture(scope="module")
def tiny_models():
    keras_seed = tf.keras.utils.set_random_seed
    keras_seed(1)
    teacher = build_mlm_model(TINY)
    copy = build_mlm_model(TINY)
    copy.set_weights(teacher.get_weights())
    keras_seed(2)
    other = build_mlm_model(dict(TINY, num_layers=1))
    return {"teacher": teacher, "copy": copy, "other": other}


def test_tiny_models_against_numpy(tiny_models):
    batches = [make_batch(batch_size=4, seq_len=12, num_predictions=3, vocab_size=VOCAB, seed=s) for s in range(3)]
    report = evaluate_models(tiny_models, batches, teacher_name="teacher", latency_runs=1)
    json.dumps(report)
    outs = {name: [m({k: b[k] for k in ("token_ids", "padding_mask", "mask_positions")}) for b in batches]
            for name, m in tiny_models.items()}
    w = np.concatenate([b["mask_weights"].ravel() for b in batches])
    ids = np.concatenate([b["mask_ids"].ravel() for b in batches])
    logits = {n: np.concatenate([o["logits"].numpy().reshape(-1, VOCAB) for o in outs[n]]).astype("float64")
              for n in outs}
    for name in tiny_models:
        m = report["models"][name]
        nll = -np_log_softmax(logits[name])[np.arange(len(ids)), ids]
        assert m["masked_lm_accuracy"] == pytest.approx(((logits[name].argmax(-1) == ids) * w).sum() / w.sum())
        assert m["perplexity"] == pytest.approx(math.exp((nll * w).sum() / w.sum()), rel=1e-5)
        assert m["params"] == sum(int(np.prod(v.shape)) for v in tiny_models[name].weights)
        assert m["latency_s"] > 0
    same = report["models"]["copy"]["vs_teacher"]
    assert same["top1_agreement"] == 1.0 and abs(same["kl"]) < 1e-6
    assert same["hidden_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert same["sentence_cosine"] == pytest.approx(1.0, abs=1e-6)
    # Retention and the perplexity ratio with figures that are not trivial: test_against_a_teacher_that_knows_its_data.
    assert same["perplexity_ratio"] == 1.0 and same["param_ratio"] == 1.0
    other = report["models"]["other"]["vs_teacher"]
    logq, logp = np_log_softmax(logits["teacher"]), np_log_softmax(logits["other"])
    assert other["top1_agreement"] == pytest.approx(
        ((logits["teacher"].argmax(-1) == logits["other"].argmax(-1)) * w).sum() / w.sum())
    assert other["kl"] == pytest.approx(((np.exp(logq) * (logq - logp)).sum(-1) * w).sum() / w.sum(), rel=1e-4)
    assert other["kl"] > 0.01 and other["hidden_cosine"] < 0.99
    assert report["models"]["other"]["params"] < report["models"]["teacher"]["params"]
    assert report["data"] == {"batches": 3, "sequences": 12, "masked_tokens": int(w.sum()), "texts": 12,
                              "pooling": {"mode": "mean", "normalize": False, "max_seq_length": None,
                                          "source": "default"},
                              "latency_forward": "masked_lm"}
    assert all(m["mlm_head"] for m in report["models"].values())


# ---- a teacher that gets the masked tokens right --------------------------------------------------
# The session's confident tiny teacher (tests/helpers/confident_teacher.py: top-1 accuracy 1.0 on pattern
# rows), an exact copy of it, and a copy whose transformer kernels got Gaussian noise of 1.5 times each
# kernel's standard deviation (seeded): it still gets about half of the masked tokens right (measured: 71 of
# 131, perplexity 7.3 against the teacher's 1.14, KL 1.6), so accuracy, retention, the perplexity ratio, top-1
# agreement and KL all take values away from their extremes, each checked against numpy on the models' logits.

NOISE_SCALE = 1.5


@pytest.fixture(scope="module")
def confident_models(confident_teacher):
    teacher, copy, student = (confident_teacher(name=name) for name in ("teacher", "copy", "student"))
    rng = np.random.default_rng(0)
    for variable in student.weights:
        if variable.path.startswith("transformer_layer") and variable.path.endswith("kernel"):
            w = variable.numpy()
            variable.assign(w + rng.normal(size=w.shape).astype("float32") * NOISE_SCALE * w.std())
    return {"teacher": teacher, "copy": copy, "student": student}


@pytest.fixture(scope="module")
def pattern_batches():
    return [pattern_batch(batch_size=16, seq_len=16, seed=100 + s) for s in range(3)]


def np_masked_lm(models, batches):
    """Per model, float64 numpy over the used slots of ``batches``: logits [N, V], labels [N]."""
    keys = ("token_ids", "padding_mask", "mask_positions")
    used = np.concatenate([b["mask_weights"].ravel() > 0 for b in batches])
    labels = np.concatenate([b["mask_ids"].ravel() for b in batches])[used]
    logits = {name: np.concatenate([m({k: b[k] for k in keys}, training=False)["logits"].numpy().reshape(-1, VOCAB)
                                    for b in batches]).astype("float64")[used] for name, m in models.items()}
    return logits, labels


def test_against_a_teacher_that_knows_its_data(confident_models, pattern_batches):
    report = evaluate_models(confident_models, pattern_batches, teacher_name="teacher", latency_runs=0)
    logits, labels = np_masked_lm(confident_models, pattern_batches)
    accuracy = {n: float(np.mean(x.argmax(-1) == labels)) for n, x in logits.items()}
    nll = {n: float(-np_log_softmax(x)[np.arange(len(labels)), labels].mean()) for n, x in logits.items()}
    assert accuracy["teacher"] == 1.0 and accuracy["copy"] == 1.0
    assert 0.2 < accuracy["student"] < 0.9, accuracy  # strictly between 0 and the teacher's
    logq = np_log_softmax(logits["teacher"])
    for name in ("teacher", "copy", "student"):
        m = report["models"][name]
        assert m["masked_lm_accuracy"] == pytest.approx(accuracy[name], abs=1e-12)
        assert m["nll"] == pytest.approx(nll[name], rel=1e-5)
        assert m["perplexity"] == pytest.approx(math.exp(nll[name]), rel=1e-5)
    for name in ("copy", "student"):
        v = report["models"][name]["vs_teacher"]
        logp = np_log_softmax(logits[name])
        assert v["accuracy_retention"] == pytest.approx(accuracy[name] / accuracy["teacher"], abs=1e-12)
        assert v["perplexity_ratio"] == pytest.approx(math.exp(nll[name] - nll["teacher"]), rel=1e-5)
        assert v["top1_agreement"] == pytest.approx(np.mean(logits[name].argmax(-1) == logits["teacher"].argmax(-1)),
                                                    abs=1e-12)
        assert v["kl"] == pytest.approx((np.exp(logq) * (logq - logp)).sum(-1).mean(), rel=1e-4, abs=1e-7)
    copy, student = report["models"]["copy"]["vs_teacher"], report["models"]["student"]["vs_teacher"]
    assert copy["accuracy_retention"] == copy["top1_agreement"] == 1.0 and abs(copy["kl"]) < 1e-5
    assert copy["perplexity_ratio"] == pytest.approx(1.0, abs=1e-6)
    # The perturbed student: every comparison figure away from its extreme.
    assert 0.2 < student["accuracy_retention"] < 0.9 and 0.2 < student["top1_agreement"] < 0.9
    assert student["perplexity_ratio"] > 1.5 and student["kl"] > 0.5
    # The teacher is always right here, so agreeing with it is being right: the two figures coincide.
    assert student["top1_agreement"] == pytest.approx(student["accuracy_retention"], abs=1e-12)


def test_a_teacher_at_zero_accuracy_gives_no_retention(confident_models, pattern_batches):
    """Labels moved off the teacher's (always correct) top-1 token: the teacher scores exactly 0, so the
    retention is undefined (null, never a division by zero or 0); the perplexity ratio is still defined."""
    wrong = []
    for batch in pattern_batches:
        batch = dict(batch)
        shifted = 5 + (batch["mask_ids"] - 5 + 1) % (VOCAB - 5)
        batch["mask_ids"] = np.where(batch["mask_weights"] > 0, shifted, 0).astype("int32")
        wrong.append(batch)
    models = {k: confident_models[k] for k in ("teacher", "student")}
    report = evaluate_models(models, wrong, teacher_name="teacher", latency_runs=0)
    logits, labels = np_masked_lm(models, wrong)
    assert report["models"]["teacher"]["masked_lm_accuracy"] == 0.0
    assert report["models"]["student"]["masked_lm_accuracy"] == pytest.approx(
        np.mean(logits["student"].argmax(-1) == labels), abs=1e-12)
    v = report["models"]["student"]["vs_teacher"]
    assert v["accuracy_retention"] is None
    nll = {n: -np_log_softmax(x)[np.arange(len(labels)), labels].mean() for n, x in logits.items()}
    assert v["perplexity_ratio"] == pytest.approx(math.exp(nll["student"] - nll["teacher"]), rel=1e-5)


def test_bad_inputs(tiny_models):
    with pytest.raises(ConfigError, match="teacher 'nope'"):
        evaluate_models(tiny_models, [], teacher_name="nope")
    with pytest.raises(ConfigError, match="no batch"):
        evaluate_models(tiny_models, [], teacher_name="teacher")
    with pytest.raises(ConfigError, match="vocabulary"):
        evaluate_models({"a": tiny_models["teacher"], "b": build_mlm_model(dict(TINY, vocab_size=130))}, [])


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "heldout.txt").write_text(random_lines(write_word_vocab(root, VOCAB), 40, np.random.default_rng(3)))
    return root


def _as_lists(dataset):
    return [{k: v.numpy().tolist() for k, v in b.items()} for b in dataset]


def test_heldout_masks_are_deterministic(text_files):
    tok = WordPieceTokenizer.from_vocab_file(text_files / "vocab.txt")
    first = _as_lists(heldout_batches(str(text_files / "heldout.txt"), tok))
    assert first == _as_lists(heldout_batches(str(text_files / "heldout.txt"), tok))
    assert sum(len(b["token_ids"]) for b in first) == 40


def test_cli_on_keras_files(tmp_path, text_files, tiny_models, capsys):
    paths = {}
    for name in ("teacher", "other"):
        paths[name] = str(tmp_path / f"{name}.keras")
        tiny_models[name].save(paths[name])
    out = tmp_path / "report.json"
    argv = ["evaluate", "--teacher", paths["teacher"], "--model", f"student={paths['other']}",
            "--model", f"same={paths['teacher']}", "--data", str(text_files / "heldout.txt"),
            "--vocab", str(text_files / "vocab.txt"), "--max-len", "32", "--batch-size", "8",
            "--latency-runs", "1", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    # The 1-layer student of the teacher's width brings the reference row: teacher layer 0, copied.
    assert set(report["models"]) == {"teacher", "student", "same", COPIED_NAME}
    assert report["data"]["copied_reference"] == {"name": COPIED_NAME, "layers": [0], "source": "every other layer",
                                                  "like": "student"}
    assert report["models"][COPIED_NAME]["copied_layers"] == [0]
    assert report["models"]["same"]["vs_teacher"]["top1_agreement"] == 1.0
    assert report["data"]["sequences"] == 40 and report["data"]["seed"] == 1234
    printed = capsys.readouterr().out
    assert "student" in printed and "report:" in printed
    # The teacher file loaded twice scores exactly alike on the same masks.
    for key in ("masked_lm_accuracy", "nll"):
        assert report["models"]["same"][key] == report["models"]["teacher"][key]
    with pytest.raises(ConfigError, match="pass --vocab"):
        main(argv[:argv.index("--vocab")] + argv[argv.index("--vocab") + 2:])
    # A vocabulary of another size than the models' is refused before any work, as distill refuses it.
    short = tmp_path / "short_vocab.txt"
    short.write_text("\n".join((text_files / "vocab.txt").read_text().splitlines()[:VOCAB - 22]) + "\n")
    argv[argv.index("--vocab") + 1] = str(short)
    with pytest.raises(ConfigError, match=f"short_vocab.txt has {VOCAB - 22} tokens, but .*teacher.keras has {VOCAB}"):
        main(argv)


def test_registered_in_the_cli(tmp_path, monkeypatch, capsys):
    """The one-line hook the CLI owner adds; a missing checkpoint is a one-line error with status 2."""
    from keras_distil import cli

    monkeypatch.setitem(cli.COMMANDS, "evaluate", ("keras_distil.cli.evaluate", "add_evaluate_parser", "evaluate"))
    missing = str(tmp_path / "nothing")
    assert cli.main(["evaluate", "--model", missing, "--data", missing]) == 2
    assert f"keras-distil evaluate: error: {missing}: no such file or folder" in capsys.readouterr().err


# ---- encoder-only (head-less) models -----------------------------------------------------------

def np_unmask(batch):
    """The clean ids, one masked slot at a time (reference for unmasked_token_ids)."""
    ids = np.array(batch["token_ids"]).copy()
    for b, p in zip(*np.nonzero(np.asarray(batch["mask_weights"]) > 0)):
        ids[b, batch["mask_positions"][b, p]] = batch["mask_ids"][b, p]
    return ids


def np_cosines(teacher, model, batches, clean):
    """(hidden_cosine, sentence_cosine) by numpy over ``batches``, the models run on the clean or masked ids."""
    token_sum = tokens = sentence_sum = sequences = 0.0
    for batch in batches:
        ids = np_unmask(batch) if clean else batch["token_ids"]
        inputs = {"token_ids": ids, "padding_mask": batch["padding_mask"]}
        ht, hm = (m(inputs)["hidden"].numpy().astype("float64") for m in (teacher, model))
        pad = batch["padding_mask"].astype("float64")
        token_sum += (np_cos(ht, hm) * pad).sum()
        tokens += pad.sum()
        for i in range(len(ids)):
            real = pad[i] > 0
            sentence_sum += np_cos(ht[i, real].mean(0), hm[i, real].mean(0))
            sequences += 1
    return token_sum / tokens, sentence_sum / sequences


def test_unmasked_token_ids_match_numpy():
    batch = make_batch(batch_size=5, seq_len=14, num_predictions=4, vocab_size=VOCAB, seed=7)
    clean = unmasked_token_ids(batch).numpy()
    np.testing.assert_array_equal(clean, np_unmask(batch))
    assert (clean != batch["token_ids"]).any()  # the batch was masked: the test can tell the two apart
    plain = {k: batch[k] for k in ("token_ids", "padding_mask")}
    np.testing.assert_array_equal(unmasked_token_ids(plain).numpy(), batch["token_ids"])


def test_unmasked_heldout_batches_are_the_tokenized_text(text_files):
    """Every masked, random and kept slot of the real pipeline is undone: the rows are the tokenized lines."""
    vocab = (text_files / "vocab.txt").read_text().split()
    lines = (text_files / "heldout.txt").read_text().splitlines()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    expected = sorted((cls, *(vocab.index(w) for w in line.split()), sep) for line in lines)
    tok = WordPieceTokenizer.from_vocab_file(text_files / "vocab.txt")
    got, changed = [], 0
    for batch in heldout_batches(str(text_files / "heldout.txt"), tok):
        clean, pad = unmasked_token_ids(batch).numpy(), batch["padding_mask"].numpy()
        got += [tuple(row[p > 0].tolist()) for row, p in zip(clean, pad)]
        changed += int((clean != batch["token_ids"].numpy()).sum())
    assert sorted(got) == expected and changed > 0


@pytest.fixture(scope="module")
def headless_models(tiny_models):
    """The tiny models' encoders without their MLM heads (same backbone weights)."""
    def strip(model):
        bare = build_mlm_model(model.model_config, with_mlm_head=False)
        bare.backbone.set_weights(model.backbone.get_weights())
        return bare

    return {name: strip(tiny_models[name]) for name in ("teacher", "other")}


@pytest.fixture(scope="module")
def batches():
    return [make_batch(batch_size=4, seq_len=12, num_predictions=3, vocab_size=VOCAB, seed=s) for s in range(2)]


MLM_FIELDS = ("masked_lm_accuracy", "nll", "perplexity")
AGREEMENT_FIELDS = ("top1_agreement", "kl", "accuracy_retention", "perplexity_ratio")


def test_embedding_only_evaluation_on_clean_inputs(headless_models, batches):
    teacher, other = headless_models["teacher"], headless_models["other"]
    report = evaluate_models({"teacher": teacher, "copy": teacher, "other": other}, batches, "teacher",
                             latency_runs=1)
    json.dumps(report)
    assert report["data"]["latency_forward"] == "encoder" and report["data"]["texts"] == 8
    for m in report["models"].values():
        assert m["mlm_head"] is False and all(m[k] is None for k in MLM_FIELDS) and m["latency_s"] > 0
    same, versus = report["models"]["copy"]["vs_teacher"], report["models"]["other"]["vs_teacher"]
    # The same model object listed twice: every embedding figure exactly 1.
    for key in ("hidden_cosine", "sentence_cosine", "similarity_spearman", "neighbour_agreement"):
        assert same[key] == 1.0, key
    assert all(versus[k] is None for k in AGREEMENT_FIELDS) and versus["param_ratio"] < 1
    clean = np_cosines(teacher, other, batches, clean=True)
    assert (versus["hidden_cosine"], versus["sentence_cosine"]) == pytest.approx(clean, rel=1e-5)
    # The masked inputs would have given other (here clearly different) figures.
    assert abs(np_cosines(teacher, other, batches, clean=False)[0] - clean[0]) > 1e-3
    report = evaluate_models({"teacher": teacher, "other": other}, batches, "teacher", latency_runs=0)
    assert report["data"]["latency_forward"] is None and report["models"]["other"]["vs_teacher"]["speedup"] is None


def test_mixed_heads(tiny_models, headless_models, batches):
    """Head-less teacher, headed student and the reverse: MLM figures where a head exists, cosines always,
    on the clean text."""
    report = evaluate_models({"teacher": headless_models["teacher"], "student": tiny_models["other"]}, batches,
                             "teacher", latency_runs=1)
    assert report["data"]["latency_forward"] == "encoder"
    student = report["models"]["student"]
    assert student["mlm_head"] and student["masked_lm_accuracy"] is not None and student["perplexity"] > 1
    assert all(student["vs_teacher"][k] is None for k in AGREEMENT_FIELDS)
    clean = np_cosines(headless_models["teacher"], tiny_models["other"], batches, clean=True)
    v = student["vs_teacher"]
    assert (v["hidden_cosine"], v["sentence_cosine"]) == pytest.approx(clean, rel=1e-5)
    assert v["speedup"] > 0
    report = evaluate_models({"teacher": tiny_models["teacher"], "student": headless_models["teacher"]}, batches,
                             "teacher", latency_runs=0)
    student = report["models"]["student"]
    assert all(student[k] is None for k in MLM_FIELDS) and report["models"]["teacher"]["perplexity"] > 1
    assert all(student["vs_teacher"][k] is None for k in AGREEMENT_FIELDS)
    assert student["vs_teacher"]["sentence_cosine"] == pytest.approx(1.0)  # the teacher's own encoder
    table = format_report(report).splitlines()
    row = dict(zip(re.split(r"\s{2,}", table[0].strip()), table[2].split()))  # headers may hold one space
    assert row["model"] == "student" and row["sent cos"] == "1.0000" and row["sim rho"] == "1.0000"
    assert row["MLM acc"] == row["ppl"] == row["agree"] == row["KL"] == row["retention"] == row["ms/batch"] == "-"
    plain = [{k: b[k] for k in ("token_ids", "padding_mask")} for b in batches]
    with pytest.raises(ConfigError, match="no mask_positions, mask_ids, mask_weights, but student has an MLM head"):
        evaluate_models({"teacher": headless_models["teacher"], "student": tiny_models["other"]}, plain, "teacher")
    # Batches without masks are fine when no model has a head: they are clean text already.
    report = evaluate_models(headless_models, plain, "teacher", latency_runs=0)
    assert report["data"]["masked_tokens"] == 0
    assert report["models"]["other"]["vs_teacher"]["sentence_cosine"] == pytest.approx(
        np_cosines(headless_models["teacher"], headless_models["other"], batches, clean=False)[1], rel=1e-5)
