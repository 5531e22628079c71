"""keras-distil finetune: classification on a separable toy task, task distillation's loss, bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_distil import build_mlm_model
from keras_distil.cli.finetune import main
from keras_distil.data.base import DataError
from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer
from keras_distil.finetune import (
    TaskDistiller,
    TextClassifier,
    accuracy,
    encode_dataset,
    finetune_classifier,
    load_text_classification,
    load_tfds_classification,
    task_distillation_loss,
)

POS = [f"good{i}" for i in range(40)]
NEG = [f"bad{i}" for i in range(40)]
NEUTRAL = [f"the{i}" for i in range(35)]
VOCAB = list(SPECIAL_TOKENS) + POS + NEG + NEUTRAL  # 120 tokens
TINY = dict(vocab_size=len(VOCAB), hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
            max_position_embeddings=32, dropout=0.0)


def _examples(n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(POS if label == "pos" else NEG, 3)) + list(rng.choice(NEUTRAL, 5))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    (root / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB))
    (root / "train.tsv").write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for x, y in _examples(160, 0)))
    (root / "test.csv").write_text("text,label\n" + "".join(f"{x},{y}\n" for x, y in _examples(40, 1)))
    return root


@pytest.fixture(scope="module")
def tokenizer(task_files):
    return WordPieceTokenizer.from_vocab_file(task_files / "vocab.txt")


@pytest.fixture(scope="module")
def finetuned(task_files, tokenizer):
    """A classifier fine-tuned on the toy task (the teacher of the distillation tests)."""
    keras.utils.set_random_seed(0)
    task = load_text_classification(str(task_files / "train.tsv"), str(task_files / "test.csv"))
    classifier = TextClassifier(build_mlm_model(TINY), len(task.label_names), dropout=0.0)
    train = encode_dataset(task.train, tokenizer, 16, 16, shuffle_seed=0)
    finetune_classifier(classifier, train, epochs=4, learning_rate=3e-3, verbose=0)
    return task, classifier


def test_finetune_reaches_high_accuracy(finetuned, tokenizer):
    task, classifier = finetuned
    assert task.label_names == ["neg", "pos"]
    assert task.test.labels.tolist() == [1 if i % 2 else 0 for i in range(40)]
    assert accuracy(classifier, encode_dataset(task.test, tokenizer, 16, 16)) >= 0.9


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_task_loss(s, t, labels, temperature, alpha_soft, alpha_hard):
    s, t = s.astype("float64"), t.astype("float64")
    log_q, log_p = np_log_softmax(s / temperature), np_log_softmax(t / temperature)
    soft = temperature ** 2 * (np.exp(log_p) * (log_p - log_q)).sum(-1).mean()
    hard = -np_log_softmax(s)[np.arange(len(labels)), labels].mean()
    return alpha_soft * soft + alpha_hard * hard


def test_task_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, 6, 3)).astype("float32") * 2
    labels = rng.integers(0, 3, 6).astype("int32")
    total, terms = task_distillation_loss(s, t, labels, 3.0, 0.7, 0.3)
    assert float(total) == pytest.approx(numpy_task_loss(s, t, labels, 3.0, 0.7, 0.3), rel=1e-5)
    assert float(terms["hard"]) == pytest.approx(numpy_task_loss(s, t, labels, 3.0, 0.0, 1.0), rel=1e-5)


def test_distiller_step_reports_the_numpy_loss(finetuned, tokenizer):
    task, teacher = finetuned
    keras.utils.set_random_seed(1)
    student = TextClassifier(build_mlm_model(dict(TINY, num_layers=1)), 2, dropout=0.0)
    inputs, labels = next(iter(encode_dataset(task.train, tokenizer, 16, 8)))
    expected = numpy_task_loss(student(inputs).numpy(), teacher(inputs).numpy(), labels.numpy(), 2.0, 0.5, 0.5)
    teacher_before = [w.numpy() for w in teacher.weights]
    distiller = TaskDistiller(teacher, student, temperature=2.0, alpha_soft=0.5, alpha_hard=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = distiller.train_on_batch(inputs, labels, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(teacher_before, teacher.weights))  # frozen
    assert not np.allclose(student(inputs).numpy(), teacher(inputs).numpy())


def test_cli_distils_a_finetuned_teacher(tmp_path, finetuned, task_files):
    task, teacher = finetuned
    teacher_path = str(tmp_path / "teacher.keras")
    teacher.save(teacher_path)
    keras.utils.set_random_seed(2)
    student_path = str(tmp_path / "student.keras")
    build_mlm_model(dict(TINY, num_layers=1)).save(student_path)
    out = tmp_path / "out"
    rc = main(["finetune", "--model", student_path, "--teacher", teacher_path, "--vocab", str(task_files / "vocab.txt"),
               "--train", str(task_files / "train.tsv"), "--test", str(task_files / "test.csv"), "--max-len", "16",
               "--batch-size", "16", "--epochs", "4", "--learning-rate", "3e-3", "--dropout", "0",
               "--alpha-soft", "0.8", "--alpha-hard", "0.2", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "finetune_report.json").read_text())
    assert report["teacher_test_accuracy"] >= 0.9 and report["test_accuracy"] >= 0.9
    assert json.loads((out / "labels.json").read_text()) == {"label_names": ["neg", "pos"]}
    reloaded = keras.saving.load_model(out / "classifier.keras", compile=False)
    assert isinstance(reloaded, TextClassifier) and reloaded.num_classes == 2


def _write(path, text: str | bytes):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_bad_input_names_file_and_column(tmp_path, task_files):
    train = str(task_files / "train.tsv")
    empty = _write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=f"{empty}: empty file"):
        load_text_classification(empty, train)
    no_col = _write(tmp_path / "nocol.csv", "sentence,label\nhello,pos\n")
    with pytest.raises(DataError, match=f"{no_col}: no column 'text'.*sentence, label"):
        load_text_classification(train, no_col)
    unknown = _write(tmp_path / "unknown.csv", "text,label\ngood1,pos\nbad1,neutral\n")
    with pytest.raises(DataError, match=f"{unknown}: row 2: label 'neutral' in column 'label'"):
        load_text_classification(train, unknown)
    header_only = _write(tmp_path / "header.tsv", "text\tlabel\n")
    with pytest.raises(DataError, match=f"{header_only}: no example"):
        load_text_classification(header_only, train)
    latin = _write(tmp_path / "latin.csv", b"text,label\ncaf\xe9,pos\n")
    with pytest.raises(DataError, match=f"{latin}: line 2: .*not UTF-8"):
        load_text_classification(train, latin)
    one_label = _write(tmp_path / "one.csv", "text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match="single label"):
        load_text_classification(one_label, train)
    with pytest.raises(DataError, match="no such file"):
        load_text_classification(train, str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="manual_dir"):  # TFDS is never downloaded
        load_tfds_classification("imdb_reviews", data_dir=str(tmp_path / "tfds"))


def test_numeric_labels_sort_numerically(tmp_path):
    rows = "".join(f"text {i},{label}\n" for i, label in enumerate(["10", "2", "1", "2"]))
    path = _write(tmp_path / "n.csv", "text,label\n" + rows)
    task = load_text_classification(path, path)
    assert task.label_names == ["1", "2", "10"] and task.train.labels.tolist() == [2, 1, 0, 1]
    assert tf.is_tensor(tf.constant(task.train.labels))


def test_registered_in_the_cli_errors_are_one_line(tmp_path, task_files, monkeypatch, capsys):
    """The one-line hook the CLI owner adds; a bad file ends in `error: <file>: ...` and exit status 2."""
    from keras_distil import cli

    monkeypatch.setitem(cli.COMMANDS, "finetune", ("keras_distil.cli.finetune", "add_finetune_parser", "finetune"))
    empty = _write(tmp_path / "empty.tsv", "")
    rc = cli.main(["finetune", "--model", "unused", "--train", empty, "--test", str(task_files / "test.csv"),
                   "--out", str(tmp_path / "out")])
    assert rc == 2
    assert f"keras-distil finetune: error: {empty}: empty file" in capsys.readouterr().err


def test_teacher_and_student_must_share_the_vocabulary(finetuned):
    from keras_distil.config import ConfigError

    _, teacher = finetuned
    student = TextClassifier(build_mlm_model(dict(TINY, vocab_size=130)), 2)
    with pytest.raises(ConfigError, match="vocab_size: the teacher has 120 tokens, the student 130"):
        TaskDistiller(teacher, student)


def test_tfds_classification_read_offline(tmp_path):
    import tensorflow_datasets as tfds

    rows = _examples(12, 5)
    names = ["neg", "pos"]
    splits = {split: tf.data.Dataset.from_tensor_slices({"sentence": [x for x, _ in part],
                                                         "polarity": [names.index(y) for _, y in part]})
              for split, part in (("train", rows[:8]), ("test", rows[8:]))}
    tfds.dataset_builders.TfDataBuilder(
        name="kd_tiny_sentiment", config="plain", version="1.0.0", data_dir=str(tmp_path), split_datasets=splits,
        features=tfds.features.FeaturesDict({"sentence": tfds.features.Text(),
                                             "polarity": tfds.features.ClassLabel(names=names)})).download_and_prepare()
    task = load_tfds_classification("kd_tiny_sentiment", data_dir=str(tmp_path), text_key="sentence",
                                    label_key="polarity")
    assert task.label_names == names
    for split, part in ((task.train, rows[:8]), (task.test, rows[8:])):  # TFDS stores them shuffled
        assert sorted(zip(split.texts, split.labels.tolist())) == sorted((x, names.index(y)) for x, y in part)
    with pytest.raises(DataError, match="no feature 'label'.*polarity"):
        load_tfds_classification("kd_tiny_sentiment", data_dir=str(tmp_path), text_key="sentence")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooling_matches_numpy(pooling, tokenizer):
    keras.utils.set_random_seed(3)
    classifier = TextClassifier(build_mlm_model(TINY), 3, pooling=pooling, dropout=0.5)
    inputs = tokenizer.encode(tf.constant(["good1 the2 bad3", "the1"]), 8)
    hidden = classifier.encoder(inputs)["hidden"].numpy()
    mask = inputs["padding_mask"].numpy()[..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1) if pooling == "mean" else hidden[:, 0]
    kernel, bias = (w.numpy() for w in classifier.head.weights)
    np.testing.assert_allclose(classifier(inputs).numpy(), pooled @ kernel + bias, rtol=1e-5, atol=1e-6)
