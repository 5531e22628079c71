"""``keras-distil quickstart``: the whole DistilBERT recipe at toy scale, offline, on a laptop CPU.

Stages (each cached in its own folder under ``out``, see :mod:`.stages`)::

    corpus    real English prose from this machine (quickstart/corpus/): train.txt, heldout.txt
    vocab     a WordPiece vocabulary learned from it (quickstart/vocab.py), or the one given
    teacher   a small BERT pretrained with the masked-LM loss (training.run.pretrain)
    distill   a half-depth student initialised from the teacher's layers, triple loss (training.run.distill)
    baseline  the same student shape from scratch, masked LM alone, same steps and batch (pretrain)
    evaluate  held-out masked-token accuracy / perplexity, retention, params, speed (evaluation/)
    export    the distilled student as a SavedModel and a TFLite flatbuffer, verified (export/)
    report    report.md + loss_curves.png (report.py)

The distilled student and the baseline see the same number of optimizer steps of the same batch size
and the same sequence length; the baseline gets the teacher's from-scratch learning rate (what a
from-scratch model of that size is tuned for here), the student the lower rate of a warm start.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from keras_distil.config import RecipeConfig
from keras_distil.quickstart.stages import Pipeline, Stage

logger = logging.getLogger("keras_distil.quickstart")

TRAINING_STAGES = ("teacher", "distill", "baseline")


@dataclasses.dataclass
class QuickstartSettings:
    """Every knob of the quickstart. Defaults fit 20 minutes on 2 CPU cores (docs/quickstart.md)."""

    out: str = "runs/quickstart"
    vocab: str | None = None  # an existing WordPiece vocab.txt (lower-cased); None: learn one from the corpus
    # corpus (quickstart/corpus/)
    corpus_max_documents: int | None = 40_000  # per source (stdlib, man, doc), after de-duplication
    held_out: float = 0.02  # fraction of documents kept out of training
    # vocabulary (quickstart/vocab.py)
    vocab_size: int = 8000
    vocab_max_documents: int = 30_000
    vocab_max_unique_words: int = 12_000
    # shapes
    hidden_size: int = 128
    teacher_layers: int = 4
    student_layers: list[int] | None = None  # teacher layers copied into the student; None: every other one
    num_heads: int = 2
    intermediate_size: int = 512
    dropout: float = 0.1
    # data
    max_len: int = 64
    batch_size: int = 32
    max_predictions_per_seq: int = 10
    bucket_boundaries: list[int] | None = dataclasses.field(default_factory=lambda: [32])
    shuffle_buffer: int = 10_000  # sequences
    # budgets: optimizer steps (the student and the baseline get the same)
    teacher_steps: int = 2000
    student_steps: int = 1000
    teacher_learning_rate: float = 2e-3  # also the baseline's: both train from scratch
    student_learning_rate: float = 1e-3
    warmup_prop: float = 0.1
    # distillation
    temperature: float = 2.0
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    # evaluation and export
    eval_batches: int = 60
    latency_runs: int = 20
    export: bool = True
    seed: int = 56

    @property
    def student_num_layers(self) -> int:
        return len(self.student_layers) if self.student_layers is not None else (self.teacher_layers + 1) // 2

    def data_section(self) -> dict:
        return {"max_len": self.max_len, "min_len": 8, "batch_size": self.batch_size,
                "max_predictions_per_seq": self.max_predictions_per_seq,
                "bucket_boundaries": self.bucket_boundaries, "shuffle_buffer": self.shuffle_buffer, "seed": self.seed}

    def model_section(self, num_layers: int) -> dict:
        return {"hidden_size": self.hidden_size, "num_layers": num_layers, "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "max_position_embeddings": self.max_len,
                "dropout": self.dropout}

    def train_section(self, steps: int, learning_rate: float) -> dict:
        every = max(1, steps // 4)
        return {"steps": steps, "learning_rate": learning_rate, "warmup_prop": self.warmup_prop,
                "checkpoint_every": every, "keep_checkpoints": 1, "log_every": max(1, min(25, steps // 20)),
                "seed": self.seed}

    def distill_section(self, **changes) -> dict:
        section = {"temperature": self.temperature, "alpha_ce": self.alpha_ce, "alpha_mlm": self.alpha_mlm,
                   "alpha_cos": self.alpha_cos, "ce_positions": "masked", "student_layers": self.student_layers,
                   "student_init": "teacher"}
        return {**section, **changes}


# ---- recipes -----------------------------------------------------------------------------------

def pretrain_recipe(settings: QuickstartSettings, num_layers: int) -> dict:
    """The recipe knobs (no paths) of a from-scratch masked-LM run of ``num_layers`` layers."""
    return {"model": settings.model_section(num_layers), "data": settings.data_section(),
            "train": settings.train_section(settings.teacher_steps if num_layers == settings.teacher_layers
                                            else settings.student_steps, settings.teacher_learning_rate)}


def baseline_recipe(settings: QuickstartSettings) -> dict:
    recipe = pretrain_recipe(settings, settings.student_num_layers)
    recipe["train"] = settings.train_section(settings.student_steps, settings.teacher_learning_rate)
    return recipe


def distill_recipe(settings: QuickstartSettings, **distill_changes) -> dict:
    return {"distill": settings.distill_section(**distill_changes), "data": settings.data_section(),
            "train": settings.train_section(settings.student_steps, settings.student_learning_rate)}


def with_paths(knobs: dict, out: str, train_file: str, vocab_file: str, teacher: str | None = None) -> RecipeConfig:
    recipe = {**knobs, "out": out, "train_data": [train_file],
              "data": {**knobs["data"], "vocab_file": vocab_file}}
    if teacher is not None:
        recipe["teacher"] = teacher
    return RecipeConfig.from_dict(recipe)


def _run_summary(result: dict) -> dict:
    """The JSON-able part of what training.run returns, with the student's paths."""
    keep = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) or v is None}
    student = result.get("student") or {}
    keep["paths"] = {"keras": student.get("keras"), "preset": student.get("keras_hub"),
                     "logs": os.path.join(result["run"], "logs")}
    return keep


# ---- stage bodies ------------------------------------------------------------------------------

def corpus_stage(settings: QuickstartSettings) -> Stage:
    from keras_distil.quickstart.corpus import CorpusSettings

    corpus = CorpusSettings(held_out=settings.held_out, max_documents=settings.corpus_max_documents)

    def run(folder, inputs):
        from keras_distil.quickstart.corpus import gather_corpus

        manifest = gather_corpus(folder, corpus)
        return {"paths": {"train": os.path.join(folder, manifest["train"]["file"]),
                          "heldout": os.path.join(folder, manifest["heldout"]["file"])},
                "train": manifest["train"], "heldout": manifest["heldout"],
                "sources": {k: {"documents": v["documents"], "words": v["words"]}
                            for k, v in manifest["sources"].items()}}

    return Stage("corpus", corpus.to_dict(), run, title="gathering English prose (stdlib docstrings, man, doc)")


def vocab_stage(settings: QuickstartSettings) -> Stage:
    from keras_distil.files import file_sha256
    from keras_distil.quickstart.vocab import VocabSettings

    if settings.vocab:
        path = os.path.abspath(settings.vocab)
        if not os.path.isfile(path):
            from keras_distil.data.base import DataError

            raise DataError(f"--vocab {settings.vocab}: no such file")

        def given(folder, inputs):
            from keras_distil.data.tokenize import load_vocab

            return {"paths": {"vocab": path}, "size": len(load_vocab(path)), "learned": False}

        return Stage("vocab", {"given": path, "sha256": file_sha256(path)}, given, title=f"using {path}")

    vocab = VocabSettings(vocab_size=settings.vocab_size, max_documents=settings.vocab_max_documents,
                          max_unique_words=settings.vocab_max_unique_words)

    def learn(folder, inputs):
        from keras_distil.quickstart.vocab import VOCAB_FILE, build_vocab

        manifest = build_vocab(inputs["corpus"]["paths"]["train"], folder, vocab)
        return {"paths": {"vocab": os.path.join(folder, VOCAB_FILE)}, "size": manifest["size"], "learned": True}

    return Stage("vocab", dataclasses.asdict(vocab), learn, after=("corpus",),
                 title=f"learning a {settings.vocab_size}-token WordPiece vocabulary (tensorflow-text)")


def _training_stage(name: str, command: str, knobs: dict, title: str) -> Stage:
    """A resumable stage that runs ``training.run.<command>`` ("pretrain" or "distill") on the recipe
    ``knobs`` with this pipeline's corpus and vocabulary (and, to distil, the teacher stage's preset)."""
    after = ("corpus", "vocab", "teacher") if command == "distill" else ("corpus", "vocab")

    def run(folder, inputs):
        from keras_distil.training import run as training_run

        teacher = inputs["teacher"]["paths"]["preset"] if command == "distill" else None
        recipe = with_paths(knobs, folder, inputs["corpus"]["paths"]["train"], inputs["vocab"]["paths"]["vocab"],
                            teacher=teacher)
        return _run_summary(getattr(training_run, command)(recipe))

    return Stage(name, knobs, run, after=after, resumable=True, title=title)


def teacher_stage(settings: QuickstartSettings) -> Stage:
    return _training_stage("teacher", "pretrain", pretrain_recipe(settings, settings.teacher_layers),
                           f"pretraining a {settings.teacher_layers}x{settings.hidden_size} teacher with MLM for "
                           f"{settings.teacher_steps} steps")


def student_stage(settings: QuickstartSettings, name: str = "distill", **distill_changes) -> Stage:
    """Distillation into the quickstart's student; ``distill_changes`` override knobs of the distill section
    (the ablation's variants: ``alpha_ce=0.0``, ``student_init="random"``, ...)."""
    knobs = distill_recipe(settings, **distill_changes)
    what = {"teacher": "initialised from the teacher", "random": "randomly initialised"}[
        knobs["distill"]["student_init"]]
    return _training_stage(name, "distill", knobs,
                           f"distilling a {settings.student_num_layers}-layer student ({what}) for "
                           f"{settings.student_steps} steps")


def baseline_stage(settings: QuickstartSettings) -> Stage:
    return _training_stage("baseline", "pretrain", baseline_recipe(settings),
                           f"training the {settings.student_num_layers}-layer student shape from scratch with MLM "
                           f"for {settings.student_steps} steps (the baseline)")


def evaluate_stage(settings: QuickstartSettings, models: tuple[str, ...] = ("teacher", "distill", "baseline"),
                   name: str = "evaluate") -> Stage:
    knobs = {"data": settings.data_section(), "eval_batches": settings.eval_batches,
             "latency_runs": settings.latency_runs, "models": list(models)}

    def run(folder, inputs):
        from keras_distil.files import atomic_write_json
        from keras_distil.quickstart.heldout import evaluate_students

        report = evaluate_students({m: inputs[m]["paths"]["preset"] for m in models},
                                   inputs["corpus"]["paths"], inputs["vocab"]["paths"]["vocab"],
                                   knobs["data"], settings.eval_batches, settings.latency_runs)
        path = os.path.join(folder, "evaluation.json")
        atomic_write_json(path, report)
        return {"paths": {"evaluation": path}, "report": report}

    return Stage(name, knobs, run, after=("corpus", "vocab", *models),
                 title="held-out masked-token accuracy, perplexity, parameters and speed")


def export_stage(settings: QuickstartSettings) -> Stage:
    def run(folder, inputs):
        from keras_distil.export import export

        run_dir = os.path.dirname(os.path.dirname(inputs["distill"]["paths"]["keras"]))
        paths, sizes = {}, {}
        for fmt in ("saved_model", "tflite"):
            result = export(run_dir, fmt, out=folder, name="student", version=1, overwrite=True)
            paths[fmt] = result.path
            sizes[fmt] = sum(result.files.values())
            logger.info("%s", result.summary())
        return {"paths": paths, "bytes": sizes}

    return Stage("export", {"formats": ["saved_model", "tflite"]}, run, after=("distill",),
                 title="exporting the student: SavedModel and TFLite, each reloaded and verified")


def report_stage(settings: QuickstartSettings, stage_times: dict) -> Stage:
    def run(folder, inputs):
        from keras_distil.quickstart.report import write_report

        return write_report(folder, settings, inputs, stage_times)

    after = ("corpus", "vocab", *TRAINING_STAGES, "evaluate") + (("export",) if settings.export else ())
    return Stage("report", {"settings": dataclasses.asdict(settings) | {"out": None}}, run, after=after,
                 title="writing report.md and loss_curves.png")


# ---- the whole run -----------------------------------------------------------------------------

def quickstart_stages(settings: QuickstartSettings) -> list[Stage]:
    stages = [corpus_stage(settings), vocab_stage(settings), teacher_stage(settings), student_stage(settings),
              baseline_stage(settings), evaluate_stage(settings)]
    if settings.export:
        stages.append(export_stage(settings))
    return stages


def run_quickstart_pipeline(settings: QuickstartSettings, fresh: bool = False, echo=print) -> dict:
    """Run (or reuse) every stage; returns ``{stage: StageResult}`` with the report's paths under ``report``.
    A missing optional dependency of the report (matplotlib) is an error before the first stage."""
    from keras_distil.quickstart.report import require_matplotlib

    require_matplotlib()
    pipeline = Pipeline(settings.out, fresh=fresh, echo=echo)
    for stage in quickstart_stages(settings):
        pipeline.run(stage)
    times = {name: {"seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "cached": r.cached}
             for name, r in pipeline.results.items()}
    pipeline.run(report_stage(settings, times))
    return pipeline.results


# ---- budget ------------------------------------------------------------------------------------

# Wall seconds per optimizer step with the default shapes on 2 quiet x86-64 cores, measured by `make demo`
# from a fresh clone on 2026-11-21 (docs/quickstart.md): teacher 431 s / 2000 steps, distill 159 / 1000,
# baseline 114 / 1000; and the seconds of everything that is not training (corpus 17, vocabulary 11,
# evaluation 28, export 13, start-up and the venv check).
SECONDS_PER_STEP = {"teacher": 0.216, "distill": 0.159, "baseline": 0.114}
FIXED_SECONDS = 90.0


def steps_for_budget(minutes: float, settings: QuickstartSettings | None = None) -> dict:
    """Teacher and student step counts that make the run last about ``minutes`` (the default steps scaled)."""
    from keras_distil.config import ConfigError

    settings = settings or QuickstartSettings()
    default_training = (settings.teacher_steps * SECONDS_PER_STEP["teacher"]
                        + settings.student_steps * (SECONDS_PER_STEP["distill"] + SECONDS_PER_STEP["baseline"]))
    available = minutes * 60.0 - FIXED_SECONDS
    if available <= 0:
        raise ConfigError(f"--budget-minutes: got {minutes:g}; accepted: more than {FIXED_SECONDS / 60:.0f} "
                          "(the corpus, vocabulary, evaluation and export alone take that long)")
    scale = available / default_training
    return {"teacher_steps": max(10, round(settings.teacher_steps * scale)),
            "student_steps": max(10, round(settings.student_steps * scale))}
