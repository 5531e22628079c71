"""Reading Hugging Face folders: outputs against transformers' saved references, tokenizer ids against
transformers' ids. The fixtures and references come from tests/fixtures/make_hf_fixtures.py (torch)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers.extras import require
from helpers.hf_fixtures import (
    ARCHITECTURES,
    TOLERANCE,
    copy_fixture,
    fixture,
    parity,
    reference,
    reference_feed,
    tokenizer_reference,
)

from keras_distil.config import DistillConfig
from keras_distil.models.checkpoint_formats import load_teacher, read_tokenizer_settings
from keras_distil.models.hf_folder import read_hf_folder
from keras_distil.models.tensor_store import CheckpointError, write_safetensors


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_outputs_match_transformers(name):
    loaded = load_teacher(fixture(name), require_mlm_head=False)
    diffs = parity(loaded.model, name)
    print(name, diffs)  # the figures quoted in the report
    assert max(diffs.values()) <= TOLERANCE, diffs
    assert loaded.has_mlm_head == ("logits" in reference(name))
    assert loaded.model_type == ("distilbert" if name.startswith("distilbert") else "bert")
    assert loaded.format == "hf"


def test_pooler_is_loaded():
    model = load_teacher(fixture("bert_model"), require_mlm_head=False).model
    ref = reference("bert_model")
    pooled = np.asarray(model(reference_feed(ref), training=False)["pooled"])
    assert np.max(np.abs(pooled - ref["pooled"])) <= TOLERANCE


def test_legacy_names_and_decoder_tensors(tmp_path):
    """bert-base-uncased style: LayerNorm gamma/beta, the bias saved as decoder.bias, the tied decoder
    weight written out. Same numbers as the modern names."""
    from keras_distil.models.tensor_store import SafetensorsFile

    folder = copy_fixture("bert_mlm", str(tmp_path / "legacy"))
    path = os.path.join(folder, "model.safetensors")
    src = SafetensorsFile(path)
    tensors = {}
    for name in src.keys():
        new = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        new = new.replace("cls.predictions.bias", "cls.predictions.decoder.bias")
        tensors[new] = src.get(name)
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    tensors["cls.seq_relationship.weight"] = np.zeros((2, 32), np.float32)
    write_safetensors(tensors, path)
    diffs = parity(load_teacher(folder).model, "bert_mlm")
    assert max(diffs.values()) <= TOLERANCE, diffs


def test_untied_decoder_is_refused(tmp_path):
    from keras_distil.models.tensor_store import SafetensorsFile

    folder = copy_fixture("bert_mlm", str(tmp_path / "untied"))
    path = os.path.join(folder, "model.safetensors")
    src = SafetensorsFile(path)
    tensors = {name: src.get(name) for name in src.keys()}
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"] + 1.0
    write_safetensors(tensors, path)
    with pytest.raises(CheckpointError, match="cls.predictions.decoder.weight.*untied"):
        load_teacher(folder)


def test_encoder_only_checkpoint_needs_zero_logit_losses():
    with pytest.raises(CheckpointError, match="no MLM head") as err:
        load_teacher(fixture("bert_model"))
    assert "model.safetensors" in str(err.value) and "alpha_ce" in str(err.value)
    with pytest.raises(CheckpointError, match="no MLM head"):
        load_teacher(fixture("bert_model"), distill=DistillConfig(alpha_ce=0.0, alpha_mlm=1.0))
    cos_only = DistillConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0)
    loaded = load_teacher(fixture("bert_model"), distill=cos_only)
    assert loaded.model.mlm_head is None


def test_distilbert_maps_to_zero_segment_table():
    model = load_teacher(fixture("distilbert_mlm")).model
    assert model.model_config.model_type == "distilbert"
    assert not np.any(np.asarray(model.backbone.segment_embedding.embeddings))


@pytest.mark.parametrize("name", ["bert_mlm", "bert_pretraining", "distilbert_mlm"])
def test_tokenizer_ids_match_transformers(name):
    """KerasHub's WordPiece with the folder's settings gives the ids transformers gave (saved reference)."""
    settings = read_tokenizer_settings(fixture(name))
    expected = tokenizer_reference()[name]
    tokenizer = settings.keras_hub_tokenizer()
    for text, ids in zip(expected["texts"], expected["ids"], strict=True):
        got = [2] + [int(i) for i in np.asarray(tokenizer(text))] + [3]  # [CLS] ... [SEP]
        assert got == ids, text


def test_tokenizer_settings_honour_case_and_accents():
    uncased = read_tokenizer_settings(fixture("bert_mlm"))
    cased = read_tokenizer_settings(fixture("bert_pretraining"))
    assert (uncased.lowercase, uncased.strip_accents) == (True, True)
    assert (cased.lowercase, cased.strip_accents) == (False, False)
    assert uncased.vocab_file == os.path.join(fixture("bert_mlm"), "vocab.txt")
    loaded = load_teacher(fixture("bert_mlm"))
    assert (loaded.vocab_file, loaded.lowercase, loaded.strip_accents) == (uncased.vocab_file, True, True)


def test_tokenizer_json_only_and_contradictions(tmp_path):
    folder = copy_fixture("bert_mlm", str(tmp_path / "fast_only"))
    vocab = open(os.path.join(folder, "vocab.txt"), encoding="utf-8").read().splitlines()
    os.remove(os.path.join(folder, "vocab.txt"))
    os.remove(os.path.join(folder, "tokenizer_config.json"))
    settings = read_tokenizer_settings(folder)
    assert list(settings.vocab) == vocab and settings.lowercase and settings.vocab_file is None
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": False}, f)
    with pytest.raises(CheckpointError, match="tokenizer.json.*lowercase"):
        read_tokenizer_settings(folder)


def test_tokenizer_live_against_transformers():
    transformers = require("transformers")
    texts = ["Ünïcödé ÀÉÎ õ çafé", "mixed CASE, punctuation!? and 中文 chars", "tab\tand\nnewline"]
    for name in ("bert_mlm", "bert_pretraining"):
        hf = transformers.AutoTokenizer.from_pretrained(fixture(name))
        ours = read_tokenizer_settings(fixture(name)).keras_hub_tokenizer()
        for text in texts:
            assert [int(i) for i in np.asarray(ours(text))] == hf(text, add_special_tokens=False)["input_ids"], text


def test_read_hf_folder_reports_the_family():
    _, tokenizer, model_type = read_hf_folder(fixture("distilbert_mlm"))
    assert model_type == "distilbert" and tokenizer.lowercase


def test_a_run_folder_is_the_model_it_trained(tmp_path):
    """--teacher / --model / convert take a keras-distil run folder as its saved student; a run folder with no
    saved model yet is a one-line error saying what it holds."""
    import json

    import keras

    from keras_distil.models.bert import build_mlm_model
    from keras_distil.models.checkpoint_formats import CheckpointError, load_teacher

    keras.utils.set_random_seed(0)
    model = build_mlm_model(dict(vocab_size=40, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                                 max_position_embeddings=16))
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text(json.dumps({"command": "pretrain", "model": {}}))
    with pytest.raises(CheckpointError, match=r"run: a keras-distil pretrain run folder with 0 checkpoint\(s\) and no "
                                              r"saved model yet"):
        load_teacher(str(run))
    model.save(run / "student" / "student.keras")
    loaded = load_teacher(str(run))
    assert loaded.source == str(run / "student" / "student.keras") and loaded.format == "keras"
    for a, b in zip(loaded.model.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
