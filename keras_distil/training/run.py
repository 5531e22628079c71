"""A whole run from a recipe: ``distill`` (teacher -> student) and ``pretrain`` (masked LM from scratch).

The run folder (``recipe.out``)::

    config.json      the resolved recipe (every knob, defaults included); a restart must match it
    checkpoints/     tf.train.CheckpointManager: the last train.keep_checkpoints, every checkpoint_every steps
    logs/            TensorBoard: loss terms, learning rate, gradient norm, tokens/s, hyperparameters
    student/         student.keras (the trained model) and keras_hub/ (a KerasHub preset with its tokenizer)

Running the same command again resumes from the latest checkpoint; a finished run only rewrites
``student/``. Under MultiWorkerMirroredStrategy every worker runs the same command; the chief writes
the folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import keras

from keras_distil.config import ConfigError, RecipeConfig, dump_json, load_json
from keras_distil.files import check_output, save_model_atomically
from keras_distil.training.loop import Trainer
from keras_distil.training.optim import build_optimizer, precision_policy
from keras_distil.training.speed import resolve_runtime
from keras_distil.training.strategy import make_strategy, strategy_kind, worker_info

logger = logging.getLogger("keras_distil.training")


@dataclasses.dataclass(frozen=True)
class RunFolder:
    root: str

    @property
    def config(self) -> str:
        return os.path.join(self.root, "config.json")

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def student(self) -> str:
        return os.path.join(self.root, "student")


def _with_current_defaults(previous: dict) -> dict:
    """A run folder's config.json with the knobs added to the toolkit since it was written set to their
    defaults (which keep the old behaviour), so that adding a knob does not block resuming older runs.
    A file this version cannot parse is returned unchanged (and then differs from any recipe)."""
    knobs = {k: v for k, v in previous.items() if k not in ("command", "history")}
    extra = {"history": previous["history"]} if "history" in previous else {}
    try:
        return {"command": previous.get("command"), **RecipeConfig.from_dict(knobs).to_dict(), **extra}
    except ConfigError:
        return previous


# train.* knobs a run may change when resumed with --resume-with-changes (after a NaN stop, a longer run): the
# optimisation and bookkeeping. The others (seed, batching, strategy) decide which batches the resumed run sees.
RESUMABLE_TRAIN_KNOBS = ("learning_rate", "adam_beta_1", "adam_beta_2", "adam_epsilon", "weight_decay",
                         "warmup_prop", "max_grad_norm", "epochs", "steps", "mixed_precision", "teacher_precision",
                         "jit_compile",
                         "checkpoint_every", "keep_checkpoints", "log_every")
# Keys of config.json that are not part of a run's identity.
NOT_IDENTITY = ("description", "history")


def prepare_folder(recipe: RecipeConfig, command: str, is_chief: bool, resume_with_changes: bool = False) -> RunFolder:
    """Create the run folder and write config.json; refuse a folder holding a different run.

    ``resume_with_changes``: accept a run that differs only in :data:`RESUMABLE_TRAIN_KNOBS`; config.json then
    takes the new values and records the change (old, new) in its ``history``."""
    if not recipe.out:
        raise ConfigError("out: no run folder given; pass --out DIR or set \"out\" in the recipe")
    folder = RunFolder(os.path.abspath(recipe.out))
    resolved = {"command": command, **recipe.to_dict()}
    if os.path.exists(folder.config):
        previous = _with_current_defaults(load_json(folder.config))
        changed = sorted(k for k in set(previous) | set(resolved)
                         if k not in NOT_IDENTITY and previous.get(k) != resolved.get(k))
        train_changes = {k: [previous.get("train", {}).get(k), v] for k, v in resolved["train"].items()
                         if previous.get("train", {}).get(k) != v}
        if changed and resume_with_changes and changed == ["train"] and set(train_changes) <= set(RESUMABLE_TRAIN_KNOBS):
            resolved["history"] = list(previous.get("history", [])) + [{"train": train_changes}]
            logger.info("resuming %s with changed %s", folder.root, train_changes)
        elif changed:
            hint = "resume with the same recipe and flags, or choose another --out"
            if changed == ["train"]:
                fixed = sorted(set(train_changes) - set(RESUMABLE_TRAIN_KNOBS))
                hint = (f"train.{', train.'.join(fixed)} cannot change in a run; choose another --out" if fixed else
                        "to resume it with these train.* values, add --resume-with-changes")
            raise ConfigError(f"{folder.config}: this folder holds a run with a different {', '.join(changed)}; {hint}")
        elif "history" in previous:
            resolved["history"] = previous["history"]
    if is_chief:
        for path in (folder.root, folder.checkpoints, folder.logs):
            os.makedirs(path, exist_ok=True)
        dump_json(resolved, folder.config)
    return folder


def count_sequences(sources, data_config, tokenizer) -> int:
    """Sequences in one pass over the corpus: prepared folders' manifests, else one tokenizing pass."""
    from keras_distil.data import ShardSource, read_manifest, sequence_dataset
    from keras_distil.data.pipeline import as_sources

    sources = as_sources(sources)
    if all(isinstance(s, ShardSource) for s in sources):
        return sum(int(read_manifest(s.directory)["sequences"]) for s in sources)
    return int(sequence_dataset(sources, data_config, tokenizer).reduce(0, lambda n, _: n + 1))


def total_steps(recipe: RecipeConfig, sources, tokenizer) -> int:
    """``train.steps``, else ``epochs`` passes of ``data.batch_size * gradient_accumulation_steps`` sequences."""
    train = recipe.train
    if train.steps is not None:
        return train.steps
    effective = recipe.data.batch_size * train.gradient_accumulation_steps
    sequences = count_sequences(sources, recipe.data, tokenizer)
    steps = train.epochs * max(1, sequences // effective)
    logger.info("%d sequences, %d per optimizer step: %d steps for %d epoch(s)", sequences, effective, steps,
                train.epochs)
    return steps


def _tokenizer(recipe: RecipeConfig, settings):
    """The WordPiece tokenizer: data.vocab_file, else the teacher's vocabulary; the teacher's case rules win."""
    from keras_distil.data import WordPieceTokenizer

    data = recipe.data
    lowercase, strip = data.lowercase, data.strip_accents
    if settings is not None:
        lowercase, strip = settings.lowercase, settings.strip_accents
    if data.vocab_file:
        tokenizer = WordPieceTokenizer.from_vocab_file(data.vocab_file, lowercase, strip)
        if settings is not None and list(settings.vocab) != list(tokenizer.vocab) and not data.allow_other_vocab:
            theirs, ours = list(settings.vocab), list(tokenizer.vocab)
            first = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
            got = repr(ours[first]) if first < len(ours) else "nothing"
            want = repr(theirs[first]) if first < len(theirs) else "nothing"
            raise ConfigError(f"data.vocab_file: {data.vocab_file} is not the teacher's vocabulary (id {first} is {got}, "
                              f"the teacher's {want}): the student would ship token ids the teacher never meant; "
                              "leave data.vocab_file unset to use the teacher's, or set data.allow_other_vocab true")
        return tokenizer
    if settings is None:
        raise ConfigError("data.vocab_file: not set, and the teacher carries no vocabulary (a .keras file); "
                          "set data.vocab_file to the teacher's vocab.txt")
    return WordPieceTokenizer.from_settings(settings)


def _save_student(student, folder: RunFolder, tokenizer) -> dict:
    from keras_distil.models.bert import float32_copy
    from keras_distil.models.checkpoint_formats import save_student

    os.makedirs(folder.student, exist_ok=True)
    # Trained in mixed precision or not, the student is saved, reloaded and checked in float32: it serves so.
    with precision_policy("float32"):
        student = float32_copy(student)
        path = save_model_atomically(student, os.path.join(folder.student, "student.keras"))
        diffs = save_student(student, os.path.join(folder.student, "keras_hub"), "keras_hub",
                             tokenizer=tokenizer.settings(), model_type="bert", overwrite=True)
    return {"keras": path, "keras_hub": os.path.join(folder.student, "keras_hub"),
            "keras_hub_max_abs_diff": max(diffs.values()) if diffs else 0.0}


def _run(recipe: RecipeConfig, command: str, build, console: bool, resume_with_changes: bool = False) -> dict:
    """Shared by distill and pretrain. ``build(recipe, resolve) -> (trainer_model, tokenizer, runtime)``, called
    under the strategy's scope: ``resolve(student_width=, teacher_width=)`` gives the run's
    :class:`~keras_distil.training.speed.RuntimeChoice`, and ``build`` makes its models under that policy."""

    if not recipe.train_data:
        raise ConfigError("train_data: no corpus given; pass --train-data PATH (text files, a prepared folder, "
                          "or tfds:NAME)")
    if recipe.out:
        check_output(recipe.out, "out")  # a bad --out fails now, not after loading and counting
    strategy = make_strategy(recipe.train.strategy, tpu=recipe.tpu)  # first: before TF's runtime starts
    return _train(recipe, command, build, console, strategy, resume_with_changes)


def _train(recipe: RecipeConfig, command: str, build, console: bool, strategy, resume_with_changes: bool) -> dict:
    """The body of :func:`_run`: the run folder, and its removal when the run fails before its first checkpoint."""

    keras.utils.set_random_seed(recipe.train.seed)
    _, is_chief = worker_info(strategy)
    replicas = strategy.num_replicas_in_sync
    if recipe.data.batch_size % replicas:
        raise ConfigError(f"data.batch_size: got {recipe.data.batch_size}; accepted: a multiple of the "
                          f"{replicas} replicas of this strategy")
    fresh = is_chief and not os.path.exists(os.path.join(os.path.abspath(recipe.out or "."), "config.json"))
    folder = prepare_folder(recipe, command, is_chief, resume_with_changes)
    try:
        return _train_in(folder, recipe, command, build, console, strategy)
    except BaseException:
        if fresh:
            remove_failed_start(folder)
        raise


def remove_failed_start(folder: RunFolder) -> None:
    """Undo a run that failed before its first checkpoint (a wrong teacher, an ignored knob, an empty corpus):
    its config.json, logs/ and checkpoints/ go, and the folder itself when nothing else is in it, so the
    corrected command starts afresh instead of being refused as "a different run"."""
    import shutil

    import tensorflow as tf

    if tf.train.latest_checkpoint(folder.checkpoints) is not None:
        return  # something to resume from: keep everything
    for path in (folder.checkpoints, folder.logs):
        shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(folder.config):
        os.remove(folder.config)
    if os.path.isdir(folder.root) and not os.listdir(folder.root):
        os.rmdir(folder.root)


def _train_in(folder: RunFolder, recipe: RecipeConfig, command: str, build, console: bool, strategy) -> dict:
    """The run once its folder exists: build, count, compile, train, save the student."""
    from keras_distil.data import build_training_dataset
    from keras_distil.data.pipeline import ensure_nonempty

    _, is_chief = worker_info(strategy)
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        model, tokenizer, runtime = build(recipe, lambda **widths: resolve_runtime(recipe.train, strategy, **widths))
    for knob, reason in runtime.reasons.items():
        logger.info("%s: %s", knob, reason)
    sources = list(recipe.train_data)
    ensure_nonempty(sources, recipe.data, tokenizer)
    steps = total_steps(recipe, sources, tokenizer)
    with strategy.scope():
        model.compile(optimizer=build_optimizer(recipe.train, steps))
    jit, reason = runtime.jit_compile, runtime.reasons["train.jit_compile"]
    trainer = Trainer(model, strategy, steps, micro_batches=recipe.train.gradient_accumulation_steps,
                      checkpoint_dir=folder.checkpoints, checkpoint_every=recipe.train.checkpoint_every,
                      keep_checkpoints=recipe.train.keep_checkpoints, logdir=folder.logs,
                      log_every=recipe.train.log_every, jit_compile=jit,
                      hparams={"command": command, **recipe.to_dict()}, console=console)

    def dataset_fn(input_context):
        return build_training_dataset(recipe.data, sources, tokenizer, input_context=input_context,
                                      check_nonempty=False, objective=model.config)

    logs = trainer.fit(dataset_fn)
    result = {"run": folder.root, "steps": steps, "jit_compile": jit, "jit_reason": reason,
              "precision": runtime.policy, "teacher_precision": runtime.teacher_precision,
              "strategy": strategy_kind(strategy), "replicas": replicas, **logs}
    if is_chief:
        result["student"] = _save_student(model.student, folder, tokenizer)
    return result


def check_model_section(recipe: RecipeConfig, teacher_config) -> None:
    """``distill`` takes its shape from the teacher and the ``student`` section: a ``model.*`` knob set in the
    recipe that disagrees with the teacher would be ignored, so it is a :class:`ConfigError` naming it. A
    ``model`` section that describes the teacher itself (a recipe shared with ``pretrain``) is accepted."""
    from keras_distil.config import ModelConfig, StudentConfig

    defaults = ModelConfig().to_dict()
    for key, value in recipe.model.to_dict().items():
        if value != defaults[key] and value != getattr(teacher_config, key):
            hint = f"student.{key}" if key in StudentConfig().to_dict() else "the teacher's own value"
            raise ConfigError(f"model.{key}: got {value!r}, but distill takes the model's shape from the teacher "
                              f"({key}={getattr(teacher_config, key)!r}) and ignores the model section; set "
                              f"{hint} for the student instead")


def init_sample(recipe: RecipeConfig, sources, tokenizer, sequences: int = 256) -> list:
    """About ``sequences`` clean sequences of the training text, in batches (the narrow-student reduction's sample)."""
    from keras_distil.config import DistillConfig
    from keras_distil.data import build_training_dataset

    data = recipe.data.replace(masking="none", batch_size=min(recipe.data.batch_size, 64))
    clean = DistillConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0)
    dataset = build_training_dataset(data, sources, tokenizer, repeat=False, drop_remainder=False,
                                     objective=clean)
    return list(dataset.take(max(1, sequences // data.batch_size)).as_numpy_iterator())


def recipe_student(recipe: RecipeConfig, teacher, tokenizer) -> tuple:
    """``(student, basis)``: the recipe's student of ``teacher`` before training, and the basis ``P`` of the
    teacher's reduction (None unless the student is narrower and ``distill.student_init`` is "teacher"; the
    sample it is computed on is read from ``recipe.train_data`` with ``tokenizer``)."""
    from keras_distil.models.narrow_init import reduce_teacher
    from keras_distil.models.student import build_student, same_width, student_model_config

    layers = recipe.distill.student_layers
    shape = student_model_config(teacher.model_config, recipe.student, layers)
    reduced = recipe.distill.student_init == "teacher" and not same_width(shape, teacher.model_config)
    student = build_student(teacher, layers, "random" if reduced else recipe.distill.student_init,
                            seed=recipe.train.seed, shape=recipe.student)
    if not reduced:
        return student, None
    # The teacher's weights reduced to the student's width; the projections start from its basis.
    sample = init_sample(recipe, list(recipe.train_data or []), tokenizer)
    return student, reduce_teacher(teacher, student, sample, layers)


def distill(recipe: RecipeConfig, console: bool = True, resume_with_changes: bool = False) -> dict:
    """Distil ``recipe.teacher`` into a student of the ``student`` section's shape (by default the teacher's
    width and half its depth), initialised from the teacher (copied layers, or a reduction of its weights for a
    narrower student) or at random (distill.student_init, seeded by train.seed)."""
    from keras_distil.distiller import Distiller
    from keras_distil.models.bert import precision_copy
    from keras_distil.models.checkpoint_formats import load_teacher
    from keras_distil.models.student import student_model_config

    if not recipe.teacher:
        raise ConfigError("teacher: no teacher given; pass --teacher PATH (a Hugging Face folder, a KerasHub "
                          "preset or a .keras file), or train one with `keras-distil pretrain`")

    def build(recipe, resolve):
        loaded = load_teacher(recipe.teacher, distill=recipe.distill)
        check_model_section(recipe, loaded.model.model_config)
        tokenizer = _tokenizer(recipe, loaded.tokenizer)
        if tokenizer.vocab_size != loaded.model.model_config.vocab_size:
            raise ConfigError(f"data.vocab_file: {tokenizer.vocab_file} has {tokenizer.vocab_size} tokens, the "
                              f"teacher {recipe.teacher} {loaded.model.model_config.vocab_size}")
        shape = student_model_config(loaded.model.model_config, recipe.student, recipe.distill.student_layers)
        runtime = resolve(student_width=shape.hidden_size, teacher_width=loaded.model.model_config.hidden_size)
        with precision_policy(runtime.policy):  # the student (and the projections) train in the run's policy
            student, basis = recipe_student(recipe, loaded.model, tokenizer)
            # The frozen teacher in train.teacher_precision: it needs no gradient (docs/runtime.md).
            teacher = precision_copy(loaded.model, runtime.teacher_precision)
            distiller = Distiller(teacher, student, recipe.distill, projection_basis=basis)
        if recipe.distill.uses_sentence_embeddings or loaded.model.pooling is not None:
            student.pooling = distiller.pooling  # the embedding it was trained to produce travels with it
        return distiller, tokenizer, runtime

    return _run(recipe, "distill", build, console, resume_with_changes)


def pretrain(recipe: RecipeConfig, console: bool = True, resume_with_changes: bool = False) -> dict:
    """Masked-LM training of a BERT of shape ``recipe.model`` from scratch (a teacher, or a baseline
    student of the student's shape). ``model.vocab_size`` follows data.vocab_file."""
    from keras_distil.config import StudentConfig
    from keras_distil.distiller import Pretrainer
    from keras_distil.models.bert import build_mlm_model

    if not recipe.data.vocab_file:
        raise ConfigError("data.vocab_file: pretraining needs a WordPiece vocab.txt")
    for key, value in recipe.student.to_dict().items():
        if value != getattr(StudentConfig(), key):
            raise ConfigError(f"student.{key}: got {value!r}, but pretrain has no teacher and trains the model "
                              f"section's shape; set model.{key} instead")
    if recipe.data.masking == "none":
        raise ConfigError("data.masking: got 'none'; pretraining is masked LM and needs 'mlm' (or 'auto')")
    if recipe.model.max_position_embeddings < recipe.data.max_len:
        raise ConfigError(f"model.max_position_embeddings: got {recipe.model.max_position_embeddings}; "
                          f"accepted: >= data.max_len={recipe.data.max_len}")

    def build(recipe, resolve):  # no teacher: train.teacher_precision does not apply
        tokenizer = _tokenizer(recipe, None)
        model_config = recipe.model
        if model_config.vocab_size != tokenizer.vocab_size:
            logger.info("model.vocab_size set to %d from %s", tokenizer.vocab_size, tokenizer.vocab_file)
            model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        runtime = resolve(student_width=model_config.hidden_size)
        with precision_policy(runtime.policy):
            return Pretrainer(build_mlm_model(model_config)), tokenizer, runtime

    return _run(recipe, "pretrain", build, console, resume_with_changes)


