"""The reference row of an evaluation: the untrained student made by copying teacher layers
(``build_student(teacher, layers)``, DistilBERT's initialisation), so that a report shows what
distillation added to where the student started (:func:`add_copied_reference`, on by default in the CLI).
"""

from __future__ import annotations

import logging
import os

from keras_distil.config import ConfigError
from keras_distil.files import try_read_json

logger = logging.getLogger("keras_distil.evaluate")

COPIED_NAME = "copied (untrained)"  # the reference row: the student before distillation


def run_student_layers(model_path: str | None) -> list[int] | None:
    """``distill.student_layers`` of the run folder a saved student lies in, else None.

    ``model_path`` is a run's ``student/keras_hub`` or ``student/student.keras``; the run folder is two
    levels up and holds ``config.json`` (the resolved recipe). None when the path is not laid out so, the
    file is missing or unreadable, or the run used the default layers (``student_layers`` null).
    """
    if not model_path:
        return None
    path = os.path.normpath(os.path.abspath(model_path))
    if os.path.basename(path) not in ("keras_hub", "student.keras") or \
            os.path.basename(os.path.dirname(path)) != "student":
        return None
    config = os.path.join(os.path.dirname(os.path.dirname(path)), "config.json")
    distill = (try_read_json(config) or {}).get("distill")
    layers = distill.get("student_layers") if isinstance(distill, dict) else None
    if isinstance(layers, list) and layers and all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        return layers
    return None


def copied_layers_for(num_teacher_layers: int, num_layers: int, model_path: str | None = None
                      ) -> tuple[list[int], str]:
    """The teacher layers a ``num_layers``-deep student is compared with, and where they come from.

    In order: the run folder's ``distill.student_layers`` when ``model_path`` lies in a run
    (:func:`run_student_layers`) and it has ``num_layers`` entries ("run config"); every other teacher
    layer when that gives ``num_layers`` ("every other layer"); else evenly spaced (:func:`keras_distil.models.student.copied_layers`).

    Example:
    >>> copied_layers_for(6, 3), copied_layers_for(6, 4)
    (([0, 2, 4], 'every other layer'), ([0, 1, 3, 4], 'evenly spaced'))
    """
    from keras_distil.models.student import copied_layers, default_student_layers

    layers = run_student_layers(model_path)
    if layers is not None and len(layers) == num_layers and all(0 <= i < num_teacher_layers for i in layers):
        return list(layers), "run config"
    if layers is not None:
        logger.warning("%s: the run's distill.student_layers %s do not fit a %d-layer student of a %d-layer "
                       "teacher; ignored", model_path, layers, num_layers, num_teacher_layers)
    chosen = copied_layers(num_teacher_layers, num_layers)
    return chosen, "every other layer" if chosen == default_student_layers(num_teacher_layers) else "evenly spaced"


def add_copied_reference(models: dict, teacher_name: str | None, layers=None, paths: dict | None = None,
                         name: str = COPIED_NAME) -> tuple[dict, dict | None]:
    """``models`` with a reference row added: the untrained student that copies teacher ``layers``.

    The row is ``build_student(teacher, layers)`` (DistilBERT's initialisation: the embeddings and those
    layers of the teacher), i.e. where a distilled student started, so that a report shows what
    distillation added. It is added when there is a teacher (a BertMLM) and a model of the teacher's
    width with fewer layers (the first such is the one it stands beside, ``like``), or when ``layers``
    are given explicitly.

    Args:
      models: name -> model, the teacher among them.
      teacher_name: the teacher's name (None: no row).
      layers: teacher layer indices; None: :func:`copied_layers_for` the student (its run folder's
        ``distill.student_layers``, every other layer, else evenly spaced); "none": no row.
      paths: name -> checkpoint path, to find the run folder of a saved student.
      name: the row's name (suffixed when taken).

    Returns:
      ``(models, info)``: a new dict with the row last and ``{"name", "layers", "source", "like"}``, or the
      same ``models`` and None when no row is added.

    Example:
    >>> models, info = add_copied_reference({"teacher": teacher, "student": student},  # doctest: +SKIP
    ...                                     "teacher")
    >>> info["layers"], info["source"]  # doctest: +SKIP
    ([0, 2, 4], 'every other layer')
    """
    from keras_distil.models.bert import BertMLM
    from keras_distil.models.student import build_student, check_student_layers

    if layers == "none":
        return models, None
    teacher = models.get(teacher_name) if teacher_name is not None else None
    if not isinstance(teacher, BertMLM):
        if layers is not None:
            raise ConfigError("evaluate: copied layers need a teacher (a BertMLM) to copy them from; give --teacher")
        return models, None
    config = teacher.model_config
    like = next((n for n, m in models.items() if n != teacher_name and m is not teacher
                 and getattr(getattr(m, "model_config", None), "hidden_size", None) == config.hidden_size
                 and m.model_config.num_layers < config.num_layers), None)
    if layers is not None:
        try:
            layers, source = check_student_layers(list(layers), config.num_layers), "given"
        except ConfigError as e:
            raise ConfigError(f"evaluate --copied-layers: {str(e).split(': ', 1)[-1]}") from None
    elif like is None:
        return models, None
    else:
        layers, source = copied_layers_for(config.num_layers, models[like].model_config.num_layers,
                                           (paths or {}).get(like))
    unique, i = name, 2
    while unique in models:
        unique, i = f"{name} {i}", i + 1
    reference = build_student(teacher, layers)
    info = {"name": unique, "layers": list(layers), "source": source, "like": like}
    logger.info("reference row %r: teacher layers %s copied (%s)", unique, list(layers), source)
    return {**models, unique: reference}, info
