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


def mask_like_training(sequences: list[np.ndarray], mask_id: int | None, rate: float = 0.15,
                       seed: int = 0) -> list[np.ndarray]:
    """Copies with ``rate`` of the inner tokens (not [CLS] / [SEP]) replaced by ``mask_id``.

    Calibrating on unmasked text alone leaves the activations of [MASK] positions outside the int8
    ranges: on the test student their embeddings then fell to cosine 0.92 and top-1 to 92 %, exactly
    where masked-token predictions are read.
    """
    if mask_id is None:
        return list(sequences)
    rng = np.random.default_rng(seed)
    out = []
    for seq in sequences:
        seq = np.array(seq, np.int32)
        inner = np.arange(1, max(len(seq) - 1, 1))
        k = int(round(rate * len(inner)))
        if k:
            seq[rng.choice(inner, k, replace=False)] = mask_id
        out.append(seq)
    return out


def representative_dataset(sequences: list[np.ndarray]):
    """A ``TFLiteConverter.representative_dataset``: one sequence per step, as the ids signature's inputs."""

    def generate():
        for seq in sequences:
            ids = seq[None, :].astype(np.int32)
            yield {"token_ids": ids, "padding_mask": np.ones_like(ids)}

    return generate
