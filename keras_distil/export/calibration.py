"""Sequences of the training corpus: the int8 representative dataset and the fixed verification batch.

They go through the training pipeline's own reading and tokenization
(:func:`keras_distil.data.pipeline.sequence_dataset`), so calibration sees the activations of real
training inputs. The first ``holdout`` sequences are kept for verification and never used to calibrate.
"""

from __future__ import annotations

import numpy as np

from keras_distil.config import DataConfig
from keras_distil.data.base import DataError
from keras_distil.export.errors import ExportError
from keras_distil.export.text import training_tokenizer


def corpus_sequences(sources: list[str], tokenizer_settings, data_config: DataConfig | None, max_len: int,
                     count: int) -> list[np.ndarray]:
    """Up to ``count`` token-id sequences ([CLS] ... [SEP], at most ``max_len``) from ``sources``, in order."""
    from keras_distil.data.pipeline import sequence_dataset

    base = data_config or DataConfig()
    data_config = base.replace(max_len=max_len, min_len=min(base.min_len, max_len))
    try:
        ds = sequence_dataset(sources, data_config, training_tokenizer(tokenizer_settings))
        sequences = [np.asarray(s, np.int32) for s in ds.take(count).as_numpy_iterator()]
    except (DataError, OSError) as e:
        raise ExportError(f"calibration corpus {', '.join(sources)}: {e}") from None
    if not sequences:
        raise ExportError(f"calibration corpus {', '.join(sources)}: no sequence of at least "
                          f"{data_config.min_len} tokens")
    return sequences


def representative_dataset(sequences: list[np.ndarray]):
    """A ``TFLiteConverter.representative_dataset``: one sequence per step, as the ids signature's inputs."""

    def generate():
        for seq in sequences:
            ids = seq[None, :].astype(np.int32)
            yield {"token_ids": ids, "padding_mask": np.ones_like(ids)}

    return generate
