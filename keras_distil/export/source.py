"""What ``keras-distil export SRC`` exports: find the student and its tokenizer in SRC.

SRC is one of:

* a run folder (``<run>/config.json``, ``<run>/student/``): the student is ``student/*.keras`` (exact, our
  own classes) or else the KerasHub preset / Hugging Face folder in ``student/``; the tokenizer comes from
  that preset / folder, else from the run's ``config.json`` (``data.vocab_file``, ``lowercase``,
  ``strip_accents``);
* a student file (``.keras``), a KerasHub preset folder or a Hugging Face folder (read with
  :func:`keras_distil.models.checkpoint_formats.load_teacher`).

An explicit ``vocab`` (``--vocab``) always wins. A source without a vocabulary can still be exported
with ids only (``text=False``).
"""

from __future__ import annotations

import dataclasses
import glob
import os

from keras_distil.config import ConfigError, DataConfig
from keras_distil.export.errors import ExportError
from keras_distil.files import read_json, try_read_json
from keras_distil.models.checkpoint_formats import load_teacher
from keras_distil.models.tensor_store import CheckpointError
from keras_distil.models.tokenizer_settings import TokenizerSettings, read_tokenizer_settings

RUN_CONFIG = "config.json"
STUDENT_DIR = "student"
# Top-level keys of a run's config.json that may name its training corpus (first found wins).
CORPUS_KEYS = ("corpus", "sources", "train_sources", "data_sources", "train_data")


@dataclasses.dataclass
class Source:
    model: object  # BertMLM
    tokenizer: TokenizerSettings | None
    path: str  # the file or folder the student was read from
    name: str  # default export name
    data_config: DataConfig | None = None  # the run's, when SRC is a run folder
    corpus: list[str] | None = None  # the run's training corpus specs, when recorded


def _read_run_config(run_dir: str) -> tuple[DataConfig | None, list[str] | None]:
    """The run's data section and training corpus (None where the run's config.json lacks them)."""
    path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(path):
        return None, None
    config = read_json(path, "a run's config", expect=dict, error=ExportError)
    section = config.get("data") if isinstance(config.get("data"), dict) else None
    try:
        data = DataConfig.from_dict(section) if section is not None else None
    except ConfigError as e:
        raise ExportError(f"{path}: {e}") from None
    corpus = None
    for where in (config, section or {}):
        value = next((where[k] for k in CORPUS_KEYS if where.get(k)), None)
        if value and corpus is None:
            corpus = [_relative_to(run_dir, v) for v in ([value] if isinstance(value, str) else value)]
    return data, corpus


def _relative_to(run_dir: str, spec) -> str:
    """A corpus path of the run's config, taken relative to the run folder when it is found there."""
    spec = str(spec)
    joined = os.path.join(run_dir, spec)
    if spec.startswith("tfds:") or os.path.isabs(spec) or not (os.path.exists(joined) or glob.glob(joined)):
        return spec
    return joined


def _student_candidate(student_dir: str) -> str | None:
    """``student/*.keras`` first (exact classes), else the folder itself or a sub-folder holding a checkpoint."""
    files = sorted(glob.glob(os.path.join(student_dir, "*.keras")))
    if files:
        return files[0]
    for folder in [student_dir] + sorted(p for p in glob.glob(os.path.join(student_dir, "*")) if os.path.isdir(p)):
        if os.path.isfile(os.path.join(folder, "config.json")):
            return folder
    return None


def _tokenizer_near(student_dir: str) -> TokenizerSettings | None:
    """Tokenizer files of the run's student folder: a Hugging Face vocab.txt / tokenizer.json, or a preset's."""
    for folder in [student_dir] + sorted(p for p in glob.glob(os.path.join(student_dir, "*")) if os.path.isdir(p)):
        try:
            settings = read_tokenizer_settings(folder)
        except CheckpointError:
            settings = None
        if settings is not None:
            return settings
        preset_vocab = os.path.join(folder, "assets", "tokenizer", "vocabulary.txt")
        preset_config = os.path.join(folder, "tokenizer.json")
        if os.path.isfile(preset_vocab) and os.path.isfile(preset_config):
            cfg = read_json(preset_config, "a KerasHub tokenizer", expect=dict, error=ExportError).get("config", {})
            with open(preset_vocab, encoding="utf-8") as f:
                vocab = tuple(line.rstrip("\n") for line in f)
            lower = bool(cfg.get("lowercase", True))
            strip = cfg.get("strip_accents")
            return TokenizerSettings(vocab, lower, lower if strip is None else bool(strip), preset_vocab)
    return None


def _tokenizer_from_data_config(data: DataConfig | None, run_dir: str) -> TokenizerSettings | None:
    if data is None or not data.vocab_file:
        return None
    vocab_file = data.vocab_file if os.path.isabs(data.vocab_file) else os.path.join(run_dir, data.vocab_file)
    if not os.path.isfile(vocab_file):
        vocab_file = data.vocab_file  # relative to the working directory the run was started from
    return vocab_settings(vocab_file, data.lowercase, data.strip_accents)


def vocab_settings(vocab_file: str, lowercase: bool = True, strip_accents: bool | None = None) -> TokenizerSettings:
    """TokenizerSettings of a vocab.txt (``strip_accents=None`` follows ``lowercase``, as Hugging Face)."""
    try:
        with open(vocab_file, encoding="utf-8") as f:
            vocab = tuple(line.rstrip("\r\n") for line in f)
    except OSError as e:
        raise ExportError(f"{vocab_file}: cannot read the vocabulary ({e.strerror or e})") from None
    while vocab and vocab[-1] == "":
        vocab = vocab[:-1]
    if not vocab:
        raise ExportError(f"{vocab_file}: empty vocabulary")
    strip = lowercase if strip_accents is None else strip_accents
    return TokenizerSettings(vocab, bool(lowercase), bool(strip), vocab_file)


def _load(path: str):
    try:
        return load_teacher(path, require_mlm_head=False)
    except CheckpointError as e:
        raise ExportError(f"{path}: cannot read the student: {e}") from None


def resolve_source(src: str, vocab: TokenizerSettings | None = None) -> Source:
    """The student in ``src`` and its tokenizer (``vocab`` overrides whatever ``src`` carries)."""
    src = os.path.abspath(os.fspath(src))
    if not os.path.exists(src):
        raise ExportError(f"{src}: no such file or folder")
    student_dir = os.path.join(src, STUDENT_DIR)
    if os.path.isdir(src) and (os.path.isdir(student_dir) or not _is_checkpoint_folder(src)):
        data, corpus = _read_run_config(src)
        candidate = _student_candidate(student_dir) if os.path.isdir(student_dir) else None
        if candidate is None:
            raise ExportError(f"{src}: no student in this run folder (looked for {student_dir}/*.keras and a "
                              f"KerasHub preset or Hugging Face folder in {student_dir}/); has the run finished?")
        loaded = _load(candidate)
        tokenizer = vocab or loaded.tokenizer or _tokenizer_near(student_dir) or _tokenizer_from_data_config(data, src)
        return Source(loaded.model, tokenizer, candidate, os.path.basename(src.rstrip(os.sep)), data, corpus)
    if os.path.isfile(src) and not src.endswith(".keras"):
        raise ExportError(f"{src}: not a student: expected a run folder, a .keras file, a KerasHub preset or a "
                          "Hugging Face folder")
    loaded = _load(src)
    name = os.path.splitext(os.path.basename(src.rstrip(os.sep)))[0]
    return Source(loaded.model, vocab or loaded.tokenizer, src, name)


def _is_checkpoint_folder(folder: str) -> bool:
    """A KerasHub preset or a Hugging Face folder (both have config.json, as a run folder does)."""
    config = try_read_json(os.path.join(folder, "config.json"))
    return config is not None and ("registered_name" in config or "model_type" in config
                                   or "architectures" in config)
