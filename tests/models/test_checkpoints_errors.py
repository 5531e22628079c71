"""Bad checkpoints get a CheckpointError naming the file and, where there is one, the tensor."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from helpers.hf_fixtures import copy_fixture

from keras_distil.models import hf_folder
from keras_distil.models.checkpoint_formats import load_teacher, save_student
from keras_distil.models.tensor_store import CheckpointError, SafetensorsFile, write_safetensors

QUERY = "bert.encoder.layer.1.attention.self.query.weight"


@pytest.fixture
def folder(tmp_path):
    return copy_fixture("bert_mlm", str(tmp_path / "ckpt"))


def _rewrite_tensors(folder, change):
    path = os.path.join(folder, "model.safetensors")
    src = SafetensorsFile(path)
    tensors = {name: src.get(name) for name in src.keys()}
    change(tensors)
    write_safetensors(tensors, path)
    return path


def _edit_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def test_pickle_checkpoint_is_refused_without_reading_it(folder):
    os.remove(os.path.join(folder, "model.safetensors"))
    bin_path = os.path.join(folder, "pytorch_model.bin")
    with open(bin_path, "wb") as f:  # a pickle that would run code if anything unpickled it
        f.write(b"cos\nsystem\n(S'touch " + str(folder).encode() + b"/PWNED'\ntR.")
    with pytest.raises(CheckpointError, match="refusing to read a pickle checkpoint") as err:
        load_teacher(folder)
    assert bin_path in str(err.value) and "safetensors" in str(err.value)
    assert not os.path.exists(os.path.join(folder, "PWNED"))


def test_missing_config(folder):
    os.remove(os.path.join(folder, "config.json"))
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_teacher(folder)


def test_missing_weights(folder):
    os.remove(os.path.join(folder, "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_teacher(folder)


def test_truncated_safetensors(folder):
    path = os.path.join(folder, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated: tensor '.+'"):
        load_teacher(folder)


def test_corrupt_header(folder):
    path = os.path.join(folder, "model.safetensors")
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8)
        f.write(b"#" * 16)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors header"):
        load_teacher(folder)
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", 10**12))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt or truncated"):
        load_teacher(folder)


def test_tensor_with_wrong_shape(folder):
    _rewrite_tensors(folder, lambda t: t.update({QUERY: t[QUERY][:, :31]}))
    with pytest.raises(CheckpointError) as err:
        load_teacher(folder)
    message = str(err.value)
    assert "model.safetensors" in message and QUERY in message and "[32, 31]" in message and "[32, 32]" in message


def test_missing_tensor(folder):
    _rewrite_tensors(folder, lambda t: t.pop(QUERY))
    with pytest.raises(CheckpointError, match=f"tensor '{QUERY}' is missing"):
        load_teacher(folder)


def test_unknown_model_type(folder):
    _edit_config(folder, model_type="roberta")
    with pytest.raises(CheckpointError, match=r"config\.json: unsupported model_type 'roberta'"):
        load_teacher(folder)


def test_unsupported_activation(folder):
    _edit_config(folder, hidden_act="gelu_new")
    with pytest.raises(CheckpointError, match=r"config\.json: hidden_act='gelu_new'"):
        load_teacher(folder)


def test_vocab_size_disagrees_with_embeddings(folder):
    _edit_config(folder, vocab_size=121)
    with pytest.raises(CheckpointError) as err:
        load_teacher(folder)
    message = str(err.value)
    assert "bert.embeddings.word_embeddings.weight" in message and "vocab_size=121" in message
    assert "model.safetensors" in message and "config.json" in message


def test_vocab_file_longer_than_embeddings(folder):
    with open(os.path.join(folder, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("".join(f"extra{i}\n" for i in range(24)))  # 98 + 24 tokens, 120 embedding rows
    os.remove(os.path.join(folder, "tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"vocab\.txt: 122 tokens .* vocab_size=120"):
        load_teacher(folder)


def test_sharded_index_names_missing_shard(tmp_path):
    folder = copy_fixture("bert_mlm_sharded", str(tmp_path / "sharded"))
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        shard = sorted(set(json.load(f)["weight_map"].values()))[-1]
    os.remove(os.path.join(folder, shard))
    with pytest.raises(CheckpointError, match=f"in shard {shard}, which is missing"):
        load_teacher(folder)


def test_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_teacher(str(tmp_path / "nowhere"))


def test_write_refuses_non_empty_folder_and_leaves_nothing_on_failure(folder, tmp_path, monkeypatch):
    model = load_teacher(folder).model
    with pytest.raises(CheckpointError, match="not empty"):
        save_student(model, folder, "hf")
    monkeypatch.setattr(hf_folder, "compare_outputs", lambda a, b, inputs: {"logits": 1.0})
    dst = tmp_path / "out"
    with pytest.raises(CheckpointError, match="does not reproduce"):
        save_student(model, str(dst), "hf")
    assert not dst.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out")] == []


def test_bf16_tensors_are_read(folder):
    """bfloat16 checkpoints (common for large models) load without torch; values are the bf16 roundings."""
    path = os.path.join(folder, "model.safetensors")
    src = SafetensorsFile(path)
    name = "bert.embeddings.word_embeddings.weight"
    value = src.get(name)
    bits = (value.view(np.uint32) >> 16).astype(np.uint16)
    header = {name: {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [0, bits.nbytes]}}
    raw = json.dumps(header).encode()
    bf16 = os.path.join(folder, "bf16.safetensors")
    with open(bf16, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + bits.tobytes())
    got = SafetensorsFile(bf16).get(name)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (bits.astype(np.uint32) << 16).view(np.float32))
    assert np.max(np.abs(got - value)) <= np.max(np.abs(value)) * 2 ** -7
