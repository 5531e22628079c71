"""Every private Keras / KerasHub attribute keras-distil touches, in one place, each checked before use.

The toolkit pins keras==3.15.1 and keras-hub==0.32.0 (setup.py) and was verified against those
versions. A few things it needs have no public API there, so it reaches into private attributes:

* keras-hub ``TransformerEncoder._feedforward_intermediate_dense``: exact GELU in the feed-forward block;
* keras-hub ``TransformerEncoder._self_attention_layer_norm`` and ``._feedforward_layer_norm``: Hugging
  Face's LayerNorm epsilon;
* keras-hub ``MaskedLMHead._intermediate_layer_norm``: the head's LayerNorm epsilon (1e-12);
* keras ``Optimizer._learning_rate``: the schedule, read at the last applied step for the logs;
* keras ``Optimizer._all_reduce_sum_gradients``: replaced, the training step sums gradients itself;
* keras ``ExportArchive._tf_trackable``: its duplicate variable lists are dropped (half the SavedModel).

(:data:`PRIVATE_ATTRIBUTES` is the same list as data.) Each accessor below checks that the attribute
exists and otherwise raises :class:`CompatibilityError` naming the attribute, the installed version and
the version checked, instead of an ``AttributeError`` deep inside a model build or a training step. The
one exception is ``_tf_trackable``: without it an export is still correct (only larger), so a warning
is logged and the export goes on.

This module is at the bottom of the package: it imports nothing from it but :mod:`keras_distil.errors`.
"""

from __future__ import annotations

import logging

from keras_distil.errors import KerasDistilError

logger = logging.getLogger("keras_distil")

# The versions these private attributes were checked against (the pins of setup.py).
CHECKED_VERSIONS = {"keras": "3.15.1", "keras-hub": "0.32.0"}

# (library, class, private attribute) -> what keras-distil uses it for.
PRIVATE_ATTRIBUTES = {
    ("keras-hub", "TransformerEncoder", "_feedforward_intermediate_dense"):
        "models/bert.py use_hf_numerics sets its activation to exact GELU",
    ("keras-hub", "TransformerEncoder", "_self_attention_layer_norm"):
        "models/bert.py use_hf_numerics sets its epsilon to the checkpoint's layer_norm_eps",
    ("keras-hub", "TransformerEncoder", "_feedforward_layer_norm"):
        "models/bert.py use_hf_numerics sets its epsilon to the checkpoint's layer_norm_eps",
    ("keras-hub", "TransformerEncoder", "_self_attention_layer"):
        "models/bert.py BertMLM.attention_projections recomputes its queries, keys and values (layer-wise terms)",
    ("keras", "MultiHeadAttention", "_query_dense"):
        "models/bert.py BertMLM.attention_projections: the attention maps of the layer-wise terms",
    ("keras", "MultiHeadAttention", "_key_dense"):
        "models/bert.py BertMLM.attention_projections: the attention maps of the layer-wise terms",
    ("keras", "MultiHeadAttention", "_value_dense"):
        "models/bert.py BertMLM.attention_projections: the value relations of the layer-wise terms",
    ("keras-hub", "MaskedLMHead", "_intermediate_layer_norm"):
        "models/keras_hub_preset.py sets its epsilon to the backbone's in the HF-numerics masked-LM tasks",
    ("keras", "Optimizer", "_learning_rate"):
        "training/optim.py reads the learning-rate schedule at the last applied step for the logs",
    ("keras", "Optimizer", "_all_reduce_sum_gradients"):
        "training/optim.py replaces it by the identity: the training step sums gradients over replicas itself",
    ("keras", "ExportArchive", "_tf_trackable"):
        "export/saved_model.py empties its duplicate variable lists to save each weight once",
}


class CompatibilityError(KerasDistilError, RuntimeError):
    """The installed Keras or KerasHub lacks a private attribute keras-distil needs; the message names the
    attribute, the installed version and the version keras-distil was checked against."""


def installed_version(library: str) -> str:
    """The installed version of ``"keras"`` or ``"keras-hub"`` (``"unknown"`` when it cannot be read)."""
    try:
        if library == "keras":
            import keras

            return keras.__version__
        import keras_hub

        return keras_hub.__version__
    except (ImportError, AttributeError):
        return "unknown"


def _missing_message(obj, library: str, cls: str, name: str) -> str:
    purpose = PRIVATE_ATTRIBUTES[(library, cls, name)]
    checked = CHECKED_VERSIONS[library]
    return (f"{type(obj).__name__}.{name}: missing in {library} {installed_version(library)}, and keras-distil "
            f"needs this private attribute of {cls} ({purpose}); it was checked against {library} {checked}: "
            f"pip install {library}=={checked}, or update keras_distil/compat.py for this version.")


def _get(obj, library: str, cls: str, name: str):
    if (library, cls, name) not in PRIVATE_ATTRIBUTES:  # pragma: no cover - a programming error here
        raise KeyError(f"{library} {cls}.{name} is not listed in keras_distil.compat.PRIVATE_ATTRIBUTES")
    try:
        return getattr(obj, name)
    except AttributeError:
        raise CompatibilityError(_missing_message(obj, library, cls, name)) from None


# ---- keras-hub ---------------------------------------------------------------------------------------

def transformer_encoder_parts(layer) -> tuple:
    """``(intermediate Dense, self-attention LayerNorm, feed-forward LayerNorm)`` of a KerasHub
    ``TransformerEncoder`` (built), whose ``activation`` / ``epsilon`` are read at call time."""
    return tuple(_get(layer, "keras-hub", "TransformerEncoder", name)
                 for name in ("_feedforward_intermediate_dense", "_self_attention_layer_norm",
                              "_feedforward_layer_norm"))


def attention_projections(layer) -> tuple:
    """``(query, key, value)`` EinsumDense layers of a KerasHub ``TransformerEncoder``'s self-attention
    (built): ``[B, L, H] -> [B, L, heads, head_dim]``, biases included."""
    attention = _get(layer, "keras-hub", "TransformerEncoder", "_self_attention_layer")
    return tuple(_get(attention, "keras", "MultiHeadAttention", name)
                 for name in ("_query_dense", "_key_dense", "_value_dense"))


def masked_lm_head_layer_norm(head):
    """The LayerNormalization of a KerasHub ``MaskedLMHead`` (built)."""
    return _get(head, "keras-hub", "MaskedLMHead", "_intermediate_layer_norm")


# ---- keras ---------------------------------------------------------------------------------------------

def optimizer_learning_rate(optimizer):
    """The optimizer's learning rate as given: a schedule object, or a variable (``optimizer.learning_rate``
    would evaluate a schedule at the current iteration)."""
    return _get(optimizer, "keras", "Optimizer", "_learning_rate")


def replace_gradient_all_reduce(optimizer, function) -> None:
    """Replace the optimizer's cross-replica gradient sum (``_all_reduce_sum_gradients(grads_and_vars)``)
    by ``function`` on this instance."""
    _get(optimizer, "keras", "Optimizer", "_all_reduce_sum_gradients")
    optimizer._all_reduce_sum_gradients = function


def export_archive_trackable(archive):
    """The ``tf.Module`` an ``ExportArchive`` saves, or None (with a warning naming the versions) when this
    Keras has none: callers then keep Keras' default layout."""
    try:
        return _get(archive, "keras", "ExportArchive", "_tf_trackable")
    except CompatibilityError as e:
        logger.warning("%s The export goes on with every weight saved twice.", e)
        return None
