"""KerasHub presets in and out of :class:`BertMLM`.

The decision (numbers in tests/models/test_checkpoints_write.py and the module docs of checkpoint_formats.py):
KerasHub's stock ``BertMaskedLM`` cannot compute Hugging Face BERT: its backbone hard-codes
tanh-approximate GELU and its ``MaskedLMHead`` LayerNorm epsilon 1e-5, and neither is in the saved
config. ``DistilBertBackbone`` uses exact GELU, but ``DistilBertMaskedLM``'s head has the same 1e-5.
So presets are written in one of two flavours:

* ``classes="exact"`` (default): the preset names our registered subclasses, ``keras_distil>HFBertBackbone``
  / ``keras_distil>HFBertMaskedLM`` (and the DistilBERT pair). They are KerasHub classes (``Backbone`` /
  ``MaskedLM`` subclasses), so ``keras_hub.models.BertMaskedLM.from_preset(folder)`` (or
  ``DistilBertMaskedLM`` / ``MaskedLM`` / ``Backbone``) returns them, with outputs equal to BertMLM's
  (measured difference 0.0; 5.5e-6 (BERT) and 1.2e-5 (DistilBERT) against transformers' logits on the
  test fixtures). The one condition: this module must be imported before ``from_preset`` so Keras knows
  the class names (``import keras_distil.models.checkpoint_formats`` does it); without it KerasHub raises
  "no class registered with Keras for keras_distil>HFBertBackbone" (the preset's README.md says so). KerasHub tasks other than MaskedLM
  (e.g. ``TextClassifier.from_preset``) find no class for these backbones: build them with
  ``backbone=keras_hub.models.Backbone.from_preset(folder)``.
* ``classes="stock"``: plain ``BertBackbone`` / ``BertMaskedLM`` (``DistilBert...``), loadable by KerasHub
  alone; the weights are identical but KerasHub computes them with its own numerics. Measured on the
  random tiny fixtures: BERT hidden 1.1e-3, logits 1.6e-3 from BertMLM (2.7e-3 from transformers);
  DistilBERT hidden 0.0, logits 4.7e-5 (the head epsilon alone). On randomly initialised BERT-base /
  DistilBERT-base shapes (768 wide, 12 / 6 layers): BERT hidden 9.1e-4, logits 7.2e-4; DistilBERT
  logits 1.7e-4: above the 1e-4 parity bar, hence "exact" by default.

Reading a preset (either flavour, or a KerasHub-made one) gives a BertMLM with Hugging Face numerics:
for a stock BERT preset that means exact GELU where KerasHub used the tanh approximation.
"""

from __future__ import annotations

import os

import keras
import keras_hub
import numpy as np

from keras_distil import compat
from keras_distil.config import ModelConfig
from keras_distil.files import read_json, try_read_json
from keras_distil.models.bert import SERIALIZATION_PACKAGE, BertMLM, use_hf_numerics
from keras_distil.models.pooling import write_sentence_transformers_files
from keras_distil.models.tensor_store import CheckpointError, atomic_folder
from keras_distil.models.tokenizer_settings import TokenizerSettings

WRITE_TOLERANCE = 1e-5


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class HFBertBackbone(keras_hub.models.BertBackbone):
    """``BertBackbone`` with Hugging Face numerics: exact GELU and a configurable LayerNorm epsilon."""

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                 layer_norm_epsilon=1e-12, **kwargs):
        super().__init__(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, **kwargs)
        self.layer_norm_epsilon = layer_norm_epsilon
        use_hf_numerics(self, layer_norm_epsilon)

    def get_config(self):
        return {**super().get_config(), "layer_norm_epsilon": self.layer_norm_epsilon}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class HFDistilBertBackbone(keras_hub.models.DistilBertBackbone):
    """``DistilBertBackbone`` (already exact GELU, 1e-12), a class of its own so that KerasHub's
    ``find_subclass`` pairs it with :class:`HFDistilBertMaskedLM` and stock presets with the stock task."""


def _hf_head(task) -> None:
    compat.masked_lm_head_layer_norm(task.masked_lm_head).epsilon = getattr(task.backbone, "layer_norm_epsilon",
                                                                             1e-12)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class HFBertMaskedLM(keras_hub.models.BertMaskedLM):
    """``BertMaskedLM`` whose head LayerNorm uses the backbone's epsilon (1e-12) instead of 1e-5."""

    backbone_cls = HFBertBackbone

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        _hf_head(self)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class HFDistilBertMaskedLM(keras_hub.models.DistilBertMaskedLM):
    """``DistilBertMaskedLM`` whose head LayerNorm uses epsilon 1e-12 (DistilBERT's) instead of 1e-5."""

    backbone_cls = HFDistilBertBackbone

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        _hf_head(self)


_CLASSES = {  # (family, classes) -> backbone, task, tokenizer, preprocessor
    ("bert", "exact"): (HFBertBackbone, HFBertMaskedLM),
    ("bert", "stock"): (keras_hub.models.BertBackbone, keras_hub.models.BertMaskedLM),
    ("distilbert", "exact"): (HFDistilBertBackbone, HFDistilBertMaskedLM),
    ("distilbert", "stock"): (keras_hub.models.DistilBertBackbone, keras_hub.models.DistilBertMaskedLM),
}
_TOKENIZERS = {"bert": (keras_hub.models.BertTokenizer, keras_hub.models.BertMaskedLMPreprocessor),
               "distilbert": (keras_hub.models.DistilBertTokenizer, keras_hub.models.DistilBertMaskedLMPreprocessor)}


def hub_path(path: str, family: str) -> str | None:
    """The KerasHub variable path of a BertMLM variable (None: the variable has no place there)."""
    path = path.replace("mlm_head/transform_dense/", "mlm_head/intermediate_dense/")
    path = path.replace("mlm_head/transform_layer_norm/", "mlm_head/intermediate_layer_norm/")
    if family == "distilbert":
        if path.startswith(("segment_embedding/", "pooled_dense/")):
            return None
        if path.startswith(("token_embedding/", "position_embedding/")):
            return "token_and_position_embedding/" + path
    return path


def _values_for_family(model: BertMLM, family: str) -> dict[str, np.ndarray]:
    values = {v.path: np.asarray(v) for v in model.weights}
    if family == "distilbert":  # no segment embeddings: fold row 0 into the positions (exact for segment 0)
        values["position_embedding/embeddings"] = (values["position_embedding/embeddings"]
                                                   + values["segment_embedding/embeddings"][0])
    return values


def build_keras_hub_model(model: BertMLM, tokenizer: TokenizerSettings | None, family: str = "bert",
                          classes: str = "exact"):
    """A KerasHub ``MaskedLM`` task (or a ``Backbone`` for a head-less model) holding ``model``'s weights."""
    if (family, classes) not in _CLASSES:
        raise CheckpointError(f"family={family!r}, classes={classes!r}: accepted families bert, distilbert "
                              "and classes exact, stock")
    cfg = model.model_config
    backbone_cls, task_cls = _CLASSES[(family, classes)]
    kwargs = dict(vocabulary_size=cfg.vocab_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                  hidden_dim=cfg.hidden_size, intermediate_dim=cfg.intermediate_size, dropout=cfg.dropout,
                  max_sequence_length=cfg.max_position_embeddings)
    if family == "bert":
        kwargs["num_segments"] = cfg.type_vocab_size
    if backbone_cls is HFBertBackbone:
        kwargs["layer_norm_epsilon"] = cfg.layer_norm_eps
    elif abs(cfg.layer_norm_eps - 1e-12) > 1e-15:
        raise CheckpointError(f"{backbone_cls.__name__} fixes LayerNorm epsilon at 1e-12; the model uses "
                              f"{cfg.layer_norm_eps} (write classes='exact' with family='bert')")
    backbone = backbone_cls(**kwargs)
    preprocessor = None
    if tokenizer is not None:
        tok_cls, pre_cls = _TOKENIZERS[family]
        preprocessor = pre_cls(tokenizer.keras_hub_tokenizer(tok_cls), sequence_length=cfg.max_position_embeddings)
    target = backbone if model.mlm_head is None else task_cls(backbone, preprocessor=preprocessor)
    values = _values_for_family(model, family)
    hub_vars = {v.path: v for v in target.weights}
    for path, value in values.items():
        dest = hub_path(path, family)
        if dest is None:
            continue
        if dest not in hub_vars:
            raise CheckpointError(f"internal: no KerasHub variable {dest} for {path}")
        hub_vars[dest].assign(value)
    return target, preprocessor


def write_keras_hub_preset(model: BertMLM, folder: str, tokenizer: TokenizerSettings | None,
                           family: str = "bert", classes: str = "exact", overwrite: bool = False) -> dict:
    """Write a KerasHub preset, load it back with KerasHub's ``from_preset`` and compare, then rename it
    into place. Returns the measured max abs differences against ``model`` (``hidden``, ``logits``)."""
    target, preprocessor = build_keras_hub_model(model, tokenizer, family, classes)
    with atomic_folder(folder, overwrite) as tmp:
        target.save_to_preset(tmp)
        if classes == "exact":
            _write_readme(tmp, type(target).__name__, family)
        if model.mlm_head is None and preprocessor is not None:
            preprocessor.tokenizer.save_to_preset(tmp)
        if model.pooling is not None:  # the sentence embedding's definition travels with the preset
            cfg = model.model_config
            write_sentence_transformers_files(tmp, model.pooling, cfg.hidden_size, cfg.max_position_embeddings)
        diffs = compare_with_keras_hub(model, tmp, family)
        if classes == "exact" and not max(diffs.values()) <= WRITE_TOLERANCE:
            raise CheckpointError(f"{folder}: the written preset does not reproduce the model ({diffs})")
        if classes == "stock":
            _check_weights_equal(model, tmp, family)
    return diffs


def _write_readme(folder: str, class_name: str, family: str) -> None:
    stock = "BertMaskedLM" if family == "bert" else "DistilBertMaskedLM"
    text = (f"# keras-distil preset ({class_name})\n\nThe classes in this preset are KerasHub subclasses with "
            "Hugging Face numerics (exact GELU, LayerNorm epsilon 1e-12). Register them before loading:\n\n"
            "```python\nimport keras_hub\nimport keras_distil.models.checkpoint_formats  # registers keras_distil>HF*\n"
            f"model = keras_hub.models.{stock}.from_preset(\"path/to/this/folder\")\n```\n")
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


def _load_hub(folder: str, family: str, with_head: bool):
    if with_head:
        cls = keras_hub.models.BertMaskedLM if family == "bert" else keras_hub.models.DistilBertMaskedLM
        return cls.from_preset(folder)
    return keras_hub.models.Backbone.from_preset(folder)


def compare_with_keras_hub(model: BertMLM, folder: str, family: str) -> dict[str, float]:
    """Load ``folder`` as a stock user would (``BertMaskedLM.from_preset`` / ``DistilBertMaskedLM``) and
    compare its last hidden states and all-position logits with ``model``'s on a padded batch."""
    from keras_distil.models.parity import reference_inputs

    cfg = model.model_config
    inputs = reference_inputs(cfg.vocab_size, cfg.max_position_embeddings,
                              cfg.type_vocab_size if family == "bert" else 1)
    loaded = _load_hub(folder, family, model.mlm_head is not None)
    backbone = loaded if model.mlm_head is None else loaded.backbone
    feed = {k: v for k, v in inputs.items() if k in backbone.input}
    ours = model(inputs, training=False)
    theirs = backbone(feed, training=False)
    theirs = theirs["sequence_output"] if isinstance(theirs, dict) else theirs
    diffs = {"hidden": float(np.max(np.abs(np.asarray(ours["hidden"]) - np.asarray(theirs))))}
    if model.mlm_head is not None:
        positions = np.tile(np.arange(inputs["token_ids"].shape[1], dtype=np.int32)[None], (2, 1))
        logits = loaded({**feed, "mask_positions": positions}, training=False)
        diffs["logits"] = float(np.max(np.abs(np.asarray(ours["logits"]) - np.asarray(logits))))
    return diffs


def _check_weights_equal(model: BertMLM, folder: str, family: str) -> None:
    loaded = _load_hub(folder, family, model.mlm_head is not None)
    hub_vars = {v.path: np.asarray(v) for v in loaded.weights}
    for path, value in _values_for_family(model, family).items():
        dest = hub_path(path, family)
        if dest is not None and not np.array_equal(hub_vars[dest], value):
            raise CheckpointError(f"{folder}: variable {dest} differs after reloading the preset")


# ---------------------------------------------------------------- reading


def is_keras_hub_preset(folder: str) -> bool:
    """A KerasHub preset's config.json is a serialized Keras object (it has ``registered_name``)."""
    config = try_read_json(os.path.join(folder, "config.json"))
    return config is not None and "registered_name" in config


def _task_class(folder: str):
    path = os.path.join(folder, "task.json")
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(folder, "task.weights.h5"))):
        return None
    name = read_json(path, "a KerasHub task", expect=dict, error=CheckpointError).get("registered_name")
    cls = keras.saving.get_registered_object(name)
    return cls if isinstance(cls, type) and issubclass(cls, keras_hub.models.MaskedLM) else None


def read_keras_hub_preset(folder: str, require_mlm_head: bool = False):
    """(BertMLM, TokenizerSettings | None, family) from a KerasHub BERT / DistilBERT preset folder."""
    try:
        task_cls = _task_class(folder)
        hub = task_cls.from_preset(folder) if task_cls else keras_hub.models.Backbone.from_preset(folder)
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise CheckpointError(f"{folder}: not a loadable KerasHub preset ({e})") from None
    if not task_cls and require_mlm_head:
        raise CheckpointError(f"{folder}: this KerasHub preset has no MLM head (no task.json / task.weights.h5 "
                              "of a MaskedLM): set distill.alpha_ce, alpha_mlm and alpha_mse to 0 to use it "
                              "for the hidden-state loss only")
    model, settings, family = from_keras_hub_model(hub, source=folder)
    if settings is None:
        settings = _preset_tokenizer_settings(folder)
    return model, settings, family


def from_keras_hub_model(hub, source: str):
    """Convert a KerasHub BERT / DistilBERT ``MaskedLM`` task or ``Backbone`` to a BertMLM (HF numerics)."""
    task = hub if isinstance(hub, keras_hub.models.Task) else None
    backbone = task.backbone if task is not None else hub
    if isinstance(backbone, keras_hub.models.BertBackbone):
        family, segments = "bert", backbone.num_segments
        eps = getattr(backbone, "layer_norm_epsilon", 1e-12)
    elif isinstance(backbone, keras_hub.models.DistilBertBackbone):
        family, segments, eps = "distilbert", 2, 1e-12
    else:
        raise CheckpointError(f"{source}: {type(backbone).__name__} is not a BERT or DistilBERT backbone")
    has_head = task is not None and isinstance(task, keras_hub.models.MaskedLM)
    cfg = ModelConfig(vocab_size=backbone.vocabulary_size, hidden_size=backbone.hidden_dim,
                      num_layers=backbone.num_layers, num_heads=backbone.num_heads,
                      intermediate_size=backbone.intermediate_dim,
                      max_position_embeddings=backbone.max_sequence_length, type_vocab_size=segments,
                      dropout=backbone.dropout, layer_norm_eps=eps, model_type=family)
    model = BertMLM(cfg, with_mlm_head=has_head)
    hub_vars = {v.path: np.asarray(v) for v in (task if has_head else backbone).weights}
    for variable in model.weights:
        src = hub_path(variable.path, family)
        if src is None:  # DistilBERT: no segment table, no pooler
            variable.assign(np.zeros(variable.shape, np.float32))
        elif src not in hub_vars:
            raise CheckpointError(f"{source}: variable {src} is missing")
        elif tuple(hub_vars[src].shape) != tuple(variable.shape):
            raise CheckpointError(f"{source}: variable {src} has shape {list(hub_vars[src].shape)}, expected "
                                  f"{list(variable.shape)}")
        else:
            variable.assign(hub_vars[src])
    return model, _tokenizer_settings(task), family


def _preset_tokenizer_settings(folder: str) -> TokenizerSettings | None:
    """The tokenizer of a Backbone-only preset (tokenizer.json + assets/), which ``Backbone.from_preset``
    ignores. ``BertTokenizer.from_preset`` cannot read it either: it looks for a tokenizer class matching
    the backbone class recorded in config.json, and ours is a subclass; so deserialize it directly."""
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.exists(path):
        return None
    config = read_json(path, "a KerasHub tokenizer", expect=dict, error=CheckpointError)
    try:
        tokenizer = keras.saving.deserialize_keras_object(config)
        tokenizer.load_preset_assets(folder)
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable KerasHub tokenizer ({e})") from None
    return _settings_of(tokenizer)


def _tokenizer_settings(task) -> TokenizerSettings | None:
    return _settings_of(getattr(getattr(task, "preprocessor", None), "tokenizer", None))


def _settings_of(tokenizer) -> TokenizerSettings | None:
    if tokenizer is None or tokenizer.vocabulary is None:
        return None
    return TokenizerSettings(tuple(tokenizer.get_vocabulary()), bool(tokenizer.lowercase),
                             bool(tokenizer.strip_accents))
