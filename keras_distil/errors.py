"""The one base class of every error keras-distil raises for bad input or a failed run.

Every user-facing error type derives from :class:`KerasDistilError` and keeps its home module (and its
old built-in base, so ``except ValueError`` still catches a :class:`~keras_distil.config.ConfigError`):

* :class:`~keras_distil.config.ConfigError`: a wrong recipe or knob;
* :class:`~keras_distil.data.base.DataError`: bad input data (a file, a vocabulary, a corpus);
* :class:`~keras_distil.models.tensor_store.CheckpointError` and
  :class:`~keras_distil.models.pooling.PoolingError`: a checkpoint that cannot be read or written;
* :class:`~keras_distil.training.loop.TrainingDiverged`: the loss became NaN or infinite;
* :class:`~keras_distil.export.errors.ExportError`: an export that cannot be written or verified;
* :class:`~keras_distil.files.DestinationError`: a destination that cannot be written as asked;
* :class:`~keras_distil.files.FileReadError`: a file that cannot be read as asked (the default error of
  :func:`~keras_distil.files.read_json`; callers pass their own);
* :class:`~keras_distil.compat.CompatibilityError`: an installed Keras / KerasHub lacks a private attribute
  the toolkit relies on;
* :class:`~keras_distil.quickstart.report.MissingExtraError`: an optional dependency of the quickstart
  (``pip install 'keras-distil[quickstart]'``) is missing.

The command line (:mod:`keras_distil.cli`) prints any of them as one line on stderr and exits with 2.

This module is the lowest layer of the package: it imports nothing from it.
"""

from __future__ import annotations


class KerasDistilError(Exception):
    """Base class of keras-distil's errors: the message names the file, the key or the tensor at fault.

    Catch it to handle every error the toolkit raises for bad input or a failed run, and only those.

    Args:
      *args: the message (as for any exception).

    Example:
    >>> import keras_distil as kd
    >>> try:
    ...     kd.TrainConfig.from_dict({"stepz": 3})
    ... except kd.KerasDistilError as e:
    ...     print(type(e).__name__)
    ConfigError
    """
