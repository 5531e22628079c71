"""Every knob of keras-distil, with its default, its unit and one line of meaning.

A recipe is a JSON object whose top-level keys are the sections below (``model``, ``distill``, ``data``,
``train``) plus a few top-level paths. Unknown keys, wrong types and impossible combinations raise
:class:`ConfigError` naming the key (as ``section.key``) and what is accepted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from keras_distil.errors import KerasDistilError
from keras_distil.files import atomic_write_json, read_json


class ConfigError(KerasDistilError, ValueError):
    """A recipe or a knob is wrong: the message names the key and the accepted values.

    A :class:`~keras_distil.errors.KerasDistilError` and a ``ValueError``.

    Args:
      *args: the message (as for any exception).

    Example:
    >>> import keras_distil as kd
    >>> try:
    ...     kd.ModelConfig.from_dict({"hidden_size": 10, "num_heads": 3})
    ... except kd.ConfigError as e:
    ...     print(e)
    model.num_heads: got 3; accepted: a divisor of hidden_size=10
    """


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        (inner,) = get_args(tp)
        return f"list of {_type_name(inner)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce_value(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float where a float is wanted).

    Args:
      value: a JSON value (from a recipe, or a ``--set`` item parsed by :func:`parse_override`).
      tp: the field's annotation: bool, int, float, str, None, ``Literal[...]``, ``list[...]`` or a union.
      key: the knob's name, for the error.

    Raises :class:`ConfigError` naming ``key``, the value and the accepted type.

    Example:
    >>> coerce_value(3, float | None, "train.learning_rate")
    3.0
    >>> try:
    ...     coerce_value("wide", int, "hidden_size")
    ... except ConfigError as e:
    ...     print(e)
    hidden_size: got 'wide'; accepted: int
    """
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        for option in get_args(tp):
            try:
                return coerce_value(value, option, key)
            except ConfigError:
                continue
    elif origin is list:
        (inner,) = get_args(tp)
        if isinstance(value, (list, tuple)):
            return [coerce_value(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a programming error in this module
        raise TypeError(f"unsupported annotation {tp!r} for {key}")
    raise ConfigError(f"{key}: got {value!r}; accepted: {_type_name(tp)}")


class Section:
    """Base of every config section: typed ``from_dict`` / ``to_dict`` and a ``validate`` hook."""

    _name = "config"

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None):
        prefix = prefix or cls._name
        data = dict(data or {})
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{prefix}: unknown key(s) {', '.join(unknown)}; accepted keys: {', '.join(sorted(fields))}"
            )
        kwargs = {}
        for name, value in data.items():
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, Section):
                kwargs[name] = hint.from_dict(value, f"{prefix}.{name}")
            else:
                kwargs[name] = coerce_value(value, hint, f"{prefix}.{name}")
        obj = cls(**kwargs)
        obj.validate(prefix)
        return obj

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        """A validated copy with ``changes`` applied (keys checked like a recipe's)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def validate(self, prefix: str) -> None:  # overridden where a section has constraints
        return None


def _require(ok: bool, key: str, accepted: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: got {value!r}; accepted: {accepted}")


@dataclasses.dataclass
class ModelConfig(Section):
    """Shape of a BERT encoder with an MLM head (Hugging Face ``BertConfig`` names in comments).

    The fields (each commented with its Hugging Face name below); ``from_dict`` checks types and ranges.

    Args:
      vocab_size: tokens in the vocabulary.
      hidden_size: width of every hidden state.
      num_layers: transformer blocks.
      num_heads: attention heads; must divide ``hidden_size``.
      intermediate_size: feed-forward inner width.
      max_position_embeddings: longest sequence, in tokens.
      type_vocab_size: segment ids.
      dropout: dropout on hidden states and attention probabilities, in [0, 1).
      layer_norm_eps: LayerNorm epsilon.
      pad_token_id: id of [PAD].
      model_type: "bert" or "distilbert", the family the weights came from.

    Example:
    >>> import keras_distil as kd
    >>> config = kd.ModelConfig(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    >>> kd.ModelConfig.from_dict(config.to_dict()) == config
    True
    >>> kd.ModelConfig.from_dict({"hidden_size": 10, "num_heads": 3})
    Traceback (most recent call last):
    ...
    keras_distil.config.ConfigError: model.num_heads: got 3; accepted: a divisor of hidden_size=10
    """

    _name = "model"
    vocab_size: int = 30522  # tokens in the vocabulary (vocab_size)
    hidden_size: int = 768  # width of every hidden state (hidden_size)
    num_layers: int = 12  # transformer blocks (num_hidden_layers)
    num_heads: int = 12  # attention heads; must divide hidden_size (num_attention_heads)
    intermediate_size: int = 3072  # feed-forward inner width (intermediate_size)
    max_position_embeddings: int = 512  # longest sequence, in tokens (max_position_embeddings)
    type_vocab_size: int = 2  # segment ids (type_vocab_size)
    dropout: float = 0.1  # dropout on hidden states and attention probabilities, 0..1
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon, Hugging Face BERT's value
    pad_token_id: int = 0  # id of [PAD]
    model_type: Literal["bert", "distilbert"] = "bert"  # Hugging Face family the weights came from (models/checkpoint_formats.py)

    def validate(self, prefix: str) -> None:
        for key in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                    "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, key)
            _require(value > 0, f"{prefix}.{key}", "an integer > 0", value)
        _require(self.hidden_size % self.num_heads == 0, f"{prefix}.num_heads",
                 f"a divisor of hidden_size={self.hidden_size}", self.num_heads)
        _require(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", "a number in [0, 1)", self.dropout)
        _require(self.layer_norm_eps > 0, f"{prefix}.layer_norm_eps", "a number > 0", self.layer_norm_eps)
        _require(0 <= self.pad_token_id < self.vocab_size, f"{prefix}.pad_token_id",
                 f"an id in [0, vocab_size={self.vocab_size})", self.pad_token_id)


ALPHA_KEYS = ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "alpha_hidden_mse", "alpha_sentence_mse",
              "alpha_sentence_cos", "alpha_layer_mse", "alpha_attention", "alpha_value_relation",
              "alpha_embedding_mse")
# The layer-wise terms (TinyBERT, MiniLM): they read every layer's hidden states, not only the last.
LAYER_ALPHA_KEYS = ("alpha_layer_mse", "alpha_attention", "alpha_value_relation", "alpha_embedding_mse")


@dataclasses.dataclass
class DistillConfig(Section):
    """The distillation objective (Sanh et al. 2019; defaults are the paper's).

    The loss is the sum of the terms weighted by the ``alpha_*`` fields (0: off); each field is commented
    below, and the Distiller's module docstring gives the formulas.

    Args:
      temperature: softmax temperature T of the soft targets, > 0.
      alpha_ce: weight of T^2 * KL(teacher_T || student_T), the soft targets (needs the teacher's MLM head).
      alpha_mlm: weight of the masked-LM cross-entropy on the true tokens.
      alpha_cos: weight of 1 - cos between the last hidden states.
      alpha_mse: weight of the MSE between the logits.
      alpha_hidden_mse: weight of the MSE between the last hidden states.
      ce_positions: where the soft targets are taken: "all" non-pad tokens or "masked" positions only.
      student_layers: teacher layers the student copies (None: every other one).
      student_init: "teacher" (copy its layers) or "random".
      alpha_sentence_mse: weight of the MSE between the pooled sentence embeddings.
      alpha_sentence_cos: weight of 1 - cos between the pooled sentence embeddings.
      pooling: "auto" (the teacher's sentence-transformers pooling, else mean), "mean", "cls" or "max".
      normalize_embeddings: L2-normalise the pooled embeddings (None: as the teacher).
      alpha_layer_mse: weight of the MSE between mapped layers' outputs (TinyBERT).
      alpha_attention: weight of the KL between attention distributions (MiniLM).
      alpha_value_relation: weight of the KL between value relations (MiniLM).
      alpha_embedding_mse: weight of the MSE between the embedding outputs (TinyBERT).
      layer_map: the teacher layer each student layer is compared to (None: uniform).
      relation_layers: "last" or "mapped": the layer pairs of the attention and value-relation terms.
      relation_heads: heads the values are split into for the value relations (None: the teacher's).

    Example:
    >>> import keras_distil as kd
    >>> kd.DistillConfig().uses_logits  # DistilBERT: soft targets, masked LM, cosine
    True
    >>> sentence = kd.DistillConfig(alpha_ce=0, alpha_mlm=0, alpha_cos=1, alpha_sentence_cos=1)
    >>> sentence.uses_logits  # no term reads MLM logits: a head-less teacher, clean text
    False
    >>> kd.DistillConfig.from_dict({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0})
    Traceback (most recent call last):
    ...
    keras_distil.config.ConfigError: distill.alpha_*: all loss weights are 0; set at least one of alpha_ce, ...
    """

    _name = "distill"
    temperature: float = 2.0  # softmax temperature T of the soft targets, > 0
    alpha_ce: float = 5.0  # weight of T^2 * KL(teacher_T || student_T), the soft-target loss
    alpha_mlm: float = 2.0  # weight of the masked-LM cross-entropy on the true tokens
    alpha_cos: float = 1.0  # weight of 1 - cos(h_student, h_teacher) on the last hidden states
    alpha_mse: float = 0.0  # weight of the MSE between student and teacher logits
    # Weight of the MSE between student and teacher last hidden states, averaged over hidden dims and
    # non-pad tokens. Needs equal widths; works with an encoder-only teacher, like alpha_cos.
    alpha_hidden_mse: float = 0.0
    # Where the soft-target loss is taken: "all" non-pad tokens (the reference implementation) or
    # "masked" positions only (projects the vocabulary at the masked positions alone: much cheaper).
    ce_positions: Literal["all", "masked"] = "all"
    # Teacher layers copied into the student, in order (0-based). null: every other layer (0, 2, 4, ...).
    # HF's DistilBERT used [0, 2, 4, 7, 9, 11] of 12.
    student_layers: list[int] | None = None
    # How the student starts: "teacher" copies student_layers (and embeddings, MLM head) from the teacher;
    # "random" is the same shape (teacher's width, len(student_layers) layers) with fresh weights seeded
    # by train.seed: the paper's "random init" ablation.
    student_init: Literal["teacher", "random"] = "teacher"
    # Weight of the MSE between the teacher's and the student's pooled sentence embeddings, averaged over
    # the embedding dims and the sequences (sentence-transformers' distillation loss).
    alpha_sentence_mse: float = 0.0
    # Weight of 1 - cos between the teacher's and the student's pooled sentence embeddings, averaged over
    # the sequences.
    alpha_sentence_cos: float = 0.0
    # How token states become a sentence embedding for the sentence terms: "auto" reads the teacher's
    # sentence-transformers files (modules.json, 1_Pooling/config.json), else "mean"; or "mean" over the
    # real tokens, "cls" (first token), "max" over the real tokens. The student carries it into its exports.
    pooling: Literal["auto", "mean", "cls", "max"] = "auto"
    # L2-normalise the pooled embeddings; null: as the teacher (its 2_Normalize module), else false.
    normalize_embeddings: bool | None = None
    # ---- layer-wise terms (TinyBERT, MiniLM); each works across widths and is off at 0 ----
    # Weight of the MSE between each student layer's output and its mapped teacher layer's (layer_map),
    # through a learned linear projection per pair when the widths differ (TinyBERT); mean over the pairs,
    # the teacher's hidden dims and the non-pad tokens.
    alpha_layer_mse: float = 0.0
    # Weight of KL(teacher || student) between self-attention distributions over the keys, per query token
    # (MiniLM): per head when both have the same head count, else between the head-averaged maps; mean over
    # heads, the relation_layers pairs and the non-pad query tokens. Padded keys are masked out.
    alpha_attention: float = 0.0
    # Weight of KL(teacher || student) between value relations softmax(V V^T / sqrt(d)) (MiniLM), with V
    # split into relation_heads heads; averaged like alpha_attention.
    alpha_value_relation: float = 0.0
    # Weight of the MSE between the embedding layers' outputs (TinyBERT), projected when widths differ.
    alpha_embedding_mse: float = 0.0
    # Teacher transformer layer (0-based) each student layer is compared to, one entry per student layer;
    # null: uniform, student layer i -> teacher layer (i + 1) * n_teacher // n_student - 1 (TinyBERT's
    # every k-th: 3 of 6 -> [1, 3, 5]).
    layer_map: list[int] | None = None
    # The layer pairs of alpha_attention and alpha_value_relation: "last" (the last student layer and the
    # last teacher layer, MiniLM) or "mapped" (every layer_map pair, TinyBERT).
    relation_layers: Literal["last", "mapped"] = "last"
    # Heads V is split into for alpha_value_relation; both widths must divide by it. null: the teacher's
    # num_heads.
    relation_heads: int | None = None

    def validate(self, prefix: str) -> None:
        _require(self.temperature > 0, f"{prefix}.temperature", "a number > 0", self.temperature)
        alphas = ALPHA_KEYS
        for key in alphas:
            value = getattr(self, key)
            _require(value >= 0, f"{prefix}.{key}", "a number >= 0", value)
        if all(getattr(self, key) == 0 for key in alphas):
            raise ConfigError(f"{prefix}.alpha_*: all loss weights are 0; set at least one of {', '.join(alphas)} > 0")
        if self.student_layers is not None:
            _require(len(self.student_layers) > 0, f"{prefix}.student_layers",
                     "null or a non-empty list of teacher layer indices", self.student_layers)
            _require(all(i >= 0 for i in self.student_layers), f"{prefix}.student_layers",
                     "indices >= 0", self.student_layers)
        if self.layer_map is not None:
            _require(len(self.layer_map) > 0 and all(i >= 0 for i in self.layer_map), f"{prefix}.layer_map",
                     "null or a non-empty list of teacher layer indices >= 0", self.layer_map)
        _require(self.relation_heads is None or self.relation_heads >= 1, f"{prefix}.relation_heads",
                 "null or an integer >= 1", self.relation_heads)

    @property
    def needs_teacher_logits(self) -> bool:
        """The soft-target or the logit-MSE term is on: the teacher must have an MLM head."""
        return self.alpha_ce > 0 or self.alpha_mse > 0

    @property
    def uses_logits(self) -> bool:
        """Some term reads MLM logits (soft targets, masked LM, logit MSE): DistilBERT's masked-text regime."""
        return self.needs_teacher_logits or self.alpha_mlm > 0

    @property
    def masked_position_terms(self) -> tuple[str, ...]:
        """The active ``distill.*`` keys whose terms are taken at masked positions, hence need masking."""
        keys = ("alpha_mlm",) if self.alpha_mlm > 0 else ()
        if self.needs_teacher_logits and self.ce_positions == "masked":
            keys += ("ce_positions",)
        return keys

    @property
    def uses_sentence_embeddings(self) -> bool:
        return self.alpha_sentence_mse > 0 or self.alpha_sentence_cos > 0

    @property
    def uses_layers(self) -> bool:
        """A layer-wise term is on: both models must return every layer's hidden states."""
        return any(getattr(self, key) > 0 for key in LAYER_ALPHA_KEYS)


@dataclasses.dataclass
class StudentConfig(Section):
    """The student's shape and its own knobs where they may differ from the teacher's. Each null means "as
    the teacher" (models/student.py ``student_model_config``)."""

    _name = "student"
    # Transformer blocks; null: len(distill.student_layers) when given, else half the teacher's (rounded up).
    num_layers: int | None = None
    # Width of every hidden state; null: the teacher's. A narrower student needs distill.student_init
    # "teacher" (a reduction of the teacher's weights) or "random".
    hidden_size: int | None = None
    # Attention heads; must divide hidden_size. null: the teacher's.
    num_heads: int | None = None
    # Feed-forward inner width; null: the teacher's ratio to the width (4x for BERT) times hidden_size.
    intermediate_size: int | None = None
    # Dropout on the student's hidden states and attention probabilities while it trains, 0..1; null: the
    # teacher's (its config.json). A short distillation converges faster without it (docs/decisions.md).
    dropout: float | None = None

    def validate(self, prefix: str) -> None:
        if self.dropout is not None:
            _require(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", "null or a number in [0, 1)", self.dropout)
        for key in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
            value = getattr(self, key)
            _require(value is None or value > 0, f"{prefix}.{key}", "null or an integer > 0", value)
        if self.hidden_size is not None and self.num_heads is not None:
            _require(self.hidden_size % self.num_heads == 0, f"{prefix}.num_heads",
                     f"a divisor of student.hidden_size={self.hidden_size}", self.num_heads)


@dataclasses.dataclass
class DataConfig(Section):
    """Text in, batches out: tokenised in the graph, bucketed by length, masked when the loss needs it (keras_distil/data/).

    Each field is commented below. :func:`keras_distil.build_dataset` takes any of them as a keyword.

    Args:
      vocab_file: WordPiece vocab.txt (None: the teacher folder's).
      allow_other_vocab: accept a ``vocab_file`` whose tokens differ from the teacher's.
      lowercase: lower-case before WordPiece (the teacher's settings win where it has them).
      strip_accents: strip accents (None: follow ``lowercase``).
      document_separator: "line" (one document per line) or "blank_line" (per paragraph).
      max_len: tokens per sequence, [CLS] and [SEP] included.
      min_len: shorter sequences are dropped.
      masking: "auto" (masked-LM when a term reads MLM logits), "mlm" or "none" (clean text).
      mlm_mask_prop: fraction of real tokens selected for prediction.
      word_mask: of the selected, the share replaced by [MASK].
      word_keep: of the selected, the share kept.
      word_rand: of the selected, the share replaced by a random token.
      mlm_smoothing: selection probability proportional to count ** -mlm_smoothing.
      max_predictions_per_seq: prediction slots per sequence.
      batch_size: sequences per global batch.
      bucket_boundaries: padded lengths of the length buckets (None: one bucket of ``max_len``).
      shuffle_buffer: sequences held for shuffling.
      invalid_utf8: "replace" (U+FFFD, counted) or "error".
      seed: shuffling and masking seed.

    Example:
    >>> import keras_distil as kd
    >>> config = kd.DataConfig(max_len=64, batch_size=8)
    >>> config.replace(masking="none").masking, config.max_len
    ('none', 64)
    >>> kd.DataConfig.from_dict({"max_len": 2})
    Traceback (most recent call last):
    ...
    keras_distil.config.ConfigError: data.max_len: got 2; accepted: an integer >= 3
    """

    _name = "data"
    vocab_file: str | None = None  # WordPiece vocab.txt; null: the teacher folder's
    # Accept a data.vocab_file whose tokens differ from the teacher's own (same ids, other tokens or order);
    # false: that is an error, since the student would ship a vocabulary the teacher's weights do not match.
    allow_other_vocab: bool = False
    lowercase: bool = True  # lower-case before WordPiece (the teacher's do_lower_case)
    strip_accents: bool | None = None  # null: follow lowercase, as Hugging Face's BertTokenizer
    document_separator: Literal["line", "blank_line"] = "line"  # one document per line, or per paragraph
    max_len: int = 128  # tokens per sequence including [CLS] and [SEP]
    min_len: int = 12  # sequences shorter than this many tokens are dropped (the reference drops <= 11)
    # Whether batches are masked for masked-LM: "mlm" (15 % of tokens selected, 80/10/10, mask_* fields),
    # "none" (clean token ids, no mask_* fields: what a sentence encoder sees in use), or "auto": "mlm"
    # when a term reads MLM logits (distill.alpha_ce, alpha_mlm, alpha_mse), else "none".
    masking: Literal["auto", "mlm", "none"] = "auto"
    mlm_mask_prop: float = 0.15  # fraction of real tokens selected for prediction
    word_mask: float = 0.8  # of the selected: replaced by [MASK]
    word_keep: float = 0.1  # of the selected: kept as they are
    word_rand: float = 0.1  # of the selected: replaced by a random token
    mlm_smoothing: float = 0.7  # selection probability proportional to count ** -mlm_smoothing
    max_predictions_per_seq: int = 20  # fixed number of prediction slots per sequence (padded, weighted 0)
    batch_size: int = 32  # sequences per global batch (split over replicas)
    # Padded lengths of the sequence-length buckets, increasing; a sequence goes to the first bucket at
    # least as long and is padded to it; max_len is always the last. null: one bucket of max_len.
    bucket_boundaries: list[int] | None = None
    shuffle_buffer: int = 10000  # sequences held for shuffling
    invalid_utf8: Literal["replace", "error"] = "replace"  # bytes that are not UTF-8: U+FFFD and counted, or an error
    seed: int = 42  # shuffling and masking seed

    def validate(self, prefix: str) -> None:
        _require(self.max_len >= 3, f"{prefix}.max_len", "an integer >= 3", self.max_len)
        _require(1 <= self.min_len <= self.max_len, f"{prefix}.min_len",
                 f"an integer in [1, max_len={self.max_len}]", self.min_len)
        _require(0 < self.mlm_mask_prop < 1, f"{prefix}.mlm_mask_prop", "a number in (0, 1)", self.mlm_mask_prop)
        for key in ("word_mask", "word_keep", "word_rand"):
            _require(0 <= getattr(self, key) <= 1, f"{prefix}.{key}", "a number in [0, 1]", getattr(self, key))
        total = self.word_mask + self.word_keep + self.word_rand
        _require(abs(total - 1.0) < 1e-6, f"{prefix}.word_mask/word_keep/word_rand",
                 "three numbers summing to 1", total)
        _require(self.mlm_smoothing >= 0, f"{prefix}.mlm_smoothing", "a number >= 0", self.mlm_smoothing)
        _require(self.max_predictions_per_seq >= 1, f"{prefix}.max_predictions_per_seq", "an integer >= 1",
                 self.max_predictions_per_seq)
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "an integer >= 1", self.batch_size)
        _require(self.shuffle_buffer >= 1, f"{prefix}.shuffle_buffer", "an integer >= 1", self.shuffle_buffer)
        if self.bucket_boundaries is not None:
            b = self.bucket_boundaries
            _require(len(b) > 0 and b[0] > 0 and all(x < y for x, y in zip(b, b[1:])) and b[-1] <= self.max_len,
                     f"{prefix}.bucket_boundaries", f"increasing lengths in (0, max_len={self.max_len}]", b)


@dataclasses.dataclass
class TrainConfig(Section):
    """Optimisation and runtime (docs/runtime.md). Defaults are DistilBERT's.

    Read by the command line's runtime (``keras_distil.training``); with ``Distiller.compile`` / ``fit``,
    give the optimizer and the steps to Keras instead. Each field is commented below.

    Args:
      learning_rate: peak learning rate after warm-up.
      adam_beta_1: AdamW's beta 1.
      adam_beta_2: AdamW's beta 2.
      adam_epsilon: AdamW's epsilon.
      weight_decay: AdamW decay (never on biases and LayerNorm).
      warmup_prop: fraction of the steps spent warming up linearly, then linear decay.
      max_grad_norm: global-norm clipping (0: none).
      gradient_accumulation_steps: micro-batches summed per optimizer step.
      epochs: passes over the training data.
      steps: optimizer steps in all (overrides ``epochs``).
      mixed_precision: the student's Keras dtype policy ("auto": mixed_bfloat16 where native, else float32).
      teacher_precision: the frozen teacher's precision ("auto": bfloat16 where native, else float32).
      jit_compile: XLA: "auto", "on" or "off".
      strategy: "auto", "default", "mirrored", "multiworker" or "tpu".
      checkpoint_every: optimizer steps between checkpoints.
      keep_checkpoints: checkpoints kept on disk.
      log_every: optimizer steps between TensorBoard writes.
      seed: weight init, dropout and data order.

    Example:
    >>> import keras_distil as kd
    >>> kd.TrainConfig(steps=1000).replace(learning_rate=1e-4).learning_rate
    0.0001
    >>> kd.TrainConfig.from_dict({"stepz": 3})
    Traceback (most recent call last):
    ...
    keras_distil.config.ConfigError: train: unknown key(s) stepz; accepted keys: adam_beta_1, ...
    """

    _name = "train"
    learning_rate: float = 5e-4  # peak learning rate after warm-up
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.98
    adam_epsilon: float = 1e-6
    weight_decay: float = 0.0  # AdamW decay; never applied to biases and LayerNorm
    warmup_prop: float = 0.05  # fraction of the optimizer steps spent warming up linearly, then linear decay
    max_grad_norm: float = 5.0  # global-norm clipping; 0 disables
    gradient_accumulation_steps: int = 1  # micro-batches summed per optimizer step
    epochs: int = 3  # passes over the training data
    steps: int | None = None  # optimizer steps in all; overrides epochs when set
    # The student's Keras policy; auto: mixed_bfloat16 where the device multiplies bfloat16 natively
    # (training/speed.py), else float32.
    mixed_precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    # The frozen teacher's precision; auto: bfloat16 where native, else float32.
    teacher_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    jit_compile: Literal["auto", "on", "off"] = "auto"  # XLA; auto: on where it works and pays
    strategy: Literal["auto", "default", "mirrored", "multiworker", "tpu"] = "auto"
    checkpoint_every: int = 500  # optimizer steps between checkpoints
    keep_checkpoints: int = 3  # checkpoints kept on disk
    log_every: int = 50  # optimizer steps between TensorBoard writes
    seed: int = 56  # weight init, dropout and data order (the reference's seed)

    def validate(self, prefix: str) -> None:
        _require(self.learning_rate > 0, f"{prefix}.learning_rate", "a number > 0", self.learning_rate)
        _require(0 <= self.adam_beta_1 < 1 and 0 <= self.adam_beta_2 < 1, f"{prefix}.adam_beta_1/adam_beta_2",
                 "numbers in [0, 1)", (self.adam_beta_1, self.adam_beta_2))
        _require(self.adam_epsilon > 0, f"{prefix}.adam_epsilon", "a number > 0", self.adam_epsilon)
        _require(self.weight_decay >= 0, f"{prefix}.weight_decay", "a number >= 0", self.weight_decay)
        _require(0 <= self.warmup_prop < 1, f"{prefix}.warmup_prop", "a number in [0, 1)", self.warmup_prop)
        _require(self.max_grad_norm >= 0, f"{prefix}.max_grad_norm", "a number >= 0 (0: no clipping)",
                 self.max_grad_norm)
        _require(self.gradient_accumulation_steps >= 1, f"{prefix}.gradient_accumulation_steps",
                 "an integer >= 1", self.gradient_accumulation_steps)
        _require(self.epochs >= 1, f"{prefix}.epochs", "an integer >= 1", self.epochs)
        _require(self.steps is None or self.steps >= 1, f"{prefix}.steps", "null or an integer >= 1", self.steps)
        for key in ("checkpoint_every", "keep_checkpoints", "log_every"):
            _require(getattr(self, key) >= 1, f"{prefix}.{key}", "an integer >= 1", getattr(self, key))


def resolve_masking(data: DataConfig, distill: DistillConfig | None) -> str:
    """``data.masking`` made concrete: "mlm" or "none" ("auto" follows ``distill``'s terms; no objective
    known: "mlm", DistilBERT's regime). Raises :class:`ConfigError` naming both keys when masking is off
    but a term needs masked positions."""
    if data.masking == "auto":
        return "mlm" if distill is None or distill.uses_logits else "none"
    if data.masking == "none" and distill is not None and distill.masked_position_terms:
        key = distill.masked_position_terms[0]
        value = getattr(distill, key)
        raise ConfigError(f"data.masking: 'none' gives batches without masked positions, but distill.{key}="
                          f"{value!r} needs them; set data.masking to 'mlm' (or 'auto'), or "
                          + ("distill.alpha_mlm to 0" if key == "alpha_mlm" else "distill.ce_positions to 'all'"))
    return data.masking


def load_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``; errors (:class:`ConfigError`) name the file."""
    return read_json(path, expect=dict, error=ConfigError)


def dump_json(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    atomic_write_json(path, data)


@dataclasses.dataclass
class RecipeConfig(Section):
    """A whole run: the paths and every section. ``keras-distil distill|pretrain --recipe FILE.json``.

    ``model`` is the shape trained from scratch by ``pretrain`` (distill takes the teacher's shape).
    """

    _name = "recipe"
    description: str | None = None  # one line shown by `keras-distil recipes`; not part of a run's identity
    teacher: str | None = None  # teacher checkpoint: Hugging Face folder, KerasHub preset or .keras (distill)
    train_data: list[str] | None = None  # corpus sources: text files / globs, prepared shard folders, tfds:NAME
    out: str | None = None  # run folder: config.json, checkpoints/, logs/, student/
    tpu: str | None = None  # for train.strategy tpu|auto: local, a TPU name, or grpc://HOST:PORT
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None):
        """Sections are named by their own names in errors (``train.steps``, not ``recipe.train.steps``)."""
        data = dict(data or {})
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, section in ((n, t) for n, t in typing.get_type_hints(cls).items() if n in sections):
            if isinstance(section, type) and issubclass(section, Section) and name in data:
                value = data.pop(name)
                if not isinstance(value, dict):
                    raise ConfigError(f"{name}: expected an object of {section.__name__} keys, got {value!r}")
                kwargs[name] = section.from_dict(value, name)
        flat = Section.from_dict.__func__(cls, data, prefix or "recipe")
        recipe = dataclasses.replace(flat, **kwargs)
        resolve_masking(recipe.data, recipe.distill)  # the cross-section check, before any work
        return recipe

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> ``(["train", "steps"], 100)``. The value is JSON when it parses as JSON
    (numbers, true/false, null, lists), else a plain string (paths)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.steps=1000")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def override_fields(obj, items: list[str]):
    """A copy of the dataclass ``obj`` with ``KNOB=VALUE`` items applied (flat knobs: its field names).

    Each value is parsed as :func:`parse_override` does and checked against the field's annotation
    (:func:`coerce_value`); unknown knobs and wrong types raise :class:`ConfigError` naming the item.

    Args:
      obj: a dataclass instance (e.g. the quickstart's settings).
      items: ``"name=value"`` strings, applied in order.

    Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Knobs:
    ...     steps: int = 10
    ...     rate: float = 0.1
    >>> override_fields(Knobs(), ["steps=20", "rate=1"])
    Knobs(steps=20, rate=1.0)
    """
    hints = typing.get_type_hints(type(obj))
    names = sorted(f.name for f in dataclasses.fields(obj))
    changes = {}
    for item in items:
        path, value = parse_override(item)
        name = ".".join(path)
        if name not in names:
            raise ConfigError(f"--set {item!r}: unknown knob {name}; accepted: {', '.join(names)}")
        try:
            changes[name] = coerce_value(value, hints[name], name)
        except ConfigError:
            raise ConfigError(f"--set {item!r}: {name} takes a {_type_name(hints[name])}, got {value!r}") from None
    return dataclasses.replace(obj, **changes)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A copy of the recipe dict ``data`` with ``--set section.key=value`` items applied."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


# The JSON recipes installed with the package (keras_distil/recipes/*.json), usable by name.
RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


def shipped_recipes() -> list[str]:
    """The names of the recipes installed with the package (``tiny``, ``distilbert-base-uncased``, ...)."""
    if not os.path.isdir(RECIPES_DIR):
        return []
    return sorted(name[:-len(".json")] for name in os.listdir(RECIPES_DIR) if name.endswith(".json"))


def recipe_path(recipe: str | os.PathLike) -> str:
    """The file of a recipe given as a path, or as the name of a shipped recipe (:func:`shipped_recipes`).

    A path that exists, or that names a folder, is returned as it is. Otherwise a bare name (``tiny`` or
    ``tiny.json``) is looked up among the shipped recipes; a name that is neither raises
    :class:`ConfigError` listing them.

    Args:
      recipe: a JSON file, or a shipped recipe's name.

    Example:
    >>> os.path.basename(recipe_path("tiny"))
    'tiny.json'
    """
    path = os.fspath(recipe)
    if os.path.exists(path) or os.path.dirname(path):
        return path
    shipped = os.path.join(RECIPES_DIR, path if path.endswith(".json") else f"{path}.json")
    if os.path.isfile(shipped):
        return shipped
    raise ConfigError(f"{path}: no such file, and no shipped recipe of that name; shipped recipes: "
                      f"{', '.join(shipped_recipes()) or 'none'}")


def load_recipe(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RecipeConfig:
    """The recipe at ``path`` (a JSON file, or a shipped recipe's name: :func:`recipe_path`; None: all
    defaults) with ``overrides`` applied, validated."""
    data = load_json(recipe_path(path)) if path is not None else {}
    return RecipeConfig.from_dict(apply_overrides(data, list(overrides or [])))
