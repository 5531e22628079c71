"""Deployment exports of a student: TF Serving SavedModel, TFLite / LiteRT, KerasHub preset, HF folder,
sentence-transformers folder.

Public API: :func:`export` (what ``keras-distil export`` runs; the command is :mod:`keras_distil.cli.export`),
:class:`ExportResult`, :class:`ExportError`, :data:`FORMATS`, :data:`QUANTIZATIONS`.
Every export is verified against the Keras model before it is renamed into place (see ``verify``).
"""

from keras_distil.export.api import FORMATS, ExportResult, export
from keras_distil.export.errors import ExportError
from keras_distil.export.tflite import QUANTIZATIONS

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportError", "ExportResult", "export"]
