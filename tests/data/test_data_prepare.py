"""prepare_corpus: shards, token counts and manifest against a Hugging Face reference; the vocab guard."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from helpers.text_data import reference_sequences, write_lines

from keras_distil.cli.prepare import main_prepare
from keras_distil.data import (
    DataError,
    ShardSource,
    build_training_dataset,
    load_token_counts,
    prepare_corpus,
    sequence_dataset,
)
from keras_distil.data.pipeline import resolve_token_counts


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, documents, vocab_path):
    from keras_distil.config import DataConfig

    folder = tmp_path_factory.mktemp("prep")
    corpus = write_lines(folder / "corpus.txt", documents)
    cfg = DataConfig.from_dict({"max_len": 64, "batch_size": 8, "shuffle_buffer": 500})
    out = str(folder / "shards")
    manifest = prepare_corpus([corpus], out, cfg, vocab_path, num_shards=3)
    return out, manifest, cfg


def read_shards(out, manifest):
    records = tf.data.TFRecordDataset([os.path.join(out, s["file"]) for s in manifest["shards"]])
    spec = {"token_ids": tf.io.VarLenFeature(tf.int64)}
    return [tuple(tf.sparse.to_dense(tf.io.parse_single_example(r, spec)["token_ids"]).numpy().tolist())
            for r in records]


def test_shards_hold_the_reference_sequences(prepared, documents, vocab_path):
    out, manifest, cfg = prepared
    expected, dropped = reference_sequences(documents, vocab_path, cfg.max_len, cfg.min_len)
    got = read_shards(out, manifest)
    assert collections.Counter(got) == collections.Counter(tuple(s) for s in expected)
    assert manifest["sequences"] == len(expected) == sum(s["sequences"] for s in manifest["shards"])
    assert manifest["dropped_short"] == dropped and manifest["documents"] == len(documents)
    assert manifest["tokens"] == sum(len(s) for s in expected)
    assert sorted(os.listdir(out)) == sorted([s["file"] for s in manifest["shards"]]
                                             + ["manifest.json", "token_counts.json"])  # no temporaries left


def test_token_counts_match_a_numpy_count_of_the_reference(prepared, documents, vocab_path):
    out, manifest, cfg = prepared
    expected, _ = reference_sequences(documents, vocab_path, cfg.max_len, cfg.min_len)
    counts = load_token_counts(os.path.join(out, "token_counts.json"), manifest["vocab_size"])
    np.testing.assert_array_equal(counts, np.bincount(np.concatenate(expected), minlength=manifest["vocab_size"]))
    # Training from the folder smooths with these counts without being told.
    np.testing.assert_array_equal(resolve_token_counts(None, [ShardSource(out)], manifest["vocab_size"]), counts)


def test_training_reads_the_shards(prepared, vocab_path):
    out, manifest, cfg = prepared
    got = collections.Counter(tuple(s) for s in sequence_dataset(out, cfg, vocab_path).as_numpy_iterator())
    assert got == collections.Counter(read_shards(out, manifest))
    batch = next(iter(build_training_dataset(cfg, out, vocab_path)))
    assert batch["token_ids"].shape == (8, 64) and batch["mask_weights"].shape == (8, 20)


def test_shards_of_another_vocabulary_are_refused(prepared, tmp_path, vocab_path):
    out, _, cfg = prepared
    tokens = open(vocab_path, encoding="utf-8").read().splitlines()
    other = write_lines(tmp_path / "other_vocab.txt", tokens[:-1] + ["zzzz"])
    with pytest.raises(DataError, match="manifest.json: shards were tokenized with another vocabulary"):
        build_training_dataset(cfg, out, other)
    with pytest.raises(DataError, match="max_len=64"):
        build_training_dataset(cfg.replace(max_len=32), out, vocab_path)
    with pytest.raises(DataError, match="lowercase=True.*lowercase=False"):
        build_training_dataset(cfg.replace(lowercase=False), out, vocab_path)


def test_a_new_prepare_replaces_the_old_folder_consistently(tmp_path, documents, vocab_path, data_config):
    corpus = write_lines(tmp_path / "c.txt", documents[:100])
    out = tmp_path / "out"
    prepare_corpus([corpus], out, data_config, vocab_path, num_shards=3)
    manifest = prepare_corpus([corpus], out, data_config.replace(max_len=32), vocab_path, num_shards=2)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest and on_disk["max_len"] == 32 and len(on_disk["shards"]) == 2
    assert sum(1 for _ in sequence_dataset(str(out), data_config, vocab_path)) == manifest["sequences"]


def test_prepare_refuses_an_empty_corpus_naming_it(tmp_path, data_config, vocab_path):
    empty = write_lines(tmp_path / "blank.txt", [""])
    with pytest.raises(DataError, match="empty corpus.*blank.txt"):
        prepare_corpus([empty], tmp_path / "out", data_config, vocab_path, num_shards=2)
    assert not os.path.exists(tmp_path / "out" / "manifest.json")
    assert [f for f in os.listdir(tmp_path / "out") if "tmp" in f] == []


def test_main_prepare(tmp_path, documents, vocab_path, capsys):
    corpus = write_lines(tmp_path / "c.txt", documents[:200])
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"data": {"max_len": 32, "min_len": 8}}))
    out = tmp_path / "out"
    assert main_prepare([corpus, "--out", str(out), "--vocab", vocab_path, "--config", str(recipe),
                         "--num-shards", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["max_len"], manifest["min_len"], len(manifest["shards"])) == (32, 8, 2)
    assert main_prepare([str(tmp_path / "absent.txt"), "--out", str(out), "--vocab", vocab_path]) == 2
    assert "absent.txt: no such file" in capsys.readouterr().out
