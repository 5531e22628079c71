"""A narrower, shallower student from the CLI (issue 12): it trains with every layer-wise term, resumes, and
exports to every format a same-width student does, each verified, and transformers loads the HF folder
with the student's own shape and gives the Keras student's logits.

The teacher is the export tests' tiny MLM-trained model (2 layers, 32 wide, 4 heads; confident
predictions); the student is 1 layer, 16 wide, 2 heads, initialised by the teacher's reduction.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.export_run import NEW_SENTENCES, VOCAB, shared_run, tokenize_reference
from helpers.extras import require

from keras_distil.cli import main
from keras_distil.export import export
from keras_distil.layer_terms import Projections

NARROW = ["student.hidden_size=16", "student.num_heads=2", "student.num_layers=1",
          "distill.alpha_layer_mse=1", "distill.alpha_attention=1", "distill.alpha_value_relation=1",
          "distill.alpha_embedding_mse=1", "distill.relation_heads=2", "data.max_len=24", "data.min_len=4",
          "data.batch_size=8", "train.checkpoint_every=4", "train.log_every=2", "train.jit_compile=off",
          "train.steps=8"]


@pytest.fixture(scope="module")
def narrow_run(tmp_path_factory):
    teacher_run = shared_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("narrow")
    out = str(root / "run")
    args = ["distill", "--teacher", os.path.join(teacher_run, "student", "student.keras"),
            "--train-data", os.path.join(teacher_run, "corpus.txt"), "--out", out,
            "--set", f"data.vocab_file={os.path.join(teacher_run, 'vocab.txt')}"]
    for item in NARROW:
        args += ["--set", item]
    assert main(args) == 0
    first = keras.saving.load_model(os.path.join(out, "student", "student.keras"), compile=False)
    return {"args": args, "out": out, "first": first, "root": root}


@pytest.mark.slow
def test_a_narrow_student_trains_and_resumes_exactly(narrow_run):
    """8 steps in one go against the same run stopped after its step-4 checkpoint and run again: the same
    student to float precision (the projections and their optimizer slots are in the checkpoint)."""
    out = narrow_run["out"]
    cfg = narrow_run["first"].model_config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (1, 16, 2, 32)
    config = json.loads(open(os.path.join(out, "config.json"), encoding="utf-8").read())
    assert config["student"]["hidden_size"] == 16
    # The run as if stopped after its step-4 checkpoint: the step-8 one and the saved student gone.
    checkpoints = os.path.join(out, "checkpoints")
    for name in os.listdir(checkpoints):
        if name.startswith("ckpt-8"):
            os.remove(os.path.join(checkpoints, name))
    with open(os.path.join(checkpoints, "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-4"\n')
    shutil.rmtree(os.path.join(out, "student"))
    assert main(narrow_run["args"]) == 0
    resumed = keras.saving.load_model(os.path.join(out, "student", "student.keras"), compile=False)
    for a, b in zip(resumed.weights, narrow_run["first"].weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=a.path)
    # The checkpoint holds the projections (saved once, under the optimizer's references to them): a fresh
    # set restores from it.
    names = ["embeddings", "layer_0", "last"]
    fresh = Projections(names, 16, 32)
    before = fresh.maps["last"].kernel.numpy().copy()
    status = tf.train.Checkpoint(projections=fresh).restore(os.path.join(checkpoints, "ckpt-8"))
    status.expect_partial().assert_existing_objects_matched()
    assert not np.allclose(fresh.maps["last"].kernel.numpy(), before)
    assert not any("project" in v.path for v in resumed.weights)  # the projections are not exported


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["hf", "keras_hub", "saved_model", "tflite"])
def test_a_narrow_student_exports_to_every_format_verified(narrow_run, fmt, tmp_path):
    result = export(narrow_run["out"], fmt, out=str(tmp_path), name="narrow", version=1)
    assert result.checks, fmt
    for name, check in result.checks.items():
        for key in ("max_abs_diff", "max_rel_diff"):
            if key in check:
                assert check[key] <= 1e-4, (fmt, name, check)
    if fmt == "hf":
        torch = require("torch")
        transformers = require("transformers")
        model = transformers.AutoModelForMaskedLM.from_pretrained(result.path, attn_implementation="eager")
        assert (model.config.hidden_size, model.config.num_attention_heads, model.config.num_hidden_layers,
                model.config.intermediate_size) == (16, 2, 1, 32)
        ids, mask = tokenize_reference(NEW_SENTENCES, 24)
        with torch.no_grad():
            theirs = model(input_ids=torch.tensor(ids, dtype=torch.long),
                           attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()
        ours = np.asarray(narrow_run["first"]({"token_ids": ids, "padding_mask": mask})["logits"])
        real = mask.astype(bool)
        np.testing.assert_allclose(theirs[real], ours[real], atol=1e-4)
        assert len(VOCAB) == model.config.vocab_size
