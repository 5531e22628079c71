"""The quickstart WordPiece vocabulary: special tokens, [UNK] rate, transformers parity, cache, errors."""

import os

import pytest

from keras_distil.data.base import DataError
from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer, load_vocab, read_tokenizer_config
from keras_distil.quickstart.corpus import CorpusSettings, gather_corpus
from keras_distil.quickstart.vocab import VocabSettings, build_vocab, unk_rate

SIZE = 400
EXTRA = ["Straße, Café and naïve ÉCOLE: «quoted» — dashes… and 3.14 numbers!",
         "CamelCaseWords like tf.data.Dataset and snake_case_names (in parentheses).",
         "Ünïcödé accents are stripped; 東京 is split into characters."]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    gather_corpus(root / "corpus", CorpusSettings(sources=("stdlib",), max_documents=800, held_out=0.1))
    manifest = build_vocab(root / "corpus" / "train.txt", root / "vocab",
                           VocabSettings(vocab_size=SIZE, max_unique_words=3000))
    with open(root / "corpus" / "heldout.txt", encoding="utf-8") as f:
        heldout = f.read().splitlines()
    return root, manifest, heldout


def test_vocab_file_and_config(learned):
    root, manifest, _ = learned
    vocab = load_vocab(root / "vocab" / "vocab.txt")
    assert tuple(vocab[:5]) == SPECIAL_TOKENS  # [PAD] = 0
    assert len(set(vocab)) == len(vocab) == manifest["size"]
    assert 0.8 * SIZE <= len(vocab) <= SIZE
    assert all(t == t.lower() for t in vocab[5:])  # learned on lower-cased text
    assert read_tokenizer_config(root / "vocab") == {"lowercase": True, "strip_accents": True}
    assert not [n for n in os.listdir(root / "vocab") if "tmp" in n]


def test_heldout_unk_rate_is_low(learned):
    root, _, heldout = learned
    tokenizer = WordPieceTokenizer.from_vocab_file(root / "vocab" / "vocab.txt")
    assert len(heldout) > 50
    assert unk_rate(tokenizer, heldout) < 0.005


def test_ids_equal_transformers(learned):
    from transformers import AutoTokenizer, BertTokenizerFast

    root, _, heldout = learned
    folder = str(root / "vocab")
    hf = BertTokenizerFast.from_pretrained(folder)  # reads vocab.txt and tokenizer_config.json
    auto = AutoTokenizer.from_pretrained(folder)
    texts = heldout + EXTRA
    ours = WordPieceTokenizer.from_vocab_file(root / "vocab" / "vocab.txt",
                                              **read_tokenizer_config(folder)).tokenize(texts).to_list()
    assert ours == [hf(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert ours == [auto(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_cache_and_determinism(learned, tmp_path):
    root, manifest, _ = learned
    corpus, out = root / "corpus" / "train.txt", root / "vocab"
    settings = VocabSettings(vocab_size=SIZE, max_unique_words=3000)
    mtime = os.stat(out / "vocab.txt").st_mtime_ns
    assert build_vocab(corpus, out, settings) == manifest
    assert os.stat(out / "vocab.txt").st_mtime_ns == mtime
    again = build_vocab(corpus, tmp_path / "again", settings, force=True)
    assert again["vocab_sha256"] == manifest["vocab_sha256"]


def test_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=f"{empty}: .*no words"):
        build_vocab(empty, tmp_path / "v")
    with pytest.raises(DataError, match="no such corpus file"):
        build_vocab(tmp_path / "missing.txt", tmp_path / "v")
    with pytest.raises(DataError, match="vocab_size"):
        VocabSettings(vocab_size=5)
