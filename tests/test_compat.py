"""keras_distil.compat: every private Keras / KerasHub attribute the toolkit touches exists on the pinned
versions, and a missing one is a one-line error naming the attribute and the versions."""

import keras
import keras_hub
import pytest

from keras_distil import compat
from keras_distil.errors import KerasDistilError


def _instances() -> dict:
    """A built instance of every class named in compat.PRIVATE_ATTRIBUTES."""
    encoder = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    encoder.build((None, 4, 8))
    head = keras_hub.layers.MaskedLMHead(vocabulary_size=10, activation="gelu")
    head.build((None, 4, 8), (None, 2))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    attention.build((None, 4, 8), (None, 4, 8))
    return {"TransformerEncoder": encoder, "MaskedLMHead": head, "Optimizer": keras.optimizers.AdamW(1e-3),
            "ExportArchive": keras.export.ExportArchive(), "MultiHeadAttention": attention}


def test_the_pins_are_the_versions_checked():
    assert compat.installed_version("keras") == compat.CHECKED_VERSIONS["keras"]
    assert compat.installed_version("keras-hub") == compat.CHECKED_VERSIONS["keras-hub"]


def test_every_listed_private_attribute_exists():
    instances = _instances()
    for library, cls, name in compat.PRIVATE_ATTRIBUTES:
        assert hasattr(instances[cls], name), f"{library} {cls}.{name}"
    parts = compat.transformer_encoder_parts(instances["TransformerEncoder"])
    assert [p.name for p in parts] == ["feedforward_intermediate_dense", "self_attention_layer_norm",
                                       "feedforward_layer_norm"]
    assert compat.masked_lm_head_layer_norm(instances["MaskedLMHead"]).name == "intermediate_layer_norm"
    projections = compat.attention_projections(instances["TransformerEncoder"])
    assert [p.name for p in projections] == ["query", "key", "value"]
    assert float(compat.optimizer_learning_rate(instances["Optimizer"])) == pytest.approx(1e-3)
    assert compat.export_archive_trackable(instances["ExportArchive"]) is not None


def test_a_missing_attribute_names_itself_and_the_versions(caplog):
    class Stranger:
        pass

    with pytest.raises(compat.CompatibilityError) as info:
        compat.transformer_encoder_parts(Stranger())
    message = str(info.value)
    assert isinstance(info.value, KerasDistilError) and "\n" not in message
    assert "Stranger._feedforward_intermediate_dense: missing in keras-hub 0.32.0" in message
    assert "pip install keras-hub==0.32.0" in message
    with pytest.raises(compat.CompatibilityError, match=r"_all_reduce_sum_gradients: missing in keras 3\.15\.1"):
        compat.replace_gradient_all_reduce(Stranger(), lambda grads_and_vars: grads_and_vars)
    assert compat.export_archive_trackable(Stranger()) is None  # only a larger export: a warning, no error
    assert "_tf_trackable: missing in keras" in caplog.text
