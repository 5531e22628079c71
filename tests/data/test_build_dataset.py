"""keras_distil.build_dataset: the Python API's data call takes the teacher's vocabulary *and* casing.

The trap it closes (issue 14): ``build_training_dataset(DataConfig(), sources, "teacher/vocab.txt")``
lower-cases with ``DataConfig.lowercase`` whatever the teacher was trained with, and refused the teacher's
``TokenizerSettings``. Fixtures: tests/fixtures/hf (a tiny BertForMaskedLM folder, lower-casing; a cased copy
is made here) and a one-line corpus.
"""

from __future__ import annotations

import json
import os
import shutil

import keras_hub
import numpy as np
import pytest
from helpers.hf_fixtures import fixture

import keras_distil as kd
from keras_distil.data import DataError, WordPieceTokenizer
from keras_distil.models.tokenizer_settings import read_tokenizer_settings

TEXT = "Hello world, the quick brown fox ."
MASK_FIELDS = {"mask_positions", "mask_ids", "mask_weights"}
CLEAN = {"masking": "none", "max_len": 16, "min_len": 3, "batch_size": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text((TEXT + "\n") * 4, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def cased_teacher(tmp_path_factory):
    """The bert_mlm fixture as a cased checkpoint (do_lower_case false; tokenizer.json dropped)."""
    folder = str(tmp_path_factory.mktemp("cased") / "bert_cased")
    shutil.copytree(fixture("bert_mlm"), folder)
    os.remove(os.path.join(folder, "tokenizer.json"))
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update(do_lower_case=False, strip_accents=False)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    return folder


def first_row(dataset) -> list[int]:
    batch = next(iter(dataset))
    ids, padding = batch["token_ids"].numpy()[0], batch["padding_mask"].numpy()[0]
    return ids[padding == 1].tolist()


def expected(folder: str, text: str = TEXT) -> list[int]:
    tokenizer = WordPieceTokenizer.from_settings(read_tokenizer_settings(folder))
    return [tokenizer.special_ids.cls, *tokenizer.tokenize([text]).to_list()[0], tokenizer.special_ids.sep]


def test_exported_at_the_top_level():
    assert "build_dataset" in kd.__all__ and kd.build_dataset is kd.data.build_dataset


def test_the_teachers_casing_from_a_loaded_checkpoint_its_folder_and_its_settings(corpus, cased_teacher):
    checkpoint = kd.load_teacher(cased_teacher)
    assert checkpoint.lowercase is False
    want = expected(cased_teacher)
    assert want[1] == 1  # "Hello" is [UNK] to a cased teacher whose vocabulary has only "hello"
    for tokenizer in (checkpoint, cased_teacher, checkpoint.tokenizer):
        assert first_row(kd.build_dataset(corpus, tokenizer, **CLEAN)) == want
    lowered = expected(fixture("bert_mlm"))
    assert lowered[1] == 17 and lowered != want  # the uncased teacher reads "hello"
    assert first_row(kd.build_dataset(corpus, kd.load_teacher(fixture("bert_mlm")), **CLEAN)) == lowered


def test_a_vocab_file_is_cased_by_its_tokenizer_config_or_the_given_setting(corpus, cased_teacher, tmp_path):
    assert first_row(kd.build_dataset(corpus, os.path.join(cased_teacher, "vocab.txt"), **CLEAN)) == \
        expected(cased_teacher)
    bare = tmp_path / "vocab.txt"
    shutil.copy(os.path.join(cased_teacher, "vocab.txt"), bare)
    assert first_row(kd.build_dataset(corpus, str(bare), **CLEAN))[1] == 17  # no settings: lower-cased
    assert first_row(kd.build_dataset(corpus, str(bare), lowercase=False, **CLEAN))[1] == 1


def test_a_keras_hub_tokenizer_and_a_wordpiece_tokenizer(corpus, cased_teacher):
    vocab = list(read_tokenizer_settings(cased_teacher).vocab)
    hub = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab, lowercase=False)
    assert first_row(kd.build_dataset(corpus, hub, **CLEAN)) == expected(cased_teacher)
    ours = WordPieceTokenizer(vocab, lowercase=True)
    assert first_row(kd.build_dataset(corpus, ours, **CLEAN)) == expected(fixture("bert_mlm"))


def test_masking_follows_the_objective(corpus):
    teacher = kd.load_teacher(fixture("bert_mlm"))
    shape = {"max_len": 16, "min_len": 3, "batch_size": 2}
    masked = next(iter(kd.build_dataset(corpus, teacher, **shape)))
    assert MASK_FIELDS <= set(masked)
    sentence = kd.DistillConfig(alpha_ce=0, alpha_mlm=0, alpha_cos=1)
    clean = next(iter(kd.build_dataset(corpus, teacher, objective=sentence, **shape)))
    assert not MASK_FIELDS & set(clean) and clean["token_ids"].shape == (2, 16)
    with pytest.raises(kd.ConfigError, match="data.masking"):
        kd.build_dataset(corpus, teacher, objective=kd.DistillConfig(), **{**shape, "masking": "none"})


def test_a_data_config_is_the_base_and_keywords_override_it(corpus):
    teacher = kd.load_teacher(fixture("bert_mlm"))
    base = kd.DataConfig(max_len=12, batch_size=3, min_len=3, masking="none", lowercase=False)
    batch = next(iter(kd.build_dataset(corpus, teacher, data_config=base)))
    assert batch["token_ids"].shape == (3, 12)
    assert batch["token_ids"].numpy()[0, 1] == 17  # the teacher's lower-casing, not the base's
    assert next(iter(kd.build_dataset(corpus, teacher, data_config=base, batch_size=1)))["token_ids"].shape == (1, 12)


def test_errors_name_the_argument(corpus, cased_teacher, tmp_path):
    teacher = kd.load_teacher(cased_teacher)
    with pytest.raises(kd.ConfigError, match=r"^lowercase=True: the tokenizer's own setting is lowercase=False"):
        kd.build_dataset(corpus, teacher, lowercase=True, **{k: v for k, v in CLEAN.items()})
    with pytest.raises(kd.ConfigError, match=r"^tokenizer: expected .*; got BertMLM \(a model carries no vocabulary"):
        kd.build_dataset(corpus, teacher.model, **CLEAN)
    with pytest.raises(kd.ConfigError, match=r"^tokenizer: .*nowhere: no such file or folder"):
        kd.build_dataset(corpus, str(tmp_path / "nowhere"), **CLEAN)
    with pytest.raises(kd.ConfigError, match=r"^source: expected"):
        kd.build_dataset(42, teacher, **CLEAN)
    with pytest.raises(DataError, match=r"missing\.txt: no such file"):
        kd.build_dataset(str(tmp_path / "missing.txt"), teacher, **CLEAN)
    with pytest.raises(kd.ConfigError, match=r"^data: unknown key\(s\) sequence_length"):
        kd.build_dataset(corpus, teacher, sequence_length=16)
    with pytest.raises(kd.ConfigError, match=r"^max_len: 128 is longer than the teacher's 16 positions"):
        kd.build_dataset(corpus, teacher, min_len=3)
    with pytest.raises(kd.ConfigError, match=r"^vocab_file: "):
        kd.build_dataset(corpus, teacher, vocab_file=os.path.join(cased_teacher, "vocab.txt"), **CLEAN)
    headless = kd.LoadedCheckpoint(teacher.model, None, "bert", "teacher.keras", "keras")
    with pytest.raises(kd.ConfigError, match=r"^tokenizer: the checkpoint teacher.keras carries no vocabulary"):
        kd.build_dataset(corpus, headless, **CLEAN)
    for error in (kd.ConfigError, DataError):
        assert issubclass(error, kd.KerasDistilError)


def test_the_batches_train_a_distiller(corpus):
    teacher = kd.load_teacher(fixture("bert_mlm"))
    student = kd.student_from_teacher(teacher.model, layers=[1])
    distiller = kd.Distiller(teacher.model, student, kd.DistillConfig())
    distiller.compile(optimizer="adam")
    history = distiller.fit(kd.build_dataset(corpus, teacher, max_len=16, min_len=3, batch_size=2),
                            steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and set(history.history) >= {"ce", "mlm", "cos"}
