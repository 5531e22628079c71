"""keras-distil: distil a BERT teacher into a smaller student the DistilBERT way, with Keras 3 on TensorFlow.

Importing the package registers its Keras classes, so ``keras.saving.load_model`` reads saved
Distillers and students.
"""

from keras_distil.config import ConfigError, DataConfig, DistillConfig, ModelConfig, TrainConfig
from keras_distil.data.api import build_dataset
from keras_distil.distiller import Distiller
from keras_distil.errors import KerasDistilError
from keras_distil.models.bert import BertMLM, build_mlm_model
from keras_distil.models.checkpoint_formats import (
    CheckpointError,
    LoadedCheckpoint,
    load_teacher,
    read_tokenizer_settings,
    save_student,
)
from keras_distil.models.student import build_student, default_student_layers, student_from_teacher

__version__ = "0.1.0"

__all__ = [
    "BertMLM",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "Distiller",
    "KerasDistilError",
    "LoadedCheckpoint",
    "ModelConfig",
    "TrainConfig",
    "build_dataset",
    "build_mlm_model",
    "build_student",
    "default_student_layers",
    "load_teacher",
    "read_tokenizer_settings",
    "save_student",
    "student_from_teacher",
]
