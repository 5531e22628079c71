"""TFLite / LiteRT flatbuffers converted from a SavedModel, and a LiteRT runner.

Conversion always starts from a SavedModel written by :mod:`keras_distil.export.saved_model`
(``TFLiteConverter.from_keras_model`` fails on Keras 3 models). Quantisations:

* ``none``: float32;
* ``fp16``: float16 weights, float32 compute (``supported_types=[tf.float16]``);
* ``dynamic``: int8 weights, activations quantised on the fly (``Optimize.DEFAULT`` alone);
* ``int8``: full-integer: int8 weights and activations, scales calibrated on a representative dataset
  (sequences of the training corpus), builtin int8 kernels only; ids stay int32 and the outputs float32.

The text-input variant's tokenizer ops are tensorflow-text custom ops (``allow_custom_ops=True``): run it
with ``InterpreterWithCustomOps(custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)``.
The pip LiteRT interpreters have no Flex delegate, so nothing else from TF may be in that graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

from keras_distil.export.errors import ExportError

QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")


def convert(saved_model_dir: str, signature: str, quantize: str = "none",
            representative: Callable[[], Iterable[dict]] | None = None, custom_ops: bool = False) -> bytes:
    """Convert one signature of a SavedModel to a TFLite flatbuffer with the given quantisation."""
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize {quantize!r}: accepted {', '.join(QUANTIZATIONS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
    converter.allow_custom_ops = custom_ops
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        if representative is None:
            raise ExportError("--quantize int8 needs a representative dataset: give --calibration with a "
                              "text file or prepared shards of the training corpus")
        converter.representative_dataset = representative
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if custom_ops:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)  # the tokenizer's string ops have no int8 form
        converter.target_spec.supported_ops = ops
    try:
        with warnings.catch_warnings():  # int8 calibration runs TF's own deprecated tf.lite.Interpreter
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError, RuntimeError, ValueError...
        raise ExportError(f"{saved_model_dir}: TFLite conversion ({quantize}) failed: {e}") from None


class LiteModel:
    """A TFLite file run by ``ai_edge_litert`` (with tensorflow-text's kernels when ``custom_ops``)."""

    def __init__(self, path: str, custom_ops: bool = False, num_threads: int | None = None):
        from ai_edge_litert import interpreter as litert

        self.path = path
        if custom_ops:
            import tensorflow_text

            self.interpreter = litert.InterpreterWithCustomOps(
                model_path=path, num_threads=num_threads,
                custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
        else:
            self.interpreter = litert.Interpreter(model_path=path, num_threads=num_threads)
        signatures = list(self.interpreter.get_signature_list())
        if len(signatures) != 1:
            raise ExportError(f"{path}: expected one signature, found {signatures}")
        self.signature = signatures[0]
        self._runner = self.interpreter.get_signature_runner(self.signature)

    def __call__(self, **inputs) -> dict[str, np.ndarray]:
        """Run on numpy inputs (shapes may change from call to call: the runner resizes). A model the
        interpreter cannot run (an unresolved op) raises :class:`ExportError` naming the file."""
        try:
            return {k: np.array(v) for k, v in self._runner(**inputs).items()}
        except (RuntimeError, ValueError) as e:
            raise ExportError(f"{self.path}: LiteRT cannot run this model: {e}") from None
