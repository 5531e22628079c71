"""Writing students: Hugging Face folders (checked by transformers itself when torch is installed),
KerasHub presets (checked by KerasHub's own from_preset), .keras files and the convert command.

Every output is compared with transformers' saved reference outputs of the fixture it came from, never
with this code's own earlier output."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
from helpers.extras import require
from helpers.hf_fixtures import TOLERANCE, fixture, parity, reference, reference_feed, tokenizer_reference

from keras_distil.cli.convert import add_convert_parser
from keras_distil.models.checkpoint_formats import (
    convert_checkpoint,
    load_teacher,
    save_student,
)
from keras_distil.models.tensor_store import SafetensorsFile


@pytest.fixture(scope="module")
def bert():
    return load_teacher(fixture("bert_mlm"))


@pytest.fixture(scope="module")
def distilbert():
    return load_teacher(fixture("distilbert_mlm"))


def test_hf_folder_layout(bert, tmp_path):
    dst = str(tmp_path / "student")
    diffs = save_student(bert.model, dst, "hf", tokenizer=bert)
    assert max(diffs.values()) == 0.0
    assert sorted(os.listdir(dst)) == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    config = json.load(open(os.path.join(dst, "config.json")))
    assert config["architectures"] == ["BertForMaskedLM"] and config["model_type"] == "bert"
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12 and config["vocab_size"] == 120
    tok = json.load(open(os.path.join(dst, "tokenizer_config.json")))
    assert tok["tokenizer_class"] == "BertTokenizer" and tok["do_lower_case"] and tok["strip_accents"]
    tensors = SafetensorsFile(os.path.join(dst, "model.safetensors"))
    assert tensors.shape("bert.encoder.layer.0.intermediate.dense.weight") == (48, 32)  # Linear: [out, in]
    assert "cls.predictions.bias" in tensors.keys()
    assert not any(k.startswith("bert.pooler") for k in tensors.keys())  # BertForMaskedLM has no pooler
    # read back by our own reader, against transformers' reference for the source folder
    assert max(parity(load_teacher(dst).model, "bert_mlm").values()) <= TOLERANCE


@pytest.mark.parametrize("source, model_type", [("bert_mlm", "bert"), ("distilbert_mlm", "same"),
                                                ("distilbert_mlm", "bert"), ("bert_model", "bert")])
def test_transformers_loads_the_written_folder(source, model_type, tmp_path):
    torch = require("torch")
    transformers = require("transformers")
    loaded = load_teacher(fixture(source), require_mlm_head=False)
    dst = str(tmp_path / "student")
    save_student(loaded.model, dst, "hf", tokenizer=loaded, model_type=model_type)
    auto = transformers.AutoModelForMaskedLM if loaded.has_mlm_head else transformers.AutoModel
    model, info = auto.from_pretrained(dst, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    written_type = loaded.model_type if model_type == "same" else model_type
    assert model.config.model_type == written_type
    ref = reference(source)
    feed = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
    if written_type == "bert":
        feed["token_type_ids"] = ref.get("token_type_ids", np.zeros_like(ref["input_ids"]))
    with torch.no_grad():
        out = model.eval()(**{k: torch.from_numpy(v) for k, v in feed.items()}, output_hidden_states=True)
    for i, (ours, theirs) in enumerate(zip(out.hidden_states, ref["hidden_states"], strict=True)):
        assert np.max(np.abs(ours.numpy() - theirs)) <= TOLERANCE, f"hidden state {i}"
    if loaded.has_mlm_head:
        diff = np.max(np.abs(out.logits.numpy() - ref["logits"]))
        print(source, model_type, "transformers reload, logits max abs diff", diff)
        assert diff <= TOLERANCE
    tokenizer = transformers.AutoTokenizer.from_pretrained(dst)
    expected = tokenizer_reference()[source]
    assert [tokenizer(t)["input_ids"] for t in expected["texts"]] == expected["ids"]


def _keras_hub_logits(task, ref):
    feed = reference_feed(ref)
    feed = {k: v for k, v in feed.items() if k in task.backbone.input}
    positions = np.tile(np.arange(ref["input_ids"].shape[1], dtype=np.int32)[None], (len(ref["input_ids"]), 1))
    return np.asarray(task({**feed, "mask_positions": positions}, training=False))


@pytest.mark.parametrize("source", ["bert_mlm", "distilbert_mlm"])
def test_keras_hub_preset_exact(source, bert, distilbert, tmp_path):
    import keras_hub

    loaded = bert if source == "bert_mlm" else distilbert
    dst = str(tmp_path / "preset")
    diffs = save_student(loaded.model, dst, "keras_hub", tokenizer=loaded, model_type="same")
    assert max(diffs.values()) <= 1e-5, diffs
    cls = keras_hub.models.BertMaskedLM if source == "bert_mlm" else keras_hub.models.DistilBertMaskedLM
    for loader in (cls, keras_hub.models.MaskedLM):
        task = loader.from_preset(dst)
        assert isinstance(task, cls)
        ref = reference(source)
        diff = np.max(np.abs(_keras_hub_logits(task, ref) - ref["logits"]))
        print(source, loader.__name__, "keras_hub exact preset vs transformers logits", diff)
        assert diff <= TOLERANCE
    # the preset's tokenizer gives transformers' ids
    expected = tokenizer_reference()[source]
    ids = [int(i) for i in np.asarray(task.preprocessor.tokenizer(expected["texts"][1]))]
    assert [2] + ids + [3] == expected["ids"][1]
    # and it reads back into a BertMLM with the same outputs
    back = load_teacher(dst)
    assert back.format == "keras_hub" and back.model_type == loaded.model_type
    assert back.tokenizer.vocab == loaded.tokenizer.vocab
    assert (back.lowercase, back.strip_accents) == (loaded.lowercase, loaded.strip_accents)
    assert "import keras_distil.models.checkpoint_formats" in open(os.path.join(dst, "README.md")).read()
    assert max(parity(back.model, source).values()) <= TOLERANCE


@pytest.mark.parametrize("source", ["bert_mlm", "distilbert_mlm"])
def test_keras_hub_preset_stock_classes(source, bert, distilbert, tmp_path):
    """Stock KerasHub classes: identical weights, KerasHub's own numerics (documented difference)."""
    import keras_hub

    loaded = bert if source == "bert_mlm" else distilbert
    dst = str(tmp_path / "preset")
    diffs = save_student(loaded.model, dst, "keras_hub", tokenizer=loaded, model_type="same",
                         keras_hub_classes="stock")
    print(source, "stock classes vs BertMLM", diffs)
    config = json.load(open(os.path.join(dst, "config.json")))
    assert config["registered_name"].startswith("keras_hub>")
    cls = keras_hub.models.BertMaskedLM if source == "bert_mlm" else keras_hub.models.DistilBertMaskedLM
    task = cls.from_preset(dst)
    assert type(task) is cls
    ref = reference(source)
    diff = np.max(np.abs(_keras_hub_logits(task, ref) - ref["logits"]))
    print(source, "stock preset vs transformers logits", diff)
    assert diff < 1e-2  # tanh-GELU (BERT only) and head LayerNorm eps 1e-5: small, not zero
    # our reader gives the weights Hugging Face numerics again
    assert max(parity(load_teacher(dst).model, source).values()) <= TOLERANCE


def test_head_less_model_writes_backbone_preset(tmp_path):
    import keras_hub

    loaded = load_teacher(fixture("bert_model"), require_mlm_head=False)
    dst = str(tmp_path / "preset")
    save_student(loaded.model, dst, "keras_hub", tokenizer=loaded)
    backbone = keras_hub.models.Backbone.from_preset(dst)
    ref = reference("bert_model")
    out = backbone(reference_feed(ref), training=False)["sequence_output"]
    assert np.max(np.abs(np.asarray(out) - ref["hidden_states"][-1])) <= TOLERANCE


def test_keras_file_is_read(bert, tmp_path):
    path = str(tmp_path / "teacher.keras")
    bert.model.save(path)
    loaded = load_teacher(path)
    assert loaded.format == "keras"
    assert max(parity(loaded.model, "bert_mlm").values()) <= TOLERANCE


def test_keras_file_of_a_keras_hub_task_is_read(bert, tmp_path):
    import keras_hub

    preset, path = str(tmp_path / "preset"), str(tmp_path / "task.keras")
    save_student(bert.model, preset, "keras_hub", tokenizer=bert)
    keras_hub.models.BertMaskedLM.from_preset(preset).save(path)
    loaded = load_teacher(path)
    assert (loaded.format, loaded.model_type, loaded.lowercase) == ("keras", "bert", True)
    assert max(parity(loaded.model, "bert_mlm").values()) <= TOLERANCE


def test_convert_command_round_trip(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="keras-distil")
    add_convert_parser(parser.add_subparsers(dest="command"))
    preset, back = str(tmp_path / "preset"), str(tmp_path / "back")
    for argv in (["convert", fixture("distilbert_mlm"), preset, "--to", "keras_hub"],
                 ["convert", preset, back, "--to", "hf"]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert "reloaded and compared" in capsys.readouterr().out
    loaded = load_teacher(back)
    assert loaded.model_type == "distilbert" and loaded.lowercase
    assert max(parity(loaded.model, "distilbert_mlm").values()) <= TOLERANCE
    diffs = convert_checkpoint(back, str(tmp_path / "as_bert"), "hf", model_type="bert")
    assert max(diffs.values()) <= 1e-5
