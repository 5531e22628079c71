"""Held-out evaluation of the quickstart's models: :func:`keras_distil.evaluation.evaluate_models` on the
corpus' held-out file, plus the unigram reference a model must beat to have learned anything.

The unigram reference predicts every masked token from the training corpus' token frequencies alone:
its accuracy is the share of masked targets equal to the most frequent training token, its perplexity
``exp`` of the mean negative log-likelihood of the targets under the (add-one smoothed) frequencies.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

UNIGRAM_LINES = 20_000  # training lines tokenized for the unigram counts


def token_counts(train_file: str, tokenizer, max_lines: int = UNIGRAM_LINES) -> np.ndarray:
    """Counts of every vocabulary id over the first ``max_lines`` lines of ``train_file`` (no specials)."""
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    lines = tf.data.TextLineDataset(train_file).take(max_lines).batch(1024)
    for batch in lines:
        ids = tokenizer.tokenize(batch).flat_values.numpy()
        counts += np.bincount(ids, minlength=tokenizer.vocab_size)
    counts[list(tokenizer.special_ids.all())] = 0
    return counts


def unigram_reference(dataset, counts: np.ndarray, max_batches: int | None) -> dict:
    """Accuracy and perplexity of predicting masked tokens from ``counts`` alone, on ``dataset``."""
    probs = (counts + 1.0) / float(counts.sum() + counts.size)
    top = int(np.argmax(counts))
    weight = correct = nll = 0.0
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        ids = batch["mask_ids"].numpy()
        w = batch["mask_weights"].numpy().astype(np.float64)
        weight += w.sum()
        correct += (w * (ids == top)).sum()
        nll += (w * -np.log(probs[ids])).sum()
    return {"masked_lm_accuracy": correct / weight if weight else None,
            "perplexity": math.exp(nll / weight) if weight else None, "most_frequent_token_id": top}


def evaluate_students(checkpoints: dict[str, str], corpus_paths: dict, vocab_file: str, data_section: dict,
                      max_batches: int, latency_runs: int, teacher: str = "teacher") -> dict:
    """The evaluation report of ``checkpoints`` (name -> KerasHub preset or .keras) against ``teacher``
    on ``corpus_paths["heldout"]``, with ``unigram`` added (see the module docstring)."""
    from keras_distil.config import DataConfig
    from keras_distil.data.tokenize import WordPieceTokenizer
    from keras_distil.evaluation.loop import evaluate_models, heldout_batches
    from keras_distil.models.checkpoint_formats import load_teacher

    tokenizer = WordPieceTokenizer.from_vocab_file(vocab_file)
    config = DataConfig.from_dict({**data_section, "vocab_file": vocab_file})
    models = {name: load_teacher(path, require_mlm_head=True).model for name, path in checkpoints.items()}
    dataset = heldout_batches([corpus_paths["heldout"]], tokenizer, config)
    report = evaluate_models(models, dataset, teacher if teacher in models else None, max_batches=max_batches,
                             latency_runs=latency_runs)
    report["unigram"] = unigram_reference(dataset, token_counts(corpus_paths["train"], tokenizer), max_batches)
    report["data"].update({"heldout": corpus_paths["heldout"], "max_len": config.max_len,
                           "batch_size": config.batch_size, "vocab_file": vocab_file})
    return report
