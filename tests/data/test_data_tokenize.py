"""In-graph WordPiece against Hugging Face's BertTokenizerFast, and the document -> sequence split."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf
from helpers.text_data import balanced_chunks, docstring_lines, hf_tokenizer, write_lines

from keras_distil.data import DataError, DataStats, WordPieceTokenizer, load_vocab
from keras_distil.data.corpus import decode_utf8
from keras_distil.data.tokenize import (
    SPECIAL_TOKENS,
    read_tokenizer_config,
    split_into_sequences,
    tokenize_to_sequences,
)

TRICKY = [
    "Héllo Wörld! Ça va? naïve café", "İstanbul ß STRASSE ǅ", "中文字符 and 日本語", "tab\there\x00null\u200bzero",
    "replacement \ufffd char", "a" * 150, "don't-stop... (yes)[no]{x}", "   ", "Ωmega µ ﬁ ligature", "emoji 😀 x",
    "control\x07bell \u0301combining", "x\u00a0nbsp", "“quotes” — dash …", "priv\ue000ate", "a\u2028b\u3000c",
    "$100 + 5% = ~^`|", "ÅÆØ ǆ Σσς", "",
]



def fuzz_strings(n=1500, seed=0):
    """Random strings over ASCII, Latin, combining marks, punctuation, CJK, controls and odd spaces."""
    rng = random.Random(seed)
    pool = [chr(c) for c in list(range(32, 127)) * 3 + list(range(0xA0, 0x250)) + list(range(0x300, 0x370))
            + list(range(0x2000, 0x2070)) + list(range(0x4E00, 0x4E20))
            + [0, 7, 9, 10, 13, 0xFFFD, 0x200B, 0xFEFF, 0xE000, 0x1F600, 0x85, 0x1680, 0x3000, 0xAD]]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.mark.parametrize("lowercase,strip_accents", [(True, None), (False, None), (True, False), (False, True)])
def test_ids_identical_to_hugging_face(vocab_path, lowercase, strip_accents):
    texts = docstring_lines() + TRICKY + fuzz_strings()
    expected = hf_tokenizer(vocab_path, lowercase, strip_accents)(texts, add_special_tokens=False)["input_ids"]
    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path, lowercase, strip_accents)
    got = tokenizer.tokenize(tf.constant(texts)).to_list()
    mismatches = [(t, e, g) for t, e, g in zip(texts, expected, got, strict=True) if e != g]
    assert len(texts) > 4000
    assert mismatches == []
    assert sum(len(e) for e in expected) > 50_000  # a real amount of text was compared


def test_literal_special_tokens_in_text_never_become_special_ids(vocab_path):
    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path)
    ids = tokenizer.tokenize(tf.constant(["a [MASK] b [CLS] [SEP] [PAD] c"])).flat_values.numpy()
    special = {tokenizer.special_ids.pad, tokenizer.special_ids.cls, tokenizer.special_ids.sep,
               tokenizer.special_ids.mask}
    assert not special.intersection(ids.tolist())


def test_invalid_utf8_is_replaced_counted_and_tokenized_like_hugging_face(vocab_path):
    raw = [b"caf\xe9 au lait", b"fine text", b"\xff\xfe broken \xc3", "déjà vu".encode()]
    stats = DataStats()
    fixed = decode_utf8(tf.constant(raw), "replace", stats)
    assert [s.decode("utf-8") for s in fixed.numpy()] == [r.decode("utf-8", "replace") for r in raw]
    assert stats.as_dict()["invalid_utf8"] == 2
    expected = hf_tokenizer(vocab_path)([r.decode("utf-8", "replace") for r in raw],
                                        add_special_tokens=False)["input_ids"]
    assert WordPieceTokenizer.from_vocab_file(vocab_path).tokenize(fixed).to_list() == expected
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_utf8(tf.constant(raw), "error")


def test_missing_vocab_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope/vocab.txt"):
        load_vocab(tmp_path / "nope" / "vocab.txt")


def test_vocab_without_special_tokens_names_them(tmp_path):
    path = write_lines(tmp_path / "vocab.txt", ["[PAD]", "[UNK]", "[CLS]", "hello", "world"])
    with pytest.raises(DataError, match=r"vocab.txt.*\[SEP\], \[MASK\]"):
        load_vocab(path)


def test_duplicate_vocab_tokens_are_named(tmp_path):
    path = write_lines(tmp_path / "vocab.txt", [*SPECIAL_TOKENS, "hello", "world", "hello"])
    with pytest.raises(DataError, match=r"vocab.txt: duplicate token\(s\) 'hello' \(ids 5 and 7\)"):
        WordPieceTokenizer.from_vocab_file(path)


def test_tokenizer_config_settings(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false, "strip_accents": null}')
    assert read_tokenizer_config(tmp_path) == {"lowercase": False}
    assert read_tokenizer_config(tmp_path / "absent") == {}


def test_from_config_takes_the_teacher_folder_vocab_and_settings(tmp_path, vocab_path):
    from keras_distil.config import DataConfig

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    write_lines(teacher / "vocab.txt", open(vocab_path, encoding="utf-8").read().splitlines())
    (teacher / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    tokenizer = WordPieceTokenizer.from_config(DataConfig(), teacher_dir=teacher)
    assert tokenizer.vocab_file == str(teacher / "vocab.txt")
    assert (tokenizer.lowercase, tokenizer.strip_accents) == (False, False)


def test_split_matches_reference_and_never_truncates():
    rng = np.random.default_rng(0)
    max_len, cls_id, sep_id = 16, 2, 3
    docs = [rng.integers(5, 100, n).tolist() for n in [0, 1, 13, 14, 15, 28, 29, 100, 7, 57]]
    got = split_into_sequences(tf.ragged.constant(docs, dtype=tf.int32, row_splits_dtype=tf.int64),
                               max_len, cls_id, sep_id).to_list()
    expected = [[cls_id, *chunk, sep_id] for doc in docs for chunk in balanced_chunks(doc, max_len - 2)]
    assert got == expected
    assert all(len(s) <= max_len for s in got)
    assert [t for s in got for t in s[1:-1]] == [t for d in docs for t in d]  # nothing lost


def test_short_sequences_dropped_and_counted(vocab_path):
    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path)
    texts = ["the", "one two three four five six seven eight nine ten eleven twelve", ""]
    lengths = [len(ids) + 2 for ids in hf_tokenizer(vocab_path)(texts, add_special_tokens=False)["input_ids"]
               if ids]
    stats = DataStats()
    kept = tokenize_to_sequences(tf.constant(texts), tokenizer, max_len=64, min_len=12, stats=stats)
    assert sorted(kept.row_lengths().numpy().tolist()) == sorted(n for n in lengths if n >= 12)
    counts = stats.as_dict()
    assert counts["dropped_short"] == sum(n < 12 for n in lengths) == 1
    assert counts["documents"] == 2 and counts["sequences"] == 1  # a blank line is no document


def test_special_ids_follow_the_vocab(vocab_path):
    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path)
    vocab = load_vocab(vocab_path)
    assert tokenizer.special_ids.all() == tuple(vocab.index(t) for t in SPECIAL_TOKENS)
    assert tokenizer.vocab_size == len(vocab)


def test_encode_for_inference_matches_hugging_face_and_survives_a_saved_model(tmp_path, vocab_path):
    texts = docstring_lines()[:300] + ["", "short", "x " * 200]
    expected = hf_tokenizer(vocab_path)(texts, truncation=True, max_length=24, padding="max_length",
                                        return_tensors="np")
    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path)
    got = tokenizer.encode(tf.constant(texts), 24)
    np.testing.assert_array_equal(got["token_ids"].numpy(), expected["input_ids"])
    np.testing.assert_array_equal(got["padding_mask"].numpy(), expected["attention_mask"])

    module = tf.Module()
    module.tokenizer = tokenizer
    module.encode = tf.function(lambda text: tokenizer.encode(text, 24)["token_ids"],
                                input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "sm"))
    reloaded = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_array_equal(reloaded.encode(tf.constant(texts)).numpy(), expected["input_ids"])
