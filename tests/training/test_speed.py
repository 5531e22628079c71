"""The speed knobs' auto settings (training/speed.py) and the teacher precision a distill run uses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_distil import TrainConfig
from keras_distil.config import ConfigError
from keras_distil.models.bert import build_mlm_model, dummy_inputs, precision_copy
from keras_distil.training import speed
from keras_distil.training.speed import fast_bfloat16, resolve_runtime

TINY = dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=32)


@pytest.fixture
def cpu_flags(monkeypatch):
    def set_flags(*flags):
        monkeypatch.setattr(speed, "_cpu_flags", lambda: frozenset(flags))
    return set_flags


def default_strategy():
    return tf.distribute.get_strategy()


def test_bfloat16_is_native_only_on_cpus_with_avx512_bf16_or_amx(cpu_flags):
    cpu_flags("avx2", "avx512f")
    assert fast_bfloat16(default_strategy())[0] is False
    cpu_flags("avx512f", "avx512_bf16")
    native, reason = fast_bfloat16(default_strategy())
    assert native and "avx512_bf16" in reason
    cpu_flags("amx_bf16")
    assert fast_bfloat16(default_strategy())[0]


def test_auto_chooses_bfloat16_where_native_and_float32_elsewhere(cpu_flags):
    cpu_flags("avx512_bf16")
    choice = resolve_runtime(TrainConfig(), default_strategy())
    assert (choice.policy, choice.teacher_precision, choice.jit_compile) == ("mixed_bfloat16", "bfloat16", False)
    assert set(choice.reasons) == {"train.mixed_precision", "train.teacher_precision", "train.jit_compile"}
    cpu_flags()
    choice = resolve_runtime(TrainConfig(), default_strategy())
    assert (choice.policy, choice.teacher_precision) == ("float32", "float32")


def test_explicit_settings_are_kept_whatever_the_device(cpu_flags):
    cpu_flags()
    choice = resolve_runtime(TrainConfig(mixed_precision="mixed_bfloat16", teacher_precision="bfloat16",
                                         jit_compile="on"), default_strategy())
    assert (choice.policy, choice.teacher_precision, choice.jit_compile) == ("mixed_bfloat16", "bfloat16", True)
    assert "train.mixed_precision" not in choice.reasons  # only auto settings are explained


def test_a_teacher_precision_outside_the_accepted_values_is_a_config_error():
    with pytest.raises(ConfigError, match="train.teacher_precision"):
        TrainConfig.from_dict({"teacher_precision": "int8"})


def test_a_bfloat16_teacher_holds_bfloat16_weights_and_stays_close_to_float32():
    keras.utils.set_random_seed(3)
    teacher = build_mlm_model(TINY)
    teacher.trainable = False
    copy = precision_copy(teacher, "bfloat16")
    assert {w.dtype for w in copy.weights} == {"bfloat16"} and not copy.trainable
    inputs = dummy_inputs(2, 8, num_predictions=3, vocab_size=64)
    a, b = teacher(inputs), copy(inputs)
    np.testing.assert_allclose(np.asarray(tf.cast(b["logits"], tf.float32)), np.asarray(a["logits"]), atol=0.05)
    # the float32 model is left as it was
    assert {w.dtype for w in teacher.weights} == {"float32"}


def test_auto_keeps_models_narrower_than_256_in_float32(cpu_flags):
    """bfloat16 measured slower below 256 wide (docs/runtime.md): the quickstart's and the tests' models."""
    cpu_flags("avx512_bf16")
    narrow = resolve_runtime(TrainConfig(), default_strategy(), student_width=128, teacher_width=128)
    assert (narrow.policy, narrow.teacher_precision) == ("float32", "float32")
    assert "128 wide" in narrow.reasons["train.mixed_precision"]
    mixed = resolve_runtime(TrainConfig(), default_strategy(), student_width=192, teacher_width=384)
    assert (mixed.policy, mixed.teacher_precision) == ("float32", "bfloat16")
    wide = resolve_runtime(TrainConfig(), default_strategy(), student_width=768, teacher_width=768)
    assert (wide.policy, wide.teacher_precision) == ("mixed_bfloat16", "bfloat16")
