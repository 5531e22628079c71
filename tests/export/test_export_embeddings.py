"""Out to where embeddings are used: the sentence-transformers folder, the SavedModel's ``embed`` signature and
the TFLite ``embed`` model.

References are independent of the code under test: ``sentence_transformers.SentenceTransformer(folder).encode``
(torch) for the folders, and for the graphs the Keras model's hidden states pooled in numpy on the ids of the
training tokenizer packed in numpy. Tiny random models built here; the real all-MiniLM-L6-v2 teacher only in
the slow test.
"""

import argparse
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.extras import real_teacher_path, require

from keras_distil.cli.export import add_export_parser, run_export
from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer
from keras_distil.export import ExportError, export
from keras_distil.export.tflite import LiteModel
from keras_distil.models.bert import build_mlm_model
from keras_distil.models.checkpoint_formats import CheckpointError, load_teacher, save_student
from keras_distil.models.pooling import SentencePooling, pool_hidden_states
from keras_distil.models.tokenizer_settings import TokenizerSettings

# 300 pronounceable words, each one WordPiece token (as tests/test_encoder_only.py): real text of these words
# tokenizes to known ids, so the embeddings compared are those of real tokens, not of [UNK] rows.
SYLLABLES = [c + v for c in "bdfgklmnprst" for v in "aeiou"]
WORDS = [a + b for a in SYLLABLES for b in SYLLABLES[:5]]
VOCAB = list(SPECIAL_TOKENS) + list(".,!?") + WORDS
MODEL = dict(vocab_size=len(VOCAB), hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
             max_position_embeddings=64, dropout=0.0)
MAX_LEN = 40  # the text signatures' truncation; every sentence below is shorter


def _sentences(count=7, seed=3):
    """Sentences of 1..20 words (uneven lengths: padding matters), capitals, punctuation, one accent, and ''."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        words = list(rng.choice(WORDS, int(rng.integers(1, 21))))
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + ".,!?"[i % 4])
    out[1] = out[1].replace(out[1][:2], out[1][0] + "á", 1)  # "Bá...": lower-cased and accent-stripped
    return out + [""]


SENTENCES = _sentences()


@pytest.fixture(scope="module")
def st():
    return require("sentence_transformers")


def encode(st_module, folder, texts):
    model = st_module.SentenceTransformer(str(folder), device="cpu")
    return model, np.asarray(model.encode(list(texts), convert_to_numpy=True, batch_size=64))


SETTINGS = TokenizerSettings(tuple(VOCAB), True, True)


def make_model(pooling, with_mlm_head=False, seed=0):
    keras.utils.set_random_seed(seed)
    model = build_mlm_model(dict(MODEL), with_mlm_head=with_mlm_head)
    model.pooling = pooling
    return model


def reference_ids(texts, max_len=MAX_LEN, vocab=VOCAB, lowercase=True):
    """The training tokenizer's ids, packed [CLS] ids [SEP] + zero padding to the longest row, in numpy."""
    rows = WordPieceTokenizer(list(vocab), lowercase).tokenize(tf.constant(list(texts))).to_list()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    rows = [[cls_id] + r[: max_len - 2] + [sep_id] for r in rows]
    ids = np.zeros((len(rows), max(map(len, rows))), np.int32)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


def np_pool(hidden, mask, pooling):
    """sentence-transformers' Pooling (+ Normalize), in numpy."""
    hidden, m = np.asarray(hidden, np.float64), np.asarray(mask, np.float64)[..., None]
    if pooling.mode == "cls":
        out = hidden[:, 0]
    elif pooling.mode == "max":
        out = np.where(m > 0, hidden, -np.inf).max(axis=1)
    else:
        out = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if pooling.normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


def hidden_states(model, ids, mask):
    return np.asarray(model({"token_ids": ids, "padding_mask": mask}, training=False, return_logits=False)["hidden"])


def ours(model, texts, max_len=MAX_LEN, vocab=VOCAB, lowercase=True):
    """keras-distil's embeddings: the training tokenizer, the Keras model, ``pool_hidden_states``."""
    ids, mask = reference_ids(texts, max_len, vocab, lowercase)
    return np.asarray(pool_hidden_states(hidden_states(model, ids, mask), mask, model.pooling)), ids, mask


def _max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_sentences_are_mostly_known_tokens():
    ids, mask = reference_ids(SENTENCES)
    assert (ids[mask > 0] == VOCAB.index("[UNK]")).sum() == 0  # the comparisons below are of real tokens
    assert len(set(mask.sum(1))) >= 5  # uneven lengths: padding is exercised


# ---------------------------------------------------------------- sentence-transformers folder


@pytest.mark.parametrize("mode,normalize,with_head", [("mean", True, True), ("cls", False, False),
                                                      ("max", False, False)])
def test_sentence_transformers_folder_encodes_as_keras_distil(st, tmp_path, mode, normalize, with_head):
    model = make_model(SentencePooling(mode, normalize), with_mlm_head=with_head, seed=1)
    folder = tmp_path / "st"
    diffs = save_student(model, str(folder), "sentence_transformers", tokenizer=SETTINGS)
    assert diffs["sentence_embedding"] <= 1e-5  # the write's own check (load_teacher read-back)
    st_model, got = encode(st, folder, SENTENCES)
    want, ids, mask = ours(model, SENTENCES)
    # Same ids from the folder's tokenizer files (HF BertTokenizer) as from ours, so the embeddings compare.
    hf_ids = st_model.tokenizer(SENTENCES, padding=True)["input_ids"]
    np.testing.assert_array_equal(np.asarray(hf_ids), ids)
    assert got.shape == (len(SENTENCES), MODEL["hidden_size"])
    diff = _max_diff(got, want)
    print(f"{mode} normalize={normalize} head={with_head}: sentence-transformers vs keras-distil {diff:.3g}")
    assert diff <= 1e-5
    np.testing.assert_allclose(want, np_pool(hidden_states(model, ids, mask), mask, model.pooling), atol=1e-6)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-6)


def test_student_with_mlm_head_gives_a_head_less_bert_model_folder(tmp_path):
    from safetensors.numpy import load_file

    model = make_model(SentencePooling("mean", True), with_mlm_head=True, seed=2)
    folder = tmp_path / "st"
    save_student(model, str(folder), "sentence_transformers", tokenizer=SETTINGS)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    tensors = load_file(str(folder / "model.safetensors"))
    assert not [n for n in tensors if n.startswith(("cls.", "bert."))]  # no MLM head; BertModel's own names
    kernel = np.asarray(model.backbone.pooled_dense.kernel)
    np.testing.assert_array_equal(tensors["pooler.dense.weight"], kernel.T)  # BertModel's pooler, [out, in]
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling_config = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling_config["pooling_mode_mean_tokens"] and not pooling_config["pooling_mode_cls_token"]
    assert model.mlm_head is not None  # the model itself is untouched
    reloaded = load_teacher(str(folder), require_mlm_head=False)
    assert reloaded.model.mlm_head is None and reloaded.model.pooling.mode == "mean"


def test_transformers_loads_the_folder_without_missing_or_unexpected_weights(tmp_path):
    transformers = require("transformers")
    require("torch")
    model = make_model(SentencePooling("cls", False), with_mlm_head=True, seed=3)
    save_student(model, str(tmp_path / "st"), "sentence_transformers", tokenizer=SETTINGS)
    _, info = transformers.AutoModel.from_pretrained(str(tmp_path / "st"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_export_cli_sentence_transformers(st, tmp_path, capsys):
    model = make_model(SentencePooling("mean", True), with_mlm_head=True, seed=4)
    model.save(str(tmp_path / "student.keras"))
    vocab_file = SETTINGS.write_vocab(str(tmp_path / "vocab.txt"))
    parser = argparse.ArgumentParser(prog="keras-distil")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", str(tmp_path / "student.keras"), "--format", "sentence_transformers",
                              "--vocab", vocab_file, "--out", str(tmp_path / "out"), "--name", "enc"])
    assert run_export(args) == 0
    folder = tmp_path / "out" / "enc" / "sentence_transformers" / "1"
    printed = capsys.readouterr().out
    assert str(folder) in printed and "embedding_max_abs_diff" in printed
    report = json.loads((folder / "export_report.json").read_text())
    assert report["checks"]["sentence_transformers"]["embedding_max_abs_diff"] <= 1e-5
    _, got = encode(st, folder, SENTENCES)
    ids, mask = reference_ids(SENTENCES)
    want = np_pool(hidden_states(model, ids, mask), mask, model.pooling)
    diff = _max_diff(got, want)
    print(f"export --format sentence_transformers: encode vs numpy pooling of the Keras model {diff:.3g}")
    assert diff <= 1e-5


def test_model_without_pooling_is_refused_in_one_line(tmp_path):
    model = make_model(None, with_mlm_head=True)
    with pytest.raises(CheckpointError) as e:
        save_student(model, str(tmp_path / "st"), "sentence_transformers", tokenizer=SETTINGS)
    message = str(e.value)
    assert "\n" not in message and "no sentence pooling" in message
    assert "SentencePooling" in message and "alpha_sentence_cos" in message  # the fixes, named
    assert not (tmp_path / "st").exists()
    model.save(str(tmp_path / "student.keras"))
    vocab_file = SETTINGS.write_vocab(str(tmp_path / "vocab.txt"))
    with pytest.raises(ExportError) as e:
        export(str(tmp_path / "student.keras"), "sentence_transformers", out=str(tmp_path / "out"), vocab=vocab_file)
    assert "\n" not in str(e.value) and "student.keras" in str(e.value) and "no sentence pooling" in str(e.value)
    assert not (tmp_path / "out").exists()
    with_pooling = make_model(SentencePooling("mean", True))
    with pytest.raises(CheckpointError, match="needs the tokenizer"):
        save_student(with_pooling, str(tmp_path / "st"), "sentence_transformers")


# ---------------------------------------------------------------- SavedModel `embed`


@pytest.fixture(scope="module")
def embed_student(tmp_path_factory):
    """A .keras student with max pooling, not normalised (raw scale; padding must not win the max), + vocab."""
    root = tmp_path_factory.mktemp("embed_student")
    model = make_model(SentencePooling("max", False), with_mlm_head=True, seed=5)
    model.save(str(root / "student.keras"))
    return model, str(root / "student.keras"), SETTINGS.write_vocab(str(root / "vocab.txt"))


def _check_embed_outputs(got: dict, texts, model, what: str) -> np.ndarray:
    """An ``embed`` signature's outputs for ``texts``: the training tokenizer's ids and mask, and the numpy
    pooling of the Keras model's hidden states to 1e-5; returns that reference embedding."""
    ids, mask = reference_ids(texts)
    np.testing.assert_array_equal(got["token_ids"], ids)
    np.testing.assert_array_equal(got["padding_mask"], mask)
    want = np_pool(hidden_states(model, ids, mask), mask, model.pooling)
    diff = _max_diff(got["embedding"], want)
    print(f"{what} vs numpy pooling of the Keras model: {diff:.3g}")
    assert diff <= 1e-5
    return want


def test_saved_model_embed_signature_matches_keras(embed_student, tmp_path):
    model, src, vocab_file = embed_student
    result = export(src, "saved_model", out=str(tmp_path), vocab=vocab_file, max_len=MAX_LEN)
    figures = result.checks["embed"]
    assert figures["max_rel_diff"] <= 1e-5 and figures["text_rows_with_training_ids"] == "6/6"
    import tensorflow_text  # noqa: F401 - the tokenizer ops

    loaded = tf.saved_model.load(result.path)
    signature = loaded.signatures["embed"]
    assert set(signature.structured_outputs) == {"embedding", "token_ids", "padding_mask"}
    got = {k: v.numpy() for k, v in signature(text=tf.constant(SENTENCES)).items()}
    want = _check_embed_outputs(got, SENTENCES, model, "SavedModel embed")
    assert float(np.abs(want).max()) > 0.5  # raw (unnormalised) scale: the tolerance is meaningful
    # The other signatures are unchanged by it.
    assert {"serving_default", "serve_text", "embed"} <= set(loaded.signatures)


def test_saved_model_of_a_model_without_pooling_has_no_embed(tmp_path):
    from keras_distil.export import saved_model
    from keras_distil.export.text import ServingTokenizer, pack_for

    model = make_model(None)
    saved_model.write_archive(str(tmp_path / "sm"), model, False, ServingTokenizer(SETTINGS),
                              pack_for(SETTINGS, MAX_LEN))
    assert set(saved_model.load(str(tmp_path / "sm")).signatures) == {"serving_default", "serve_text"}


# ---------------------------------------------------------------- TFLite `embed`


def test_tflite_embed_model_matches_keras(tmp_path):
    model = make_model(SentencePooling("mean", True), with_mlm_head=False, seed=6)
    model.save(str(tmp_path / "student.keras"))
    vocab_file = SETTINGS.write_vocab(str(tmp_path / "vocab.txt"))
    result = export(str(tmp_path / "student.keras"), "tflite", out=str(tmp_path / "out"), vocab=vocab_file,
                    max_len=MAX_LEN)
    assert sorted(n for n in result.files if n.endswith(".tflite")) == \
        ["model.tflite", "model_embed.tflite", "model_text.tflite"]
    assert result.checks["model_embed.tflite"]["max_rel_diff"] <= 1e-5
    lite = LiteModel(os.path.join(result.path, "model_embed.tflite"), custom_ops=True)
    assert lite.signature == "embed"
    for texts in (SENTENCES, SENTENCES[:2]):  # the runner resizes between calls
        _check_embed_outputs(lite(text=np.array(texts, dtype=object)), texts, model,
                             f"TFLite embed (fp32, {len(texts)} texts)")


# ---------------------------------------------------------------- the real teacher


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_all_minilm_teacher_and_its_student_match_sentence_transformers(st, tmp_path):
    """Parity of the real checkpoint (our reader + tokenizer + pooling against sentence-transformers), then a
    3-layer student exported as sentence_transformers and encoded by sentence-transformers."""
    from keras_distil.models.student import build_student

    path = real_teacher_path()
    texts = ["A man is eating food.", "Distillation keeps most of the teacher's quality.",
             "Café au lait, naïve résumé: accents are stripped.", "The quick brown fox jumps over the lazy dog " * 3,
             "Sentence embeddings are compared here with cosine similarity.", "Hi!",
             "long " * 300]  # 302 tokens: both sides truncate at max_seq_length 256
    teacher = load_teacher(path, require_mlm_head=False)
    assert teacher.model.pooling == SentencePooling("mean", True, 256)
    vocab = list(teacher.tokenizer.vocab)
    _, reference = encode(st, path, texts)
    want, ids, mask = ours(teacher.model, texts, 256, vocab, teacher.tokenizer.lowercase)
    diff = _max_diff(reference, want)
    print(f"all-MiniLM-L6-v2: sentence-transformers vs keras-distil {diff:.3g}")
    assert diff <= 1e-5

    student = build_student(teacher.model, [0, 2, 4])
    assert student.pooling == teacher.model.pooling
    student.save(str(tmp_path / "student.keras"))
    result = export(str(tmp_path / "student.keras"), "sentence_transformers", out=str(tmp_path / "out"),
                    vocab=teacher.vocab_file)
    assert result.checks["sentence_transformers"]["embedding_max_abs_diff"] <= 1e-5
    _, got = encode(st, result.path, texts)
    want, _, _ = ours(student, texts, 256, vocab, teacher.tokenizer.lowercase)
    diff = _max_diff(got, want)
    print(f"3-layer student exported as sentence_transformers: encode vs keras-distil {diff:.3g}")
    assert diff <= 1e-5
    assert _max_diff(got, reference) > 1e-2  # the folder holds the 3-layer student, not the teacher
