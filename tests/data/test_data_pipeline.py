"""The training pipeline: contract, buckets, determinism, worker sharding, sources and bad input."""

from __future__ import annotations

import collections
import glob
import time

import numpy as np
import pytest
import tensorflow as tf
from helpers.text_data import reference_sequences, write_lines

from keras_distil.data import (
    DataError,
    DataStats,
    TextFiles,
    TfdsSource,
    WordPieceTokenizer,
    build_training_dataset,
    sequence_dataset,
)
from keras_distil.data.corpus import check_utf8, text_documents

CONTRACT = {"token_ids": tf.int32, "padding_mask": tf.int32, "segment_ids": tf.int32, "mask_positions": tf.int32,
            "mask_ids": tf.int32, "mask_weights": tf.float32}



@pytest.fixture(scope="module")
def corpus(tmp_path_factory, documents):
    """The docstring corpus split over three files (one document per line)."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        write_lines(folder / f"part{i}.txt", documents[i::3])
    return str(folder / "part*.txt")


def take(ds, n):
    return [{k: v.numpy() for k, v in batch.items()} for batch in ds.take(n)]


def unmasked_rows(batch):
    """The sequences of a batch with the masked positions restored (mask_ids are the originals)."""
    ids = batch["token_ids"].copy()
    for b in range(len(ids)):
        used = batch["mask_weights"][b] > 0
        ids[b, batch["mask_positions"][b][used]] = batch["mask_ids"][b][used]
    return [tuple(row[mask == 1]) for row, mask in zip(ids, batch["padding_mask"], strict=True)]


def test_batches_follow_the_contract_and_the_buckets(corpus, data_config, vocab_path):
    cfg = data_config.replace(bucket_boundaries=[16, 32])
    batches = take(build_training_dataset(cfg, corpus, vocab_path), 30)
    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path)
    bounds = [0, 16, 32, 64]
    seen = set()
    for batch in batches:
        assert {k: tf.as_dtype(v.dtype) for k, v in batch.items()} == CONTRACT
        b, length = batch["token_ids"].shape
        assert b == 8 and batch["mask_positions"].shape == (8, 20) and length in bounds
        lengths = batch["padding_mask"].sum(axis=1)
        lower = bounds[bounds.index(length) - 1]
        assert np.all((lengths > lower) & (lengths <= length)), (lengths, length)  # padded to its bucket only
        assert np.all(batch["padding_mask"] == (np.arange(length)[None] < lengths[:, None]))
        assert np.all(batch["token_ids"][batch["padding_mask"] == 0] == tokenizer.special_ids.pad)
        assert np.all(batch["token_ids"][:, 0] == tokenizer.special_ids.cls)
        seen.add(length)
    assert len(seen) >= 2


def test_sequences_are_the_reference_tokenization(corpus, data_config, vocab_path, documents):
    """One pass without masking noise: the multiset of sequences equals Hugging Face's, split and filtered."""
    got = collections.Counter(tuple(s) for s in sequence_dataset(corpus, data_config, vocab_path)
                              .as_numpy_iterator())
    expected, dropped = reference_sequences(documents, vocab_path, data_config.max_len, data_config.min_len)
    assert got == collections.Counter(tuple(s) for s in expected)
    assert dropped > 0  # the corpus does exercise the min_len filter


def test_one_pass_sees_every_sequence_once_and_logs_the_drops(corpus, data_config, vocab_path, documents,
                                                              caplog):
    stats = DataStats()
    with caplog.at_level("INFO", logger="keras_distil.data"):
        ds = build_training_dataset(data_config, corpus, vocab_path, repeat=False, stats=stats)
        got = collections.Counter(row for batch in take(ds, -1) for row in unmasked_rows(batch))
    expected, dropped = reference_sequences(documents, vocab_path, data_config.max_len,
                                            data_config.min_len)
    assert got == collections.Counter(tuple(s) for s in expected)
    counts = stats.as_dict()
    assert (counts["documents"], counts["sequences"], counts["dropped_short"]) == (len(documents), len(expected), dropped)
    assert f"{dropped} sequences dropped as shorter than min_len" in caplog.text


@pytest.mark.parametrize("how", ["explicit", "auto"])
def test_clean_batches_carry_the_unmasked_sequences_and_no_mask_fields(corpus, data_config, vocab_path, documents,
                                                                        how):
    """data.masking "none" (or "auto" for an objective without logit terms): one pass gives exactly the
    reference tokenization, every id as tokenized (no [MASK], no random token), and no mask_* field."""
    from keras_distil.config import DistillConfig

    objective = DistillConfig(alpha_ce=0, alpha_mlm=0, alpha_cos=0, alpha_sentence_mse=1)
    cfg = data_config.replace(masking="none") if how == "explicit" else data_config
    batches = take(build_training_dataset(cfg, corpus, vocab_path, repeat=False, objective=objective), -1)
    assert all(set(b) == {"token_ids", "padding_mask", "segment_ids"} for b in batches)
    got = collections.Counter(tuple(row[mask == 1]) for b in batches
                              for row, mask in zip(b["token_ids"], b["padding_mask"], strict=True))
    expected, _ = reference_sequences(documents, vocab_path, data_config.max_len, data_config.min_len)
    assert got == collections.Counter(tuple(s) for s in expected)


def test_masking_auto_masks_for_logit_terms_and_refuses_none_for_them(corpus, data_config, vocab_path):
    from keras_distil.config import ConfigError, DistillConfig

    batch = take(build_training_dataset(data_config, corpus, vocab_path, objective=DistillConfig()), 1)[0]
    assert set(CONTRACT) <= set(batch) and batch["mask_weights"].sum() > 0
    with pytest.raises(ConfigError, match="data.masking: 'none' .* distill.alpha_mlm=2.0 needs them"):
        build_training_dataset(data_config.replace(masking="none"), corpus, vocab_path, objective=DistillConfig())


def test_deterministic_for_a_seed(corpus, data_config, vocab_path):
    def first_batches(cfg):
        return take(build_training_dataset(cfg, corpus, vocab_path, check_nonempty=False), 4)

    a, b, c = first_batches(data_config), first_batches(data_config), first_batches(data_config.replace(seed=8))
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert any(not np.array_equal(x["token_ids"], z["token_ids"]) for x, z in zip(a, c, strict=True))


def test_masks_are_fresh_every_epoch(tmp_path, data_config, vocab_path, documents):
    path = write_lines(tmp_path / "one.txt", [d for d in documents if 80 < len(d) < 160][:8])
    cfg = data_config.replace(batch_size=8, shuffle_buffer=1)
    first, second = take(build_training_dataset(cfg, path, vocab_path, drop_remainder=False), 2)
    assert len(first["token_ids"]) == 8  # the whole corpus: one batch per epoch
    assert unmasked_rows(first) == unmasked_rows(second)  # same sequences, same order
    assert not np.array_equal(first["mask_positions"], second["mask_positions"])


def test_workers_read_disjoint_shares_with_per_replica_batches(corpus, data_config, vocab_path):
    files = sorted(glob.glob(corpus))  # three files, two workers: worker 0 reads files 0 and 2, worker 1 file 1

    def share(pipeline_id):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds = build_training_dataset(data_config, corpus, vocab_path, input_context=context, repeat=False,
                                    check_nonempty=False,
                                    drop_remainder=True)
        batches = take(ds, -1)
        assert all(len(b["token_ids"]) == data_config.batch_size // 2 for b in batches)
        return collections.Counter(row for b in batches for row in unmasked_rows(b))

    def of_files(paths):
        return collections.Counter(tuple(s) for s in sequence_dataset(TextFiles(paths), data_config, vocab_path)
                                   .as_numpy_iterator())

    for got, expected in ((share(0), of_files(files[0::2])), (share(1), of_files(files[1::2]))):
        assert got - expected == collections.Counter()  # nothing from the other worker's files
        # Only partial per-replica batches (< 4 sequences in each of the single bucket) are dropped.
        assert sum(got.values()) > sum(expected.values()) - 4


def test_distribute_datasets_from_function(corpus, data_config, vocab_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = strategy.distribute_datasets_from_function(
        lambda context: build_training_dataset(data_config, corpus, vocab_path, input_context=context))
    batch = next(iter(dist))
    parts = strategy.experimental_local_results(batch["token_ids"])
    assert len(parts) == 2 and all(p.shape[0] == data_config.batch_size // 2 for p in parts)


def test_blank_line_paragraphs(tmp_path, data_config):
    path = tmp_path / "paragraphs.txt"
    path.write_text("first line\nof one\n\n\nsecond  \n   \nthird\nparagraph\nhere\n")
    got = [d.decode() for d in text_documents(TextFiles(str(path)), "blank_line").as_numpy_iterator()]
    assert got == ["first line of one", "second  ", "third paragraph here"]
    lines = [d.decode() for d in text_documents(TextFiles(str(path)), "line").as_numpy_iterator()]
    assert [line for line in lines if line.strip()] == ["first line", "of one", "second  ", "third", "paragraph",
                                                        "here"]


def test_missing_file_and_unmatched_glob_are_named(tmp_path, data_config, vocab_path):
    with pytest.raises(DataError, match="missing.txt: no such file"):
        build_training_dataset(data_config, str(tmp_path / "missing.txt"), vocab_path)
    with pytest.raises(DataError, match=r"nothing\*.txt: no file matches"):
        build_training_dataset(data_config, str(tmp_path / "nothing*.txt"), vocab_path)


def test_empty_corpus_and_all_too_short_name_the_files(tmp_path, data_config, vocab_path):
    empty = write_lines(tmp_path / "empty.txt", ["", "   ", ""])
    with pytest.raises(DataError, match="empty corpus.*empty.txt"):
        build_training_dataset(data_config, empty, vocab_path)
    short = write_lines(tmp_path / "short.txt", ["hello world", "tiny line"])
    with pytest.raises(DataError, match="shorter than data.min_len=12.*short.txt"):
        build_training_dataset(data_config, short, vocab_path)


def test_invalid_utf8_error_policy_names_file_and_line(tmp_path, data_config, vocab_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a fine first line of text that is long enough to keep\nsecond ok\ncaf\xe9 broken\n")
    with pytest.raises(DataError, match="bad.txt: line 3"):
        build_training_dataset(data_config.replace(invalid_utf8="error"), str(path), vocab_path)


def test_utf8_check_finds_the_line_across_read_chunks(tmp_path):
    lines = [f"line {i} é".encode() for i in range(40)]
    lines[29] = b"bad \xe9 here"
    path = tmp_path / "chunks.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for chunk in (3, 7, 64, 1 << 20):
        with pytest.raises(DataError, match="chunks.txt: line 30:"):
            check_utf8([str(path)], chunk_bytes=chunk)
    check_utf8([write_lines(tmp_path / "good.txt", ["déjà vu", "ok"])])


def test_invalid_utf8_replace_policy_counts(tmp_path, data_config, vocab_path):
    path = tmp_path / "bad.txt"
    long = "the quick brown fox jumps over the lazy dog and keeps on running far away"
    path.write_bytes(b"\n".join([long.encode(), b"caf\xe9 " + long.encode(), b"\xff" + long.encode()]) + b"\n")
    stats = DataStats()
    got = list(sequence_dataset(str(path), data_config, vocab_path, stats=stats).as_numpy_iterator())
    assert len(got) == 3 and stats.as_dict()["invalid_utf8"] == 2 and stats.as_dict()["documents"] == 3


def test_unprepared_tfds_dataset_fails_fast_with_instructions(tmp_path, data_config, vocab_path):
    start = time.monotonic()
    with pytest.raises(DataError, match="manual_dir") as err:
        build_training_dataset(data_config, TfdsSource("imdb_reviews", data_dir=str(tmp_path)), vocab_path)
    assert time.monotonic() - start < 30  # seconds, not the ~200 s of network retries
    assert "imdb_reviews" in str(err.value) and str(tmp_path) in str(err.value)


def test_tfds_dataset_read_from_a_local_data_dir(tmp_path, data_config, vocab_path, documents):
    import tensorflow_datasets as tfds

    docs = [d for d in documents if len(d) > 200][:40]

    texts = tf.data.Dataset.from_tensor_slices({"body": docs})
    tfds.dataset_builders.TfDataBuilder(
        name="kd_tiny_docs", config="plain", version="1.0.0", data_dir=str(tmp_path), split_datasets={"train": texts},
        features=tfds.features.FeaturesDict({"body": tfds.features.Text()})).download_and_prepare()
    source = TfdsSource("kd_tiny_docs", split="train", text_key="body", data_dir=str(tmp_path))
    got = collections.Counter(tuple(s) for s in sequence_dataset(source, data_config, vocab_path)
                              .as_numpy_iterator())
    expected, _ = reference_sequences(docs, vocab_path, data_config.max_len, data_config.min_len)
    assert got == collections.Counter(tuple(s) for s in expected)
    # data_dir may also be the prepared dataset's own folder.
    by_folder = TfdsSource("kd_tiny_docs", text_key="body", data_dir=str(tmp_path / "kd_tiny_docs/plain/1.0.0"))
    assert sum(1 for _ in sequence_dataset(by_folder, data_config, vocab_path)) == sum(got.values())
    with pytest.raises(DataError, match="no feature 'text'.*body"):
        sequence_dataset(TfdsSource("kd_tiny_docs", data_dir=str(tmp_path)), data_config, vocab_path)


def test_vocab_from_the_config_and_a_warning_when_predictions_are_capped(corpus, data_config, caplog):
    cfg = data_config.replace(max_len=256, max_predictions_per_seq=20)  # 0.15 * 254 = 38.1 > 20
    with caplog.at_level("WARNING", logger="keras_distil.data"):
        batch = next(iter(build_training_dataset(cfg, corpus, check_nonempty=False)))  # vocab: cfg.vocab_file
    assert "max_predictions_per_seq=20 < 39" in caplog.text
    assert batch["mask_positions"].shape == (8, 20)
