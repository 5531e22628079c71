"""How Hugging Face BERT / DistilBERT tensors map onto :class:`BertMLM` variables, both ways.

Both families are post-LayerNorm encoders with the same arithmetic, so one Keras model holds either:

* BERT (``model_type="bert"``): ``bert.embeddings.*``, ``bert.encoder.layer.N.*``, optional
  ``bert.pooler.dense`` and ``cls.predictions.*`` (transform dense -> exact GELU -> LayerNorm -> decoder
  tied to the word embeddings, plus a bias). ``BertModel`` folders have no ``bert.`` prefix; old
  checkpoints (bert-base-uncased) name LayerNorm parameters ``gamma``/``beta``: both are accepted.
* DistilBERT (``model_type="distilbert"``): no token-type embeddings, ``q_lin/k_lin/v_lin/out_lin``,
  ``sa_layer_norm``, ``ffn.lin1/lin2``, ``output_layer_norm``; head ``vocab_transform`` -> GELU ->
  ``vocab_layer_norm`` -> ``vocab_projector`` (tied). LayerNorm eps is hard-coded 1e-12 and the
  activation is exact GELU, as in :class:`BertMLM`. The missing token-type term is a zero segment table
  (two rows, so segment ids are accepted and ignored as DistilBERT ignores them). Writing a model back
  as DistilBERT folds segment row 0 into the position table, which is exact for segment-0 inputs.

Keras layouts: ``Dense`` kernels are [in, out] where PyTorch ``Linear`` weights are [out, in]; the
attention projections are EinsumDense kernels [H, heads, head_dim] (query/key/value) and
[heads, head_dim, H] (output), with biases [heads, head_dim].
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_distil.config import ConfigError, ModelConfig
from keras_distil.models.tensor_store import CheckpointError

SUPPORTED_MODEL_TYPES = ("bert", "distilbert")
_PREFIX = {"bert": "bert.", "distilbert": "distilbert."}
# Tensors a checkpoint may carry that BertMLM has no place for (dropped without a warning).
IGNORED = ("cls.seq_relationship.weight", "cls.seq_relationship.bias", "embeddings.position_ids")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One BertMLM variable and its Hugging Face tensor.

    ``kind``: "same" (identical layout), "flat" (a bias reshaped to [heads, head_dim]), "dense1" /
    "dense2" (a Linear weight: transposed, the Keras kernel's first 1 or 2 axes being the input).
    ``part``: "encoder", "pooler" or "head", which decides whether the tensor must exist.
    """

    keras_path: str
    hf_name: str
    kind: str = "same"
    part: str = "encoder"

    def hf_shape(self, keras_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.kind == "same":
            return tuple(keras_shape)
        if self.kind == "flat":
            return (math.prod(keras_shape),)
        n_in = 1 if self.kind == "dense1" else 2
        return (math.prod(keras_shape[n_in:]), math.prod(keras_shape[:n_in]))

    def to_keras(self, hf: np.ndarray, keras_shape: tuple[int, ...]) -> np.ndarray:
        if self.kind.startswith("dense"):
            hf = hf.T
        return np.ascontiguousarray(hf.reshape(keras_shape))

    def to_hf(self, value: np.ndarray) -> np.ndarray:
        if self.kind == "same":
            return value
        if self.kind == "flat":
            return value.reshape(-1)
        n_in = 1 if self.kind == "dense1" else 2
        return np.ascontiguousarray(value.reshape(math.prod(value.shape[:n_in]), -1).T)


# The tensor tables: (our variable, layout kind, BERT name, DistilBERT name); None where a family has no
# such tensor. Names are without the ``bert.`` / ``distilbert.`` prefix (see :func:`canonical_name`).
_EMBEDDINGS = (  # part "encoder"
    ("token_embedding/embeddings", "same", "embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("position_embedding/embeddings", "same", "embeddings.position_embeddings.weight",
     "embeddings.position_embeddings.weight"),
    ("segment_embedding/embeddings", "same", "embeddings.token_type_embeddings.weight", None),
    ("embeddings_layer_norm/gamma", "same", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.weight"),
    ("embeddings_layer_norm/beta", "same", "embeddings.LayerNorm.bias", "embeddings.LayerNorm.bias"),
)
# Every transformer layer i: ours under "transformer_layer_{i}/", theirs under _LAYER_PREFIX (part "encoder").
_LAYER_PREFIX = {"bert": "encoder.layer.{i}.", "distilbert": "transformer.layer.{i}."}
_LAYER = (
    ("self_attention_layer/query/kernel", "dense1", "attention.self.query.weight", "attention.q_lin.weight"),
    ("self_attention_layer/query/bias", "flat", "attention.self.query.bias", "attention.q_lin.bias"),
    ("self_attention_layer/key/kernel", "dense1", "attention.self.key.weight", "attention.k_lin.weight"),
    ("self_attention_layer/key/bias", "flat", "attention.self.key.bias", "attention.k_lin.bias"),
    ("self_attention_layer/value/kernel", "dense1", "attention.self.value.weight", "attention.v_lin.weight"),
    ("self_attention_layer/value/bias", "flat", "attention.self.value.bias", "attention.v_lin.bias"),
    ("self_attention_layer/attention_output/kernel", "dense2", "attention.output.dense.weight",
     "attention.out_lin.weight"),
    ("self_attention_layer/attention_output/bias", "same", "attention.output.dense.bias", "attention.out_lin.bias"),
    ("self_attention_layer_norm/gamma", "same", "attention.output.LayerNorm.weight", "sa_layer_norm.weight"),
    ("self_attention_layer_norm/beta", "same", "attention.output.LayerNorm.bias", "sa_layer_norm.bias"),
    ("feedforward_intermediate_dense/kernel", "dense1", "intermediate.dense.weight", "ffn.lin1.weight"),
    ("feedforward_intermediate_dense/bias", "same", "intermediate.dense.bias", "ffn.lin1.bias"),
    ("feedforward_output_dense/kernel", "dense1", "output.dense.weight", "ffn.lin2.weight"),
    ("feedforward_output_dense/bias", "same", "output.dense.bias", "ffn.lin2.bias"),
    ("feedforward_layer_norm/gamma", "same", "output.LayerNorm.weight", "output_layer_norm.weight"),
    ("feedforward_layer_norm/beta", "same", "output.LayerNorm.bias", "output_layer_norm.bias"),
)
_POOLER = (  # part "pooler"
    ("pooled_dense/kernel", "dense1", "pooler.dense.weight", None),
    ("pooled_dense/bias", "same", "pooler.dense.bias", None),
)
_HEAD = (  # part "head"; the decoder weight is tied to the word embeddings (DECODER_WEIGHT)
    ("mlm_head/transform_dense/kernel", "dense1", "cls.predictions.transform.dense.weight", "vocab_transform.weight"),
    ("mlm_head/transform_dense/bias", "same", "cls.predictions.transform.dense.bias", "vocab_transform.bias"),
    ("mlm_head/transform_layer_norm/gamma", "same", "cls.predictions.transform.LayerNorm.weight",
     "vocab_layer_norm.weight"),
    ("mlm_head/transform_layer_norm/beta", "same", "cls.predictions.transform.LayerNorm.bias", "vocab_layer_norm.bias"),
    ("mlm_head/output_bias", "same", "cls.predictions.bias", "vocab_projector.bias"),
)


def _specs(table, column: int, part: str, ours_prefix: str = "", hf_prefix: str = "") -> list[Spec]:
    return [Spec(ours_prefix + ours, hf_prefix + names[column], kind, part)
            for ours, kind, *names in table if names[column] is not None]


def tensor_specs(model_type: str, num_layers: int) -> list[Spec]:
    """Every BertMLM variable of a ``model_type`` model and its Hugging Face tensor, embeddings first."""
    column = SUPPORTED_MODEL_TYPES.index(model_type)  # the tables' name columns: BERT, DistilBERT
    specs = _specs(_EMBEDDINGS, column, "encoder")
    for i in range(num_layers):
        specs += _specs(_LAYER, column, "encoder", f"transformer_layer_{i}/", _LAYER_PREFIX[model_type].format(i=i))
    return specs + _specs(_POOLER, column, "pooler") + _specs(_HEAD, column, "head")


# Other names a tensor may carry in older or differently saved checkpoints.
ALIASES = {"cls.predictions.bias": ("cls.predictions.decoder.bias",)}
DECODER_WEIGHT = {"bert": "cls.predictions.decoder.weight", "distilbert": "vocab_projector.weight"}
HEAD_PROBE = {"bert": "cls.predictions.transform.dense.weight", "distilbert": "vocab_transform.weight"}


def canonical_name(name: str, model_type: str) -> str:
    """``bert.embeddings.LayerNorm.gamma`` -> ``embeddings.LayerNorm.weight`` (prefix and legacy names off)."""
    prefix = _PREFIX[model_type]
    if name.startswith(prefix):
        name = name[len(prefix):]
    if name.endswith(".gamma"):
        name = name[: -len(".gamma")] + ".weight"
    elif name.endswith(".beta"):
        name = name[: -len(".beta")] + ".bias"
    return name


def hf_name_for_writing(name: str, model_type: str) -> str:
    """The name ``save_pretrained`` of ``BertForMaskedLM`` / ``DistilBertForMaskedLM`` uses."""
    top_level = name.startswith("cls.") or name.startswith("vocab_")
    return name if top_level else _PREFIX[model_type] + name


# ---------------------------------------------------------------- config.json <-> ModelConfig


def _get(config: dict, key: str, path: str, default=None):
    if key in config:
        return config[key]
    if default is None:
        raise CheckpointError(f"{path}: missing key '{key}'")
    return default


def model_config_from_hf(config: dict, path: str) -> ModelConfig:
    """A :class:`ModelConfig` from a Hugging Face ``config.json``; what BertMLM cannot compute is refused."""
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            f"{path}: unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)} "
            "(BertForMaskedLM, BertForPreTraining, BertModel, DistilBertForMaskedLM)")
    if model_type == "bert":
        act = config.get("hidden_act", "gelu")
        if act != "gelu":
            raise CheckpointError(f"{path}: hidden_act={act!r} is not supported (exact 'gelu' only)")
        pos = config.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise CheckpointError(f"{path}: position_embedding_type={pos!r} is not supported ('absolute' only)")
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise CheckpointError(f"{path}: decoder / cross-attention BERT is not supported")
        values = dict(
            vocab_size=_get(config, "vocab_size", path), hidden_size=_get(config, "hidden_size", path),
            num_layers=_get(config, "num_hidden_layers", path), num_heads=_get(config, "num_attention_heads", path),
            intermediate_size=_get(config, "intermediate_size", path),
            max_position_embeddings=_get(config, "max_position_embeddings", path, 512),
            type_vocab_size=_get(config, "type_vocab_size", path, 2),
            dropout=_get(config, "hidden_dropout_prob", path, 0.1),
            layer_norm_eps=_get(config, "layer_norm_eps", path, 1e-12))
    else:
        act = config.get("activation", "gelu")
        if act != "gelu":
            raise CheckpointError(f"{path}: activation={act!r} is not supported (exact 'gelu' only)")
        values = dict(
            vocab_size=_get(config, "vocab_size", path), hidden_size=_get(config, "dim", path),
            num_layers=_get(config, "n_layers", path), num_heads=_get(config, "n_heads", path),
            intermediate_size=_get(config, "hidden_dim", path),
            max_position_embeddings=_get(config, "max_position_embeddings", path, 512),
            type_vocab_size=2, dropout=_get(config, "dropout", path, 0.1), layer_norm_eps=1e-12)
    pad = config.get("pad_token_id")
    values["pad_token_id"] = 0 if pad is None else pad
    values["model_type"] = model_type
    try:
        return ModelConfig.from_dict(values)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def hf_config_from_model_config(cfg: ModelConfig, model_type: str, with_mlm_head: bool) -> dict:
    """The ``config.json`` transformers writes for BertForMaskedLM / BertModel / DistilBertForMaskedLM."""
    if model_type == "bert":
        return {
            "architectures": ["BertForMaskedLM" if with_mlm_head else "BertModel"],
            "model_type": "bert", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
            "intermediate_size": cfg.intermediate_size, "hidden_act": "gelu",
            "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
            "max_position_embeddings": cfg.max_position_embeddings, "type_vocab_size": cfg.type_vocab_size,
            "initializer_range": 0.02, "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_token_id,
            "position_embedding_type": "absolute", "tie_word_embeddings": True, "dtype": "float32",
        }
    if not with_mlm_head:
        raise CheckpointError("a DistilBERT checkpoint is written with its MLM head; this model has none")
    if abs(cfg.layer_norm_eps - 1e-12) > 1e-15:
        raise CheckpointError(f"DistilBERT's LayerNorm epsilon is fixed at 1e-12; this model uses {cfg.layer_norm_eps}")
    return {
        "architectures": ["DistilBertForMaskedLM"], "model_type": "distilbert", "vocab_size": cfg.vocab_size,
        "dim": cfg.hidden_size, "n_layers": cfg.num_layers, "n_heads": cfg.num_heads,
        "hidden_dim": cfg.intermediate_size, "activation": "gelu", "dropout": cfg.dropout,
        "attention_dropout": cfg.dropout, "max_position_embeddings": cfg.max_position_embeddings,
        "sinusoidal_pos_embds": False, "initializer_range": 0.02, "pad_token_id": cfg.pad_token_id,
        "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "tie_word_embeddings": True, "dtype": "float32",
    }
