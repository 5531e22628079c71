"""A tiny real corpus for end-to-end runs: a WordPiece vocab, text files and a teacher .keras (no tests here)."""

from __future__ import annotations

import json
import os

import numpy as np

from keras_distil.data.tokenize import SPECIAL_TOKENS


def write_word_vocab(folder, vocab_size=120) -> list[str]:
    """``folder/vocab.txt``: the special tokens, then words ``w0, w1, ...`` (word ``w<i>`` has id ``5 + i``)
    up to ``vocab_size`` entries; returns the words."""
    words = [f"w{i}" for i in range(vocab_size - len(SPECIAL_TOKENS))]
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(list(SPECIAL_TOKENS) + words) + "\n")
    return words


def random_lines(words, n: int, rng: np.random.Generator) -> str:
    """``n`` lines of 12 to 29 words drawn uniformly from ``words`` with ``rng``, as one text."""
    return "".join(" ".join(rng.choice(words, rng.integers(12, 30))) + "\n" for _ in range(n))


def write_corpus(folder, vocab_size=120, lines=240, seed=0, pattern=False) -> dict:
    """vocab.txt (word ``w<i>`` has id ``5 + i``) and two text files of sentences over the vocabulary.

    ``pattern``: every line repeats a motif of one or two Zipf-drawn words (``a a a ...`` or ``a b a b ...``),
    the rows the confident teacher was trained on (tests/helpers/confident_teacher.py), so that its soft
    targets on this text are far from uniform; else words drawn independently."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = write_word_vocab(folder, vocab_size)
    vocab = os.path.join(folder, "vocab.txt")
    # Zipf-like frequencies so that the masking's smoothing has something to smooth.
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    texts = []
    for part in range(2):
        path = os.path.join(folder, f"part{part}.txt")
        with open(path, "w", encoding="utf-8") as f:
            for _ in range(lines // 2):
                n = rng.integers(8, 30)
                if pattern:
                    motif = rng.choice(words, rng.integers(1, 3), p=p)
                    line = [motif[i % len(motif)] for i in range(n)]
                else:
                    line = rng.choice(words, n, p=p)
                f.write(" ".join(line) + "\n")
        texts.append(path)
    return {"vocab": vocab, "texts": texts}


def tiny_recipe(**train) -> dict:
    return {
        "distill": {"ce_positions": "masked"},
        "data": {"max_len": 16, "min_len": 6, "batch_size": 8, "max_predictions_per_seq": 4,
                 "shuffle_buffer": 64, "seed": 3},
        "train": {"learning_rate": 1e-3, "jit_compile": "off", "log_every": 5, "checkpoint_every": 5,
                  "keep_checkpoints": 2, "strategy": "default", **train},
        "model": {"vocab_size": 120, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
                  "intermediate_size": 64, "max_position_embeddings": 32, "dropout": 0.1},
    }


def write_recipe(path, recipe: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(recipe, f)
    return str(path)
