"""Read and write Hugging Face checkpoint folders (config.json + safetensors + tokenizer files).

Reading builds a :class:`BertMLM` whose hidden states and MLM logits match transformers' on the same
folder (to ~1e-6 in float32; see tests/models/test_checkpoints_read.py). Writing produces what
``BertForMaskedLM.save_pretrained`` (or ``DistilBertForMaskedLM``'s, or ``BertModel``'s for a head-less
model or with ``drop_head=True``) would: HF tensor names, Linear
weights [out, in], the decoder left to ``tie_word_embeddings`` (as save_pretrained does), then the
folder is read back and compared before it is renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

import numpy as np

from keras_distil.files import read_json
from keras_distil.models.bert import BertMLM
from keras_distil.models.hf_mapping import (
    ALIASES,
    DECODER_WEIGHT,
    HEAD_PROBE,
    IGNORED,
    canonical_name,
    hf_config_from_model_config,
    hf_name_for_writing,
    model_config_from_hf,
    tensor_specs,
)
from keras_distil.models.parity import compare_outputs, reference_inputs
from keras_distil.models.pooling import write_sentence_transformers_files
from keras_distil.models.tensor_store import (
    CheckpointError,
    TensorStore,
    atomic_folder,
    write_safetensors,
)
from keras_distil.models.tokenizer_settings import (
    TokenizerSettings,
    read_tokenizer_settings,
    write_tokenizer_files,
)

log = logging.getLogger(__name__)
CONFIG_FILE = "config.json"
# Largest difference accepted between a written folder, read back, and the model it came from.
WRITE_TOLERANCE = 1e-5


def read_hf_config(folder: str) -> dict:
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: missing (a Hugging Face checkpoint folder needs its config.json)")
    return read_json(path, expect=dict, error=CheckpointError)


class _Tensors:
    """The store's tensors under their canonical names (prefix and gamma/beta spellings removed)."""

    def __init__(self, store: TensorStore, model_type: str):
        self.store = store
        self.by_canonical: dict[str, str] = {}
        for name in store.keys():
            key = canonical_name(name, model_type)
            if key in self.by_canonical:
                raise CheckpointError(f"{store.file_of(name)}: tensors '{self.by_canonical[key]}' and '{name}' "
                                      "are the same parameter under two names")
            self.by_canonical[key] = name
        self.used: set[str] = set()

    def find(self, canonical: str) -> str | None:
        for key in (canonical, *ALIASES.get(canonical, ())):
            if key in self.by_canonical:
                return self.by_canonical[key]
        return None

    def get(self, name: str, expected_shape: tuple[int, ...], why: str) -> np.ndarray:
        shape = self.store.shape(name)
        if tuple(shape) != tuple(expected_shape):
            raise CheckpointError(f"{self.store.file_of(name)}: tensor '{name}' has shape {list(shape)}, expected "
                                  f"{list(expected_shape)} ({why})")
        self.used.add(name)
        return self.store.get(name)


def _check_vocab_sizes(tensors: _Tensors, cfg, config_path: str) -> None:
    name = tensors.find("embeddings.word_embeddings.weight")
    if name is None:
        return  # reported as a missing tensor below
    rows, width = tensors.store.shape(name)[:2] if len(tensors.store.shape(name)) == 2 else (None, None)
    if rows != cfg.vocab_size or width != cfg.hidden_size:
        raise CheckpointError(
            f"{tensors.store.file_of(name)}: tensor '{name}' has shape {list(tensors.store.shape(name))} but "
            f"{config_path} says vocab_size={cfg.vocab_size}, hidden_size={cfg.hidden_size}: the vocabulary "
            "size disagrees with the embedding matrix")


def _check_tied_decoder(tensors: _Tensors, model_type: str, embeddings: np.ndarray) -> None:
    name = tensors.find(DECODER_WEIGHT[model_type])
    if name is None:
        return
    decoder = tensors.get(name, embeddings.shape, "the decoder is tied to the word embeddings")
    if not np.array_equal(decoder, embeddings):
        raise CheckpointError(f"{tensors.store.file_of(name)}: tensor '{name}' differs from the word embeddings; "
                              "untied MLM decoders are not supported (BertMLM ties them, as BERT does)")


def read_hf_folder(folder: str, require_mlm_head: bool = False) -> tuple[BertMLM, TokenizerSettings | None, str]:
    """A :class:`BertMLM` (with its MLM head when the checkpoint has one), the tokenizer settings and the
    model_type. Head-less checkpoints (``BertModel``) raise unless ``require_mlm_head`` is False."""
    folder = os.fspath(folder)
    config_path = os.path.join(folder, CONFIG_FILE)
    cfg = model_config_from_hf(read_hf_config(folder), config_path)
    model_type = cfg.model_type
    tensors = _Tensors(TensorStore(folder), model_type)
    where = tensors.store.description
    has_head = tensors.find(canonical_name(HEAD_PROBE[model_type], model_type)) is not None
    if require_mlm_head and not has_head:
        raise CheckpointError(
            f"{where}: this checkpoint has no MLM head ({HEAD_PROBE[model_type]} is absent: a BertModel / encoder-"
            "only checkpoint). It can be a teacher only for the hidden-state loss: set distill.alpha_ce, "
            "distill.alpha_mlm and distill.alpha_mse to 0, or use a BertForMaskedLM / BertForPreTraining folder.")
    _check_vocab_sizes(tensors, cfg, config_path)
    model = BertMLM(cfg, with_mlm_head=has_head)
    variables = {v.path: v for v in model.weights}
    for spec in tensor_specs(model_type, cfg.num_layers):
        if spec.part == "head" and not has_head:
            continue
        variable = variables[spec.keras_path]
        name = tensors.find(spec.hf_name)
        if name is None:
            if spec.part == "pooler":  # BertForMaskedLM has no pooler; nothing trains or reads it
                variable.assign(np.zeros(variable.shape, np.float32))
                continue
            raise CheckpointError(f"{where}: tensor '{hf_name_for_writing(spec.hf_name, model_type)}' is missing")
        value = tensors.get(name, spec.hf_shape(tuple(variable.shape)), f"from {config_path}")
        variable.assign(spec.to_keras(value, tuple(variable.shape)))
    if model_type == "distilbert":  # no token-type term in DistilBERT's embeddings
        segment = variables["segment_embedding/embeddings"]
        segment.assign(np.zeros(segment.shape, np.float32))
    if has_head:
        _check_tied_decoder(tensors, model_type, np.asarray(model.backbone.token_embedding.embeddings))
    unused = sorted(n for n in tensors.store.keys()
                    if n not in tensors.used and canonical_name(n, model_type) not in IGNORED)
    if unused:
        log.warning("%s: %d tensor(s) not used by BertMLM: %s", where, len(unused), ", ".join(unused[:8]))
    tokenizer = read_tokenizer_settings(folder)
    if tokenizer is not None and len(tokenizer.vocab) > cfg.vocab_size:
        raise CheckpointError(f"{tokenizer.vocab_file or folder}: {len(tokenizer.vocab)} tokens but {config_path} "
                              f"has vocab_size={cfg.vocab_size}: ids past the embedding matrix")
    return model, tokenizer, model_type


def hf_tensors(model: BertMLM, model_type: str, drop_head: bool = False) -> dict[str, np.ndarray]:
    """The model's weights under Hugging Face names and layouts (decoder weight left to tying).

    Args:
      model: the model to write.
      model_type: "bert" or "distilbert" (the tensor names).
      drop_head: leave out the MLM head even when the model has one and keep BERT's pooler, as
        ``BertModel`` stores them (what ``AutoModel`` and sentence-transformers load). Without it, a model
        with a head is laid out as ``BertForMaskedLM`` (head, no pooler, names under ``bert.``).
        A head-less BERT is written with ``BertModel.save_pretrained``'s names: no ``bert.`` prefix.

    Example:
    >>> tensors = hf_tensors(student, "bert", drop_head=True)  # doctest: +SKIP
    >>> "pooler.dense.weight" in tensors, "cls.predictions.bias" in tensors  # doctest: +SKIP
    (True, False)
    """
    cfg = model.model_config
    has_head = model.mlm_head is not None and not drop_head
    values = {v.path: np.asarray(v) for v in model.weights}
    if model_type == "distilbert":
        segments = values["segment_embedding/embeddings"]
        if not np.allclose(segments, segments[:1]):
            log.warning("DistilBERT has no token-type embeddings: segment row 0 is folded into the position "
                        "embeddings and the other rows are dropped (outputs change for segment ids != 0)")
        values["position_embedding/embeddings"] = values["position_embedding/embeddings"] + segments[0]
    out = {}
    for spec in tensor_specs(model_type, cfg.num_layers):
        if (spec.part == "head" and not has_head) or (spec.part == "pooler" and has_head):
            continue  # BertForMaskedLM has no pooler; BertModel has no head
        # BertModel.save_pretrained writes its own names, unprefixed; the reader accepts both spellings.
        bert_model = model_type == "bert" and not has_head
        name = spec.hf_name if bert_model else hf_name_for_writing(spec.hf_name, model_type)
        out[name] = spec.to_hf(values[spec.keras_path])
    return out


def write_hf_folder(model: BertMLM, folder: str, tokenizer: TokenizerSettings | None, model_type: str = "bert",
                    overwrite: bool = False, *, drop_head: bool = False,
                    check: Callable[[str], dict[str, float]] | None = None) -> dict[str, float]:
    """Write ``model`` as a transformers folder, read it back, compare, then rename it into place.

    Returns the measured max abs differences (hidden states and logits) of the folder read back.

    Args:
      model: the model to write; its ``pooling``, when set, is written as sentence-transformers files.
      folder: the destination (written to a temporary sibling first).
      tokenizer: vocabulary and case settings to write (vocab.txt, tokenizer_config.json), or None.
      model_type: "bert" or "distilbert".
      overwrite: replace an existing non-empty ``folder``.
      drop_head: write a head-less ``BertModel`` (architectures ``BertModel``, no MLM head tensors,
        the pooler kept) even when the model has an MLM head (see :func:`hf_tensors`).
      check: called with the staged folder after the built-in comparison and before the rename; it
        returns more figures (merged into the result) or raises :class:`CheckpointError` to refuse it.

    Example:
    >>> write_hf_folder(student, "out/encoder", settings, drop_head=True)  # doctest: +SKIP
    {'hidden_0': 0.0, 'hidden_1': 0.0, 'hidden_2': 0.0}
    """
    cfg = model.model_config
    if model_type not in ("bert", "distilbert"):
        raise CheckpointError(f"model_type={model_type!r}: accepted 'bert' or 'distilbert'")
    config = hf_config_from_model_config(cfg, model_type, model.mlm_head is not None and not drop_head)
    if tokenizer is not None and len(tokenizer.vocab) > cfg.vocab_size:
        raise CheckpointError(f"the vocabulary has {len(tokenizer.vocab)} tokens but the model's embedding matrix "
                              f"has {cfg.vocab_size} rows")
    with atomic_folder(folder, overwrite) as tmp:
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        write_safetensors(hf_tensors(model, model_type, drop_head), os.path.join(tmp, "model.safetensors"))
        if tokenizer is not None:
            write_tokenizer_files(tokenizer, tmp, cfg.max_position_embeddings)
        if model.pooling is not None:
            write_sentence_transformers_files(tmp, model.pooling, cfg.hidden_size, cfg.max_position_embeddings)
        reread, _, _ = read_hf_folder(tmp)
        segments = cfg.type_vocab_size if model_type == "bert" else 1
        diffs = compare_outputs(model, reread, reference_inputs(cfg.vocab_size, cfg.max_position_embeddings, segments))
        worst = max(diffs.values())
        if not worst <= WRITE_TOLERANCE:
            raise CheckpointError(f"{folder}: the written checkpoint does not reproduce the model "
                                  f"(max abs difference {worst:.3g}: {diffs})")
        if check is not None:
            diffs.update(check(tmp))
    return diffs
