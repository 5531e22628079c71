"""keras-distil evaluate: metrics against numpy formulas, identical models, deterministic held-out masks, CLI."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_batch

from keras_distil import build_mlm_model
from keras_distil.config import ConfigError
from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer
from keras_distil.evaluate import (
    agreement_sums,
    cosine_sums,
    evaluate_models,
    heldout_batches,
    main,
    masked_lm_sums,
)

VOCAB = 120
TINY = dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=64, dropout=0.0)


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
    teacher_accuracy = report["models"]["teacher"]["masked_lm_accuracy"]
    assert same["accuracy_retention"] == (1.0 if teacher_accuracy else None)  # None: a teacher at 0 %
    assert same["perplexity_ratio"] == 1.0 and same["param_ratio"] == 1.0
    other = report["models"]["other"]["vs_teacher"]
    logq, logp = np_log_softmax(logits["teacher"]), np_log_softmax(logits["other"])
    assert other["top1_agreement"] == pytest.approx(
        ((logits["teacher"].argmax(-1) == logits["other"].argmax(-1)) * w).sum() / w.sum())
    assert other["kl"] == pytest.approx(((np.exp(logq) * (logq - logp)).sum(-1) * w).sum() / w.sum(), rel=1e-4)
    assert other["kl"] > 0.01 and other["hidden_cosine"] < 0.99
    assert report["models"]["other"]["params"] < report["models"]["teacher"]["params"]
    assert report["data"] == {"batches": 3, "sequences": 12, "masked_tokens": int(w.sum())}


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
    words = [f"w{i}" for i in range(VOCAB - len(SPECIAL_TOKENS))]
    (root / "vocab.txt").write_text("".join(t + "\n" for t in list(SPECIAL_TOKENS) + words))
    rng = np.random.default_rng(3)
    lines = [" ".join(rng.choice(words, rng.integers(12, 30))) for _ in range(40)]
    (root / "heldout.txt").write_text("\n".join(lines) + "\n")
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
    assert set(report["models"]) == {"teacher", "student", "same"}
    assert report["models"]["same"]["vs_teacher"]["top1_agreement"] == 1.0
    assert report["data"]["sequences"] == 40 and report["data"]["seed"] == 1234
    printed = capsys.readouterr().out
    assert "student" in printed and "report:" in printed
    # The teacher file loaded twice scores exactly alike on the same masks.
    for key in ("masked_lm_accuracy", "nll"):
        assert report["models"]["same"][key] == report["models"]["teacher"][key]
    with pytest.raises(ConfigError, match="pass --vocab"):
        main(argv[:argv.index("--vocab")] + argv[argv.index("--vocab") + 2:])


def test_registered_in_the_cli(tmp_path, monkeypatch, capsys):
    """The one-line hook the CLI owner adds; a missing checkpoint is a one-line error with status 2."""
    from keras_distil import cli

    monkeypatch.setitem(cli.COMMANDS, "evaluate", ("keras_distil.evaluate", "add_evaluate_parser", "evaluate"))
    missing = str(tmp_path / "nothing")
    assert cli.main(["evaluate", "--model", missing, "--data", missing]) == 2
    assert f"keras-distil evaluate: error: {missing}: no such file or folder" in capsys.readouterr().err
