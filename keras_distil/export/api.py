"""``export``: resolve the source, plan, write into a staging folder, verify, rename into place.

Layout under ``out`` (TF Serving scans ``<out>/<name>/`` for numeric version folders and ignores the
others, so every format of one model can live under one name):

    <out>/<name>/<version>/                 SavedModel (serving_default + serve_text [+ embed])
    <out>/<name>/tflite/<version>/          model[_text|_embed][_fp16|_dynamic|_int8].tflite
    <out>/<name>/hf/<version>/              Hugging Face folder (transformers AutoModelForMaskedLM)
    <out>/<name>/keras_hub/<version>/       KerasHub preset
    <out>/<name>/sentence_transformers/<version>/   sentence-transformers folder (BertModel + pooling)

``embed`` (text in, sentence embedding out) is written for a model with a sentence pooling
(``model.pooling``, from a sentence-transformers teacher or a sentence distillation term).

Each version folder also holds ``export_report.json``: the verification figures.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from keras_distil.export import verify
from keras_distil.export.calibration import corpus_sequences, mask_like_training
from keras_distil.export.errors import ExportError, check_destination, staged_folder
from keras_distil.export.source import Source, resolve_source, vocab_settings
from keras_distil.export.tflite import QUANTIZATIONS
from keras_distil.export.writers import WRITERS, ExportPlan, keras_outputs

logger = logging.getLogger("keras_distil.export")

FORMATS = tuple(WRITERS)
TEXT_FORMATS = ("saved_model", "tflite")  # the formats with a raw-text input
SENTENCE_FORMAT = "sentence_transformers"  # needs the model's pooling (model.pooling) and a tokenizer
REPORT_FILE = "export_report.json"
VERIFY_BATCH = 32
VERIFY_SEQ_LEN = 64


@dataclasses.dataclass
class ExportResult:
    path: str  # the version folder
    format: str
    files: dict[str, int]  # relative path -> bytes
    checks: dict[str, dict]  # artifact -> verification figures

    def summary(self) -> str:
        lines = [f"wrote {self.path} ({self.format}); every artifact reloaded and compared with the Keras model:"]
        for artifact, figures in self.checks.items():
            shown = {k: _fmt(k, v) for k, v in figures.items()
                     if k in ("quantize", "max_rel_diff", "hidden_max_abs_diff", "logits_max_abs_diff",
                              "embedding_max_abs_diff", "hidden_cosine_mean", "embedding_cosine_mean",
                              "top1_agreement", "top1_miss_margins", "text_rows_with_training_ids")}
            lines.append(f"  {artifact}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        size = sum(self.files.values())
        lines.append(f"  {len(self.files)} files, {size / 2**20:.2f} MiB")
        return "\n".join(lines)


def _fmt(key: str, value) -> str:
    if key == "top1_agreement":
        return f"{value:.1%}"
    if key.startswith(("hidden_cosine", "embedding_cosine")):
        return f"{value:.5f}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def destination(out: str, name: str, fmt: str, version: int | str | None) -> str:
    base = os.path.join(out, name) if fmt == "saved_model" else os.path.join(out, name, fmt)
    if version is None:
        existing = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
        version = max(existing, default=0) + 1
    version = str(version)
    if not version.isdigit():
        raise ExportError(f"--version {version!r}: TF Serving versions are non-negative integers")
    return os.path.join(base, version)


def _check_options(fmt: str, quantize: tuple[str, ...]) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: accepted {', '.join(FORMATS)}")
    unknown = [q for q in quantize if q not in QUANTIZATIONS]
    if unknown:
        raise ExportError(f"--quantize {', '.join(unknown)}: accepted {', '.join(QUANTIZATIONS)}")
    if fmt != "tflite" and tuple(quantize) != ("none",):
        raise ExportError(f"--quantize {' '.join(quantize)}: quantisation applies to --format tflite only "
                          f"({fmt} keeps float32 weights)")


def _calibration(source: Source, sources: list[str] | None, max_len: int, count: int, needed: bool):
    """Corpus sequences (verification batch + int8 calibration), or None when no corpus is known."""
    sources = sources or source.corpus
    if not sources or source.tokenizer is None:
        if needed:
            raise ExportError("--quantize int8 needs sequences of the training corpus for calibration: pass "
                              "--calibration with its text files or prepared shard folder"
                              + ("" if source.tokenizer else ", and --vocab"))
        return None
    try:
        return corpus_sequences(sources, source.tokenizer, source.data_config, max_len, VERIFY_BATCH + count)
    except ExportError as e:
        if needed:
            raise
        logger.warning("verifying on random ids: the run's corpus cannot be read (%s)", e)
        return None


def _check_sentence_encoder(source: Source) -> None:
    """A sentence-transformers export needs the model's pooling and its vocabulary: refuse early, in one line."""
    from keras_distil.models.checkpoint_formats import NO_POOLING_FIX

    if source.model.pooling is None:
        raise ExportError(f"{source.path}: the model has no sentence pooling, so there is no sentence embedding "
                          f"to export; {NO_POOLING_FIX}")
    if source.tokenizer is None:
        raise ExportError(f"{source.path}: no vocabulary found, and a sentence-transformers folder needs its "
                          "tokenizer; pass --vocab vocab.txt (and --cased for a cased vocabulary)")


def plan_export(source: Source, fmt: str = "saved_model", *, quantize=("none",), with_logits=False, text=True,
                max_len=None, calibration=None, calibration_size=200) -> ExportPlan:
    """Check the options against the model and prepare the fixed batch, its reference outputs and the
    int8 calibration sequences."""
    model = source.model
    cfg = model.model_config
    if max_len is None:
        max_len = source.data_config.max_len if source.data_config else cfg.max_position_embeddings
    if not 3 <= max_len <= cfg.max_position_embeddings:
        raise ExportError(f"--max-len {max_len}: accepted 3..{cfg.max_position_embeddings} (the model's positions)")
    if text and source.tokenizer is None and fmt in TEXT_FORMATS:
        raise ExportError(f"{source.path}: no vocabulary found for the text signature; pass --vocab vocab.txt "
                          "(and --cased for a cased vocabulary), or --no-text for an ids-only export")
    if fmt == SENTENCE_FORMAT:
        _check_sentence_encoder(source)
    settings = source.tokenizer
    if settings is not None and len(settings.vocab) > cfg.vocab_size:
        raise ExportError(f"{settings.vocab_file or source.path}: {len(settings.vocab)} tokens, but the model has "
                          f"{cfg.vocab_size} embeddings: not this model's vocabulary")
    sequences = _calibration(source, calibration, max_len, calibration_size, "int8" in quantize)
    ids = {t: settings.vocab.index(t) for t in ("[CLS]", "[SEP]", "[MASK]") if t in settings.vocab} \
        if settings else {}
    batch = verify.fixed_batch(cfg.vocab_size, min(max_len, VERIFY_SEQ_LEN), VERIFY_BATCH, ids.get("[MASK]"),
                               ids.get("[CLS]"), ids.get("[SEP]"),
                               sequences[:VERIFY_BATCH] if sequences else None)
    reference = keras_outputs(model, batch.token_ids, batch.padding_mask)
    wants_text = bool(text and settings is not None and fmt in TEXT_FORMATS)
    calibration = mask_like_training(sequences[VERIFY_BATCH:], ids.get("[MASK]")) if sequences else None
    return ExportPlan(settings, wants_text, max_len, with_logits, tuple(quantize), batch, reference, calibration)


def gate(checks: dict[str, dict], min_top1: float = verify.MIN_TOP1,
         min_cosine: float = verify.MIN_COSINE) -> list[str]:
    """Every failed threshold, named by artifact."""
    problems = []
    for artifact, figures in checks.items():
        quantize = figures.get("quantize", "none")
        problems += [f"{artifact}: {p}" for p in verify.failures(figures, quantize, min_top1, min_cosine)]
        if "text_ids_mismatch" in figures:
            problems.append(f"{artifact}: ids differ from the training tokenizer on {figures['text_ids_mismatch']}")
    return problems


def _files(folder: str) -> dict[str, int]:
    sizes = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            sizes[os.path.relpath(p, folder)] = os.path.getsize(p)
    return dict(sorted(sizes.items()))


def export(src, format: str = "saved_model", *, out: str = "saved_models", name: str | None = None,
           version: int | str | None = None, quantize=("none",), with_logits: bool = False, text: bool = True,
           vocab: str | None = None, lowercase: bool = True, max_len: int | None = None,
           calibration: list[str] | None = None, calibration_size: int = 200, overwrite: bool = False,
           min_top1: float = verify.MIN_TOP1, min_cosine: float = verify.MIN_COSINE) -> ExportResult:
    """Export the student in ``src`` (a run folder, a ``.keras`` file, a preset or HF folder) and verify it.

    Raises :class:`ExportError` (nothing left at the destination) on bad input or a failed check.
    ``min_top1`` / ``min_cosine``: the quantised gates (default 0.99 each); lower them only to accept a
    measured loss knowingly (full-integer int8 of a small model may not reach 99 % top-1).
    """
    quantize = (quantize,) if isinstance(quantize, str) else tuple(quantize)
    _check_options(format, quantize)
    # Refuse a bad destination before loading anything (a default name needs the source's name first).
    if name is not None:
        dest = check_destination(destination(out, name, format, version), overwrite)
    source = resolve_source(src, vocab_settings(vocab, lowercase) if vocab else None)
    if name is None:
        dest = check_destination(destination(out, source.name, format, version), overwrite)
    plan = plan_export(source, format, quantize=quantize, with_logits=with_logits, text=text, max_len=max_len,
                       calibration=calibration, calibration_size=calibration_size)
    with staged_folder(dest, overwrite) as tmp:
        checks = WRITERS[format](source.model, tmp, plan)
        problems = gate(checks, min_top1, min_cosine)
        if problems:
            measured = ExportResult(dest, format, {}, checks).summary().splitlines()[1:-1]
            raise ExportError(f"{dest}: the export does not reproduce the model, nothing written:\n  "
                              + "\n  ".join(problems) + "\nmeasured:\n" + "\n".join(measured))
        report = {"source": source.path, "format": format, "quantize": list(quantize),
                  "with_logits": with_logits, "text": plan.text, "max_len": plan.max_len,
                  "checks": checks, "thresholds": {"float32": verify.TOLERANCES["none"],
                                                   "fp16": verify.TOLERANCES["fp16"], "top1": min_top1,
                                                   "cosine": min_cosine}}
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        files = _files(tmp)
    return ExportResult(dest, format, files, checks)
