"""Model checkpoint formats: teachers in, students out as Hugging Face folders, KerasHub presets and
``.keras`` files (the files underneath: :mod:`.tensor_store`; a training run's own resume checkpoints:
:mod:`keras_distil.training.resume`).

Public API:

* :func:`load_teacher` reads a local Hugging Face folder (``BertForMaskedLM``, ``BertForPreTraining``,
  ``BertModel``, ``DistilBertForMaskedLM``; ``model.safetensors`` or sharded with
  ``model.safetensors.index.json``), a KerasHub preset folder or a ``.keras`` file into a
  :class:`~keras_distil.models.bert.BertMLM` plus its tokenizer settings (:class:`LoadedCheckpoint`).
  Hidden states and MLM logits match transformers on the same folder to ~1e-5 (tests/fixtures).
* :func:`save_student` writes ``format="hf"`` (what ``AutoModelForMaskedLM.from_pretrained`` loads),
  ``format="keras_hub"`` (what ``keras_hub.models.BertMaskedLM.from_preset`` loads) or
  ``format="sentence_transformers"`` (what ``sentence_transformers.SentenceTransformer`` loads); all are
  written to a temporary folder, read back and compared before they are renamed into place.
* :func:`convert_checkpoint`: what ``keras-distil convert`` runs (:mod:`keras_distil.cli.convert`).

Design decisions:

* Nothing is unpickled, ever: safetensors and JSON only (``pytorch_model.bin`` is refused with the way
  to convert it), and ``.keras`` files are loaded with ``safe_mode=True``.
* DistilBERT maps onto BertMLM with a zero segment table (see hf_mapping); ``ModelConfig.model_type``
  remembers the family. The distilled student is written as BERT (BertForMaskedLM) unless
  ``model_type="distilbert"`` or ``"same"`` is asked for.
* KerasHub presets default to our registered HF-numerics subclasses (exact), with ``keras_hub_classes=
  "stock"`` for KerasHub-only readers (approximate GELU, head eps 1e-5): see keras_hub_preset.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from keras_distil.config import DistillConfig
from keras_distil.models.bert import BertMLM
from keras_distil.models.hf_folder import WRITE_TOLERANCE, read_hf_folder, write_hf_folder
from keras_distil.models.keras_hub_preset import (
    from_keras_hub_model,
    is_keras_hub_preset,
    read_keras_hub_preset,
    write_keras_hub_preset,
)
from keras_distil.models.parity import reference_inputs
from keras_distil.models.pooling import PoolingError, pool_hidden_states, read_sentence_pooling
from keras_distil.models.tensor_store import CheckpointError
from keras_distil.models.tokenizer_settings import TokenizerSettings, read_tokenizer_settings

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "TokenizerSettings",
    "convert_checkpoint",
    "detect_format",
    "load_teacher",
    "read_tokenizer_settings",
    "save_student",
]

FORMATS = ("hf", "keras_hub", "sentence_transformers")


@dataclasses.dataclass
class LoadedCheckpoint:
    """A model read from a checkpoint, with what is needed to tokenize text the way it was trained.

    ``model``: a BertMLM (no MLM head for encoder-only checkpoints); ``tokenizer``: vocabulary, lower-casing
    and accent stripping (None when the checkpoint carries no vocabulary, e.g. a ``.keras`` file of a
    BertMLM: the vocabulary is then the user's to give, never guessed from neighbouring files);
    ``model_type``: "bert" or "distilbert"; ``source``: the path; ``format``: "hf", "keras_hub" or "keras".

    Pass it whole where a tokenizer is wanted (:func:`keras_distil.build_dataset`, :func:`save_student`'s
    ``tokenizer``): its vocabulary and casing go with it. ``vocab_file``, ``lowercase`` and ``strip_accents``
    read the tokenizer's (None without one); ``has_mlm_head`` says whether the model has its MLM head.

    Args:
      model: the :class:`~keras_distil.models.bert.BertMLM`.
      tokenizer: its :class:`~keras_distil.models.tokenizer_settings.TokenizerSettings`, or None.
      model_type: "bert" or "distilbert" (the family the weights came from).
      source: where it was read from.
      format: "hf", "keras_hub" or "keras".

    Example:
    >>> import keras_distil as kd
    >>> model = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2,
    ...                                 intermediate_size=32))
    >>> checkpoint = kd.LoadedCheckpoint(model, None, "bert", "teacher.keras", "keras")
    >>> checkpoint.has_mlm_head, checkpoint.lowercase
    (True, None)
    """

    model: BertMLM
    tokenizer: TokenizerSettings | None
    model_type: str
    source: str
    format: str

    @property
    def vocab_file(self) -> str | None:
        return self.tokenizer.vocab_file if self.tokenizer else None

    @property
    def lowercase(self) -> bool | None:
        return self.tokenizer.lowercase if self.tokenizer else None

    @property
    def strip_accents(self) -> bool | None:
        return self.tokenizer.strip_accents if self.tokenizer else None

    @property
    def has_mlm_head(self) -> bool:
        return self.model.mlm_head is not None


RUN_COMMANDS = ("distill", "pretrain")  # the "command" key of a keras-distil run folder's config.json


def resolve_run_folder(path: str) -> str:
    """``path``, or the trained model inside it when it is a keras-distil run folder (``distill`` / ``pretrain``
    ``--out``): its ``student/keras_hub`` preset, else ``student/student.keras``.

    A run folder holding no saved model yet raises :class:`CheckpointError` saying what it holds.

    Args:
      path: a checkpoint (HF folder, KerasHub preset, ``.keras`` file) or a run folder.

    Example:
    >>> resolve_run_folder("teacher.keras")
    'teacher.keras'
    """
    path = os.fspath(path)
    config = os.path.join(path, "config.json")
    if not os.path.isdir(path) or not os.path.isfile(config):
        return path
    try:
        with open(config, encoding="utf-8") as f:
            command = json.load(f).get("command")
    except (OSError, ValueError, AttributeError):
        return path  # not a run's config.json: let the format readers say what is wrong
    if command not in RUN_COMMANDS:
        return path
    for candidate in (os.path.join(path, "student", "keras_hub"), os.path.join(path, "student", "student.keras")):
        if os.path.exists(candidate):
            return candidate
    checkpoints = os.path.join(path, "checkpoints")
    count = len([f for f in os.listdir(checkpoints) if f.endswith(".index")]) if os.path.isdir(checkpoints) else 0
    raise CheckpointError(f"{path}: a keras-distil {command} run folder with {count} checkpoint(s) and no saved model "
                          "yet (student/ is written when the run finishes); run the same command again to finish it")


def detect_format(path: str) -> str:
    """"keras" for a ``.keras`` file, "keras_hub" for a preset folder, "hf" for a transformers folder."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if path.endswith(".keras"):
            return "keras"
        raise CheckpointError(f"{path}: a file that is not a .keras archive; pass the checkpoint's folder instead")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such file or folder")
    return "keras_hub" if is_keras_hub_preset(path) else "hf"


def _needs_head(require_mlm_head: bool | None, distill: DistillConfig | None) -> bool:
    if distill is not None:
        return distill.alpha_ce > 0 or distill.alpha_mlm > 0 or distill.alpha_mse > 0
    return True if require_mlm_head is None else require_mlm_head


def _read_keras_file(path: str) -> tuple[BertMLM, TokenizerSettings | None, str]:
    try:
        obj = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise CheckpointError(f"{path}: cannot load this .keras file ({type(e).__name__}: {e})") from None
    if isinstance(obj, BertMLM):
        return obj, None, obj.model_config.model_type
    return from_keras_hub_model(obj, source=path)


def load_teacher(path: str, require_mlm_head: bool | None = None,
                 distill: DistillConfig | None = None) -> LoadedCheckpoint:
    """Read a teacher from ``path`` (format detected: see :func:`detect_format`; a keras-distil run folder
    means the model it trained: :func:`resolve_run_folder`).

    The MLM head is required unless ``require_mlm_head=False`` or a ``distill`` config whose soft-target,
    MLM and logit-MSE weights are all 0 says the teacher's logits are never used; a head-less checkpoint
    then raises :class:`CheckpointError` saying so.

    A folder with sentence-transformers files (``modules.json``, ``1_Pooling/``, ``2_Normalize``) gives a
    model whose ``pooling`` says how its sentence embedding is made (``.keras`` files carry it in their config).

    Args:
      path: a Hugging Face folder (``model.safetensors``; BERT or DistilBERT, with or without the MLM head),
        a KerasHub preset folder, a ``.keras`` file or a keras-distil run folder.
      require_mlm_head: refuse a checkpoint without the MLM head (None: yes, unless ``distill`` says no).
      distill: the :class:`~keras_distil.config.DistillConfig` the teacher is for: the head is required only
        when one of its terms reads the teacher's logits.

    Returns:
      A :class:`LoadedCheckpoint`: ``.model`` (a ``BertMLM``, frozen by the Distiller) and ``.tokenizer``
      (vocabulary and casing, for :func:`keras_distil.build_dataset` and :func:`save_student`).

    Example:
    >>> import os, tempfile
    >>> import keras_distil as kd
    >>> from keras_distil.models.tokenizer_settings import TokenizerSettings
    >>> vocab = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") + tuple(f"word{i}" for i in range(95))
    >>> model = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2,
    ...                                 intermediate_size=32, max_position_embeddings=64))
    >>> folder = os.path.join(tempfile.mkdtemp(), "teacher")
    >>> _ = kd.save_student(model, folder, tokenizer=TokenizerSettings(vocab, lowercase=True, strip_accents=True))
    >>> teacher = kd.load_teacher(folder)  # a Hugging Face folder: config.json, model.safetensors, vocab.txt
    >>> teacher.format, teacher.model.model_config.num_layers, teacher.lowercase, len(teacher.tokenizer.vocab)
    ('hf', 2, True, 100)
    """
    path = resolve_run_folder(path)
    need_head = _needs_head(require_mlm_head, distill)
    fmt = detect_format(path)
    if fmt == "hf":
        model, tokenizer, model_type = read_hf_folder(path, require_mlm_head=need_head)
    elif fmt == "keras_hub":
        model, tokenizer, model_type = read_keras_hub_preset(path, require_mlm_head=need_head)
    else:
        model, tokenizer, model_type = _read_keras_file(path)
        if need_head and model.mlm_head is None:
            raise CheckpointError(f"{path}: this model has no MLM head; set distill.alpha_ce, alpha_mlm and "
                                  "alpha_mse to 0 to use it for the hidden-state loss only")
    if fmt != "keras":
        try:
            model.pooling = read_sentence_pooling(path)
        except PoolingError as e:
            raise CheckpointError(str(e)) from None
    return LoadedCheckpoint(model, tokenizer, model_type, path, fmt)


def _tokenizer_of(tokenizer) -> TokenizerSettings | None:
    if tokenizer is None or isinstance(tokenizer, TokenizerSettings):
        return tokenizer
    if isinstance(tokenizer, LoadedCheckpoint):
        return tokenizer.tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        settings = read_tokenizer_settings(os.fspath(tokenizer))
        if settings is None:
            raise CheckpointError(f"{tokenizer}: no vocab.txt or tokenizer.json")
        return settings
    raise TypeError(f"tokenizer: expected TokenizerSettings, LoadedCheckpoint, a folder or None, got {tokenizer!r}")


NO_POOLING_FIX = ("set model.pooling = keras_distil.models.pooling.SentencePooling(mode, normalize) before "
                  "saving, or distil with a sentence-transformers teacher or a sentence term "
                  "(distill.alpha_sentence_cos / alpha_sentence_mse)")


def save_student(student: BertMLM, folder: str, format: str = "hf", *, tokenizer=None, model_type: str = "bert",
                 keras_hub_classes: str = "exact", overwrite: bool = False) -> dict[str, float]:
    """Write ``student`` to ``folder`` and prove it reloads; returns the measured max abs differences.

    Formats:

    * ``"hf"``: config.json, model.safetensors, vocab.txt and tokenizer_config.json for
      ``transformers.AutoModelForMaskedLM`` (``AutoModel`` for a head-less model); plus the
      sentence-transformers files when ``student.pooling`` is set.
    * ``"keras_hub"``: a KerasHub preset (see :mod:`keras_distil.models.keras_hub_preset`).
    * ``"sentence_transformers"``: a Hugging Face ``BertModel`` folder (head-less even when the student has
      an MLM head; BERT's pooler kept) with ``modules.json``, ``1_Pooling/config.json``, ``2_Normalize/``
      (when ``student.pooling.normalize``) and ``sentence_bert_config.json``, for
      ``sentence_transformers.SentenceTransformer(folder)``. Needs ``student.pooling`` and a tokenizer;
      besides the hidden states, the folder read back with :func:`load_teacher` must give the same
      sentence embeddings (``sentence_embedding`` in the result, max abs diff <= 1e-5).

    Args:
      student: the model to write.
      folder: the destination folder (written to a temporary sibling, renamed into place when verified).
      format: one of :data:`FORMATS`.
      tokenizer: TokenizerSettings, a LoadedCheckpoint, a folder holding vocab.txt, or None (no tokenizer
        files written; refused for ``"sentence_transformers"``).
      model_type: "bert" (default: the student is a BERT), "distilbert", or "same" (the family recorded in
        ``student.model_config.model_type``). Sentence-transformers folders are written as BERT only.
      keras_hub_classes: "exact" or "stock" (``"keras_hub"`` only).
      overwrite: replace an existing non-empty ``folder``.

    Returns:
      The max abs difference between the model and the written folder read back, per compared output
      (``hidden_0`` ... ``hidden_N``, ``logits``; ``sentence_embedding`` for sentence-transformers).

    Example:
    >>> import os, tempfile
    >>> import keras_distil as kd
    >>> from keras_distil.models.tokenizer_settings import TokenizerSettings
    >>> vocab = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") + tuple(f"word{i}" for i in range(95))
    >>> student = kd.build_mlm_model(dict(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2,
    ...                                   intermediate_size=32, max_position_embeddings=64))
    >>> folder = os.path.join(tempfile.mkdtemp(), "student")
    >>> diffs = kd.save_student(student, folder, "hf", tokenizer=TokenizerSettings(vocab, True, True))
    >>> sorted(os.listdir(folder)), max(diffs.values()) <= 1e-5
    (['config.json', 'model.safetensors', 'tokenizer_config.json', 'vocab.txt'], True)

    A sentence encoder (``tokenizer=teacher``: the teacher's :class:`LoadedCheckpoint`)::

        student.pooling = SentencePooling("mean", normalize=True)  # set already when the teacher has one
        save_student(student, "out/st", "sentence_transformers", tokenizer=teacher)
        SentenceTransformer("out/st").encode(["The cat sat."])
    """
    if format not in FORMATS:
        raise CheckpointError(f"format={format!r}: accepted {', '.join(FORMATS)}")
    if model_type == "same":
        model_type = student.model_config.model_type
    if model_type not in ("bert", "distilbert"):
        raise CheckpointError(f"model_type={model_type!r}: accepted 'bert', 'distilbert', 'same'")
    settings = _tokenizer_of(tokenizer)
    if format == "hf":
        return write_hf_folder(student, folder, settings, model_type, overwrite=overwrite)
    if format == "sentence_transformers":
        _check_sentence_encoder(student, folder, settings, model_type)
        return write_hf_folder(student, folder, settings, "bert", overwrite=overwrite, drop_head=True,
                               check=_sentence_embedding_check(student))
    return write_keras_hub_preset(student, folder, settings, model_type, keras_hub_classes, overwrite=overwrite)


def _check_sentence_encoder(student: BertMLM, folder: str, settings: TokenizerSettings | None,
                            model_type: str) -> None:
    """Refuse, before writing, a sentence-transformers folder that could not be loaded or would be wrong."""
    if student.pooling is None:
        raise CheckpointError(f"{folder}: the model has no sentence pooling (model.pooling is None), so there is "
                              f"no sentence embedding to write; {NO_POOLING_FIX}")
    if settings is None:
        raise CheckpointError(f"{folder}: a sentence-transformers folder needs the tokenizer; pass tokenizer= "
                              "(TokenizerSettings, the teacher's LoadedCheckpoint or a folder with vocab.txt)")
    if model_type != "bert":
        raise CheckpointError(f"{folder}: sentence-transformers folders are written as BERT (BertModel); "
                              f"model_type={model_type!r} is not supported here (use model_type='bert')")


def _sentence_embedding_check(student: BertMLM):
    """A ``write_hf_folder`` check: the staged folder, read with :func:`load_teacher`, gives the student's
    pooling and its sentence embeddings (max abs difference <= the write tolerance)."""
    def check(staged: str) -> dict[str, float]:
        reloaded = load_teacher(staged, require_mlm_head=False).model
        want, got = student.pooling, reloaded.pooling
        if got is None or (got.mode, got.normalize) != (want.mode, want.normalize):
            raise CheckpointError(f"{staged}: the sentence-transformers files read back as pooling {got}, "
                                  f"expected {want}")
        cfg = student.model_config
        inputs = reference_inputs(cfg.vocab_size, cfg.max_position_embeddings)
        feed = {k: inputs[k] for k in ("token_ids", "padding_mask")}
        ours = pool_hidden_states(student(feed, training=False, return_logits=False)["hidden"],
                                  feed["padding_mask"], want)
        theirs = pool_hidden_states(reloaded(feed, training=False, return_logits=False)["hidden"],
                                    feed["padding_mask"], got)
        diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
        if not diff <= WRITE_TOLERANCE:
            raise CheckpointError(f"{staged}: the written folder's sentence embeddings differ from the model's "
                                  f"(max abs difference {diff:.3g})")
        return {"sentence_embedding": diff}

    return check


def convert_checkpoint(src: str, dst: str, to: str, *, model_type: str = "same", keras_hub_classes: str = "exact",
                       overwrite: bool = False) -> dict[str, float]:
    """Convert a checkpoint between Hugging Face and KerasHub (or from a .keras file), keeping its family.

    The written checkpoint is read back and compared with the source model (see :func:`save_student`);
    returns those max abs differences.
    """
    loaded = load_teacher(src, require_mlm_head=False)
    return save_student(loaded.model, dst, to, tokenizer=loaded.tokenizer, model_type=model_type,
                        keras_hub_classes=keras_hub_classes, overwrite=overwrite)
