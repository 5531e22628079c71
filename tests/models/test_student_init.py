"""distill.student_init through the public ``distill()``: a random student seeded by train.seed; and run
folders written before a knob existed still resume."""

import json

import keras
import numpy as np
import pytest
from helpers.batches import TINY_MODEL
from helpers.tiny_corpus import tiny_recipe, write_corpus

from keras_distil.config import ConfigError, RecipeConfig
from keras_distil.models.bert import BertMLM
from keras_distil.models.student import build_student
from keras_distil.training.run import distill, prepare_folder


def _pooler_kernel(model):
    return model.backbone.pooled_dense.kernel.numpy()


@pytest.mark.timeout(300)
def test_distill_with_random_init_trains_a_student_seeded_by_train_seed(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    keras.utils.set_random_seed(5)
    teacher = BertMLM(TINY_MODEL)
    teacher.save(tmp_path / "teacher.keras")
    knobs = tiny_recipe(steps=2, seed=9)
    knobs["distill"]["student_init"] = "random"
    knobs["data"]["vocab_file"] = corpus["vocab"]
    recipe = RecipeConfig.from_dict({**{k: v for k, v in knobs.items() if k != "model"},
                                     "teacher": str(tmp_path / "teacher.keras"), "train_data": corpus["texts"],
                                     "out": str(tmp_path / "run")})
    result = distill(recipe, console=False)
    assert result["steps"] == 2
    student = keras.saving.load_model(result["student"]["keras"])
    assert student.model_config == teacher.model_config.replace(num_layers=2)
    # The pooler gets no gradient, so it still holds its initial values: those of a random student seeded
    # by train.seed, not the teacher's.
    expected = build_student(teacher, init="random", seed=9)
    np.testing.assert_array_equal(_pooler_kernel(student), _pooler_kernel(expected))
    assert not np.allclose(_pooler_kernel(student), _pooler_kernel(teacher))
    # the trained layers moved away from the random start, and are not the teacher's
    for got, start, teachers in zip(student.backbone.transformer_layers[1].weights,
                                    expected.backbone.transformer_layers[1].weights,
                                    teacher.backbone.transformer_layers[2].weights):
        if got.path.endswith("kernel"):
            assert not np.allclose(got.numpy(), teachers.numpy())
            assert np.abs(got.numpy() - start.numpy()).max() < 0.05


def test_run_folder_from_before_a_knob_existed_still_resumes(tmp_path):
    recipe = RecipeConfig.from_dict({**tiny_recipe(steps=2), "out": str(tmp_path)})
    folder = prepare_folder(recipe, "distill", is_chief=True)
    old = json.loads(open(folder.config, encoding="utf-8").read())
    for key in ("student_init", "alpha_hidden_mse"):  # a config.json written before these knobs
        del old["distill"][key]
    with open(folder.config, "w", encoding="utf-8") as f:
        json.dump(old, f)
    prepare_folder(recipe, "distill", is_chief=True)  # their defaults are the old behaviour: same run
    with pytest.raises(ConfigError, match="different distill"):
        prepare_folder(RecipeConfig.from_dict({**tiny_recipe(steps=2), "out": str(tmp_path),
                                               "distill": {"student_init": "random"}}), "distill", is_chief=True)
    with open(folder.config, "w", encoding="utf-8") as f:
        json.dump({**old, "distill": {**old["distill"], "retired_knob": 1}}, f)
    with pytest.raises(ConfigError, match="different distill"):
        prepare_folder(recipe, "distill", is_chief=True)


def test_student_dropout_is_its_own_knob_and_keeps_the_copied_weights():
    keras.utils.set_random_seed(0)
    teacher = BertMLM(dict(TINY_MODEL, dropout=0.1))
    copied = build_student(teacher, [0, 3])
    quiet = build_student(teacher, [0, 3], dropout=0.0)
    assert copied.model_config.dropout == 0.1 and quiet.model_config.dropout == 0.0
    assert [v.path for v in copied.weights] == [v.path for v in quiet.weights]
    for a, b in zip(copied.weights, quiet.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    inputs = {"token_ids": np.arange(1, 17).reshape(2, 8), "padding_mask": np.ones((2, 8), "int32")}
    # Without dropout a training-mode forward is the inference forward; with it, it is not.
    np.testing.assert_allclose(quiet(inputs, training=True)["hidden"], quiet(inputs)["hidden"], atol=1e-6)
    assert np.abs(copied(inputs, training=True)["hidden"] - copied(inputs)["hidden"]).max() > 1e-3
    assert RecipeConfig.from_dict({"student": {"dropout": 0}}).student.dropout == 0.0
    with pytest.raises(ConfigError, match=r"student.dropout: got 1.5; accepted: null or a number in \[0, 1\)"):
        RecipeConfig.from_dict({"student": {"dropout": 1.5}})


@pytest.mark.timeout(300)
def test_a_mixed_precision_run_leaves_the_policy_as_it_was_and_saves_a_float32_student(tmp_path):
    """train.mixed_precision is the run's, not the process': the caller's next models are float32 again, and
    the saved student (file and KerasHub preset) computes in float32 with the trained weights."""
    corpus = write_corpus(tmp_path / "corpus")
    keras.utils.set_random_seed(5)
    teacher = BertMLM(TINY_MODEL)
    teacher.save(tmp_path / "teacher.keras")
    knobs = tiny_recipe(steps=2, seed=9, mixed_precision="mixed_bfloat16")
    knobs["data"]["vocab_file"] = corpus["vocab"]
    recipe = RecipeConfig.from_dict({**{k: v for k, v in knobs.items() if k != "model"},
                                     "teacher": str(tmp_path / "teacher.keras"), "train_data": corpus["texts"],
                                     "out": str(tmp_path / "run")})
    assert keras.config.dtype_policy().name == "float32"
    result = distill(recipe, console=False)
    assert keras.config.dtype_policy().name == "float32"  # put back
    student = keras.saving.load_model(result["student"]["keras"])
    assert student.dtype_policy.name == "float32" and student.backbone.dtype_policy.name == "float32"
    from keras_distil.models.checkpoint_formats import load_teacher

    preset = load_teacher(result["student"]["keras_hub"]).model
    assert preset.backbone.dtype_policy.name == "float32"
    for a, b in zip(student.weights, preset.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # trained: the copied layers moved from the teacher's
    moved = [np.abs(s.numpy() - t.numpy()).max() for s, t in zip(student.backbone.transformer_layers[0].weights,
                                                                   teacher.backbone.transformer_layers[0].weights)]
    assert max(moved) > 1e-4


def test_an_ignored_model_knob_on_distill_is_an_error_and_leaves_no_run_behind(tmp_path, capsys):
    """``model.hidden_size`` on distill would be ignored (the teacher dictates its shape): exit 2 with a one-line
    error naming it and the student knob to use; the run folder it started is removed, so the corrected
    command runs. A model section describing the teacher itself (a recipe shared with pretrain) is fine."""
    from keras_distil.cli import main

    corpus = write_corpus(tmp_path / "corpus")
    keras.utils.set_random_seed(5)
    BertMLM(dict(TINY_MODEL, num_layers=2)).save(tmp_path / "teacher.keras")
    base = ["distill", "--teacher", str(tmp_path / "teacher.keras"), "--train-data", corpus["texts"][0],
            "--out", str(tmp_path / "run"), "--set", f"data.vocab_file={corpus['vocab']}", "--set", "train.steps=1",
            "--set", "data.max_len=16", "--set", "data.min_len=4", "--set", "data.batch_size=4"]
    assert main(base + ["--set", "model.hidden_size=48"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.hidden_size: got 48" in err[0] and "student.hidden_size" in err[0], err
    assert not (tmp_path / "run").exists()
    teachers_own = [f"model.hidden_size={TINY_MODEL['hidden_size']}", f"model.num_heads={TINY_MODEL['num_heads']}"]
    assert main(base + [item for knob in teachers_own for item in ("--set", knob)]) == 0


def test_a_student_knob_on_pretrain_is_an_error_naming_the_model_knob(tmp_path):
    from keras_distil.training.run import pretrain

    recipe = RecipeConfig.from_dict({**tiny_recipe(steps=1), "out": str(tmp_path / "run"), "train_data": ["x.txt"],
                                     "data": {"vocab_file": "vocab.txt"}, "student": {"hidden_size": 16}})
    with pytest.raises(ConfigError, match="student.hidden_size: got 16, but pretrain .* set model.hidden_size"):
        pretrain(recipe, console=False)
    assert not (tmp_path / "run").exists()


def test_a_vocabulary_other_than_the_teachers_is_refused_unless_allowed(tmp_path):
    """Same size, two tokens swapped: distill refuses it naming the first differing id, before any training."""
    from keras_distil.data.tokenize import SPECIAL_TOKENS
    from keras_distil.models.tokenizer_settings import TokenizerSettings
    from keras_distil.training.run import _tokenizer

    words = [f"w{i}" for i in range(20)]
    teacher_vocab = list(SPECIAL_TOKENS) + words
    swapped = list(teacher_vocab)
    swapped[7], swapped[8] = swapped[8], swapped[7]
    (tmp_path / "vocab.txt").write_text("\n".join(swapped) + "\n")
    settings = TokenizerSettings(tuple(teacher_vocab), True, True)
    recipe = RecipeConfig.from_dict({"data": {"vocab_file": str(tmp_path / "vocab.txt")}})
    with pytest.raises(ConfigError, match=r"data.vocab_file: .*vocab.txt is not the teacher's vocabulary \(id 7 is "
                                          r"'w3', the teacher's 'w2'\).*data.allow_other_vocab"):
        _tokenizer(recipe, settings)
    allowed = RecipeConfig.from_dict({"data": {"vocab_file": str(tmp_path / "vocab.txt"), "allow_other_vocab": True}})
    assert list(_tokenizer(allowed, settings).vocab) == swapped
    same = tmp_path / "same.txt"
    same.write_text("\n".join(teacher_vocab) + "\n")
    assert list(_tokenizer(RecipeConfig.from_dict({"data": {"vocab_file": str(same)}}), settings).vocab) == teacher_vocab


def test_resume_with_changes_takes_new_optimisation_knobs_and_records_them(tmp_path):
    """After a NaN stop the run resumes with a lower learning rate: refused by default (naming the flag),
    accepted with --resume-with-changes and recorded in config.json's history; knobs that decide the batches
    (here train.seed) cannot change, nor can other sections."""
    recipe = RecipeConfig.from_dict({**tiny_recipe(steps=2), "out": str(tmp_path)})
    prepare_folder(recipe, "distill", is_chief=True)
    lower = RecipeConfig.from_dict({**tiny_recipe(steps=2, learning_rate=1e-4), "out": str(tmp_path)})
    with pytest.raises(ConfigError, match="different train; to resume it with these train.* values, add "
                                          "--resume-with-changes"):
        prepare_folder(lower, "distill", is_chief=True)
    prepare_folder(lower, "distill", is_chief=True, resume_with_changes=True)
    saved = json.loads(open(tmp_path / "config.json", encoding="utf-8").read())
    assert saved["train"]["learning_rate"] == 1e-4
    assert saved["history"] == [{"train": {"learning_rate": [1e-3, 1e-4]}}]
    prepare_folder(lower, "distill", is_chief=True)  # the same command again: the same run, history kept
    assert json.loads(open(tmp_path / "config.json", encoding="utf-8").read())["history"] == saved["history"]
    reseeded = RecipeConfig.from_dict({**tiny_recipe(steps=2, learning_rate=1e-4, seed=3), "out": str(tmp_path)})
    with pytest.raises(ConfigError, match="train.seed cannot change in a run"):
        prepare_folder(reseeded, "distill", is_chief=True, resume_with_changes=True)
    other_data = RecipeConfig.from_dict({**tiny_recipe(steps=2, learning_rate=1e-4), "out": str(tmp_path),
                                         "data": {"max_len": 32}})
    with pytest.raises(ConfigError, match="different data"):
        prepare_folder(other_data, "distill", is_chief=True, resume_with_changes=True)
