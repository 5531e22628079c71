"""Fixtures of the data tests: a WordPiece vocabulary trained on real docstrings, the documents, a config."""

import pytest
from helpers.text_data import docstring_documents, docstring_lines, train_vocab

from keras_distil.config import DataConfig


@pytest.fixture(scope="session")
def vocab_path(tmp_path_factory):
    return train_vocab(docstring_lines(), str(tmp_path_factory.mktemp("vocab") / "vocab.txt"))


@pytest.fixture(scope="session")
def documents():
    return docstring_documents()


@pytest.fixture
def data_config(vocab_path):
    return DataConfig.from_dict({"vocab_file": vocab_path, "max_len": 64, "batch_size": 8,
                                 "shuffle_buffer": 500, "seed": 7})
