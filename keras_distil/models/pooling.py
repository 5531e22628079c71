"""Sentence embeddings: how token states become one vector per text, and sentence-transformers' files for it.

A sentence-transformers model is a transformer followed by modules listed in ``modules.json``: a
``Pooling`` module (``1_Pooling/config.json``: mean, CLS or max over the tokens) and, optionally, a
``Normalize`` module (L2 normalisation). :class:`SentencePooling` is that pair. It is read from a
teacher's folder, carried by the student (``BertMLM.pooling``), used by the sentence-level loss terms,
and written back with the student so that ``sentence_transformers.SentenceTransformer(folder)`` and the
SavedModel's ``embed`` signature compute the same embedding.

The formulas are sentence-transformers' own (``models.Pooling``, ``models.Normalize``):

* ``mean``: ``sum_i m_i h_i / max(sum_i m_i, 1e-9)`` over the real tokens (``m`` the padding mask);
* ``cls``: the first token's state;
* ``max``: the element-wise max over the real tokens (padding set to -1e9 first);
* ``normalize``: ``e / max(||e||_2, 1e-12)``.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from keras_distil.errors import KerasDistilError
from keras_distil.files import read_json

POOLING_MODES = ("mean", "cls", "max")
MODULES_FILE = "modules.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
ST_TRANSFORMER = "sentence_transformers.models.Transformer"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_NORMALIZE = "sentence_transformers.models.Normalize"
# 1_Pooling/config.json keys -> our mode; the other modes sentence-transformers knows are refused by name.
_ST_MODE_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max"}
_ST_UNSUPPORTED = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                   "pooling_mode_lasttoken")


class PoolingError(KerasDistilError, ValueError):
    """A sentence-transformers folder whose pooling cannot be read or computed here; names the file."""


@dataclasses.dataclass(frozen=True)
class SentencePooling:
    """How a model's last hidden states become a sentence embedding.

    Args:
      mode: "mean" (over the real tokens), "cls" (the first token) or "max" (over the real tokens).
      normalize: L2-normalise the pooled vector (sentence-transformers' ``Normalize`` module).
      max_seq_length: the longest input, in tokens, that sentence-transformers feeds the model
        (``sentence_bert_config.json``); None: the model's position count.

    Example:
    >>> import numpy as np
    >>> pooling = SentencePooling("mean", normalize=True)
    >>> hidden = np.ones((1, 3, 4), "float32"); mask = np.array([[1, 1, 0]])
    >>> [round(float(x), 3) for x in pool_hidden_states(hidden, mask, pooling)[0]]
    [0.5, 0.5, 0.5, 0.5]
    """

    mode: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None

    def __post_init__(self):
        if self.mode not in POOLING_MODES:
            raise PoolingError(f"pooling mode {self.mode!r}: accepted {', '.join(POOLING_MODES)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> SentencePooling | None:
        if data is None:
            return None
        length = data.get("max_seq_length")
        return cls(str(data["mode"]), bool(data["normalize"]), None if length is None else int(length))


def pool_hidden_states(hidden, padding_mask, pooling: SentencePooling):
    """Sentence embeddings ``[B, H]`` (float32) of the hidden states ``[B, L, H]`` under ``pooling``.

    A row without real tokens gives zeros for ``mean`` and ``max`` (no NaN)."""
    hidden = tf.cast(hidden, tf.float32)
    # expand_dims, not [..., None]: a StridedSlice with new_axis_mask has no TFLite builtin kernel, and the
    # exported embed signatures (SavedModel and TFLite) run this very function.
    mask = tf.expand_dims(tf.cast(padding_mask, tf.float32), -1)
    if pooling.mode == "cls":
        pooled = hidden[:, 0]
    elif pooling.mode == "max":
        has_tokens = tf.reduce_max(mask, axis=1) > 0
        pooled = tf.where(has_tokens, tf.reduce_max(hidden * mask + (1.0 - mask) * -1e9, axis=1), 0.0)
    else:
        pooled = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
    if pooling.normalize:
        pooled = pooled / tf.maximum(tf.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled


# ---- sentence-transformers files -----------------------------------------------------------------------

def read_sentence_pooling(folder: str) -> SentencePooling | None:
    """The pooling of a sentence-transformers folder (``modules.json``), or None when there is none.

    Raises :class:`PoolingError` naming the file for a pooling this toolkit does not compute (several
    modes at once, mean-sqrt-len, weighted mean, last token) or a module list it does not understand."""
    modules_path = os.path.join(folder, MODULES_FILE)
    if not os.path.isfile(modules_path):
        return None
    modules = read_json(modules_path, error=PoolingError)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise PoolingError(f"{modules_path}: expected a list of modules with a 'type' each")
    types = [m["type"] for m in modules]
    pooling_modules = [m for m in modules if m["type"].endswith("models.Pooling")]
    if not pooling_modules:
        raise PoolingError(f"{modules_path}: no Pooling module ({', '.join(types)}); only transformer + Pooling "
                           "(+ Normalize) models are supported")
    others = [t for t in types if not t.endswith(("models.Transformer", "models.Pooling", "models.Normalize"))]
    if others:
        raise PoolingError(f"{modules_path}: modules {', '.join(others)} are not supported (only transformer, "
                           "Pooling and Normalize)")
    config_path = os.path.join(folder, pooling_modules[0].get("path") or POOLING_DIR, "config.json")
    config = read_json(config_path, expect=dict, error=PoolingError)
    used = [key for key in _ST_UNSUPPORTED if config.get(key)]
    modes = [mode for key, mode in _ST_MODE_KEYS.items() if config.get(key)]
    if isinstance(config.get("pooling_mode"), str) and not modes:  # newer files name the mode directly
        modes = [{"mean": "mean", "cls": "cls", "max": "max"}.get(config["pooling_mode"], "")]
        used += [config["pooling_mode"]] if not modes[0] else []
    if used or len(modes) != 1 or not modes[0]:
        raise PoolingError(f"{config_path}: pooling {', '.join(used) or modes or 'none'} is not supported; "
                           "exactly one of mean, CLS or max tokens is")
    normalize = any(t.endswith("models.Normalize") for t in types)
    bert_config_path = os.path.join(folder, "sentence_bert_config.json")
    length = None
    if os.path.isfile(bert_config_path):
        length = read_json(bert_config_path, expect=dict, error=PoolingError).get("max_seq_length")
    return SentencePooling(modes[0], normalize, int(length) if isinstance(length, int) else None)


def write_sentence_transformers_files(folder: str, pooling: SentencePooling, hidden_size: int,
                                      max_positions: int) -> None:
    """Write the files that make a Hugging Face BERT folder a sentence-transformers model.

    ``modules.json``, ``1_Pooling/config.json``, ``2_Normalize/`` (when normalising),
    ``sentence_bert_config.json`` (``do_lower_case`` false: the tokenizer files carry the casing) and
    ``config_sentence_transformers.json``, as sentence-transformers writes them. ``max_seq_length`` is
    the pooling's, else ``max_positions``."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
               {"idx": 1, "name": "1", "path": POOLING_DIR, "type": ST_POOLING}]
    if pooling.normalize:
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR, "type": ST_NORMALIZE})
    pooling_config = {"word_embedding_dimension": hidden_size,
                      **{key: mode == pooling.mode for key, mode in _ST_MODE_KEYS.items()},
                      "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                      "pooling_mode_lasttoken": False, "include_prompt": True}
    files = {MODULES_FILE: modules,
             os.path.join(POOLING_DIR, "config.json"): pooling_config,
             "sentence_bert_config.json": {"max_seq_length": pooling.max_seq_length or max_positions,
                                           "do_lower_case": False},
             "config_sentence_transformers.json": {"model_type": "SentenceTransformer", "prompts": {},
                                                   "default_prompt_name": None, "similarity_fn_name": "cosine"}}
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
            f.write("\n")
    if pooling.normalize:
        os.makedirs(os.path.join(folder, NORMALIZE_DIR), exist_ok=True)


def resolve_pooling(distill_config, teacher_pooling: SentencePooling | None) -> SentencePooling:
    """The pooling the sentence terms use and the student carries: ``distill.pooling`` and
    ``distill.normalize_embeddings`` where set, else the teacher's (its sentence-transformers files), else
    mean pooling without normalisation."""
    base = teacher_pooling or SentencePooling()
    mode = base.mode if distill_config.pooling == "auto" else distill_config.pooling
    normalize = base.normalize if distill_config.normalize_embeddings is None else distill_config.normalize_embeddings
    return SentencePooling(mode, bool(normalize), base.max_seq_length)
