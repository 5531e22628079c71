"""Shared set-up of the export tests (no tests here): a tiny vocabulary, a templated corpus, and a run
folder whose student was trained for a few hundred MLM steps, so that its masked-token predictions
are confident as a real student's are (a random model's near-uniform logits make top-1 agreement
meaningless)."""

import json
import os
import random

import keras
import numpy as np
import tensorflow as tf

from keras_distil.data.tokenize import SPECIAL_TOKENS, WordPieceTokenizer
from keras_distil.models.bert import build_mlm_model

WORDS = ("the a big small red old dog cat bird man woman child ran sat saw ate walked slept "
         "on in under near to from with house park tree river road city morning night today "
         "and but was is quickly slowly happy sad").split()
VOCAB = list(SPECIAL_TOKENS) + list(".,!?'%:") + WORDS + list("bcdefghijklmnopqrstuvwxyz0123456789") + \
    ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["##ed", "##ing"]
assert len(VOCAB) == len(set(VOCAB))
SEQ = 16


ADJ_NOUN = [("big", "dog"), ("small", "cat"), ("red", "bird"), ("old", "man"), ("happy", "woman"), ("sad", "child")]
VERB_PLACE = [("ran", "park"), ("sat", "house"), ("walked", "road"), ("slept", "tree"), ("ate", "city"),
              ("saw", "river")]


def sentence(rng: random.Random) -> str:
    """Templated sentences whose words mostly follow from their neighbours (adjective -> noun, verb ->
    place), so that a trained model's masked-token predictions are decided, as a real student's are."""
    adj, noun = rng.choice(ADJ_NOUN)
    verb, place = rng.choice(VERB_PLACE)
    when = "today" if verb in ("ran", "walked", "ate") else "at night"
    return f"the {adj} {noun} {verb} near the {place} {when}."


def write_corpus(path: str, lines: int = 400, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(sentence(rng) for _ in range(lines)) + "\n")


def train_tiny_student(corpus: str, tokenizer: WordPieceTokenizer, steps: int = 200, seed: int = 0):
    """A 2-layer, width-32 BertMLM trained with plain MLM (15 % masked) on ``corpus``."""
    keras.utils.set_random_seed(seed)
    model = build_mlm_model(dict(vocab_size=len(VOCAB), hidden_size=32, num_layers=2, num_heads=4,
                                 intermediate_size=64, max_position_embeddings=64, dropout=0.0))
    with open(corpus, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    ragged = tokenizer.tokenize(tf.constant(texts))
    ids = np.zeros((len(texts), SEQ), np.int32)
    for i, row in enumerate(ragged.to_list()):
        row = [2] + row[: SEQ - 2] + [3]
        ids[i, : len(row)] = row
    mask = (ids > 0).astype(np.int32)
    optimizer = keras.optimizers.Adam(5e-3)
    rng = np.random.default_rng(seed)

    @tf.function
    def step(inputs, labels, weights):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)["logits"]
            loss = tf.reduce_sum(weights * keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True)) / tf.reduce_sum(weights)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    for _ in range(steps):
        idx = rng.integers(0, len(ids), 32)
        batch, batch_mask = ids[idx].copy(), mask[idx]
        chosen = (rng.random(batch.shape) < 0.15) & (batch > 4)
        labels = batch.copy()
        batch[chosen] = 4
        step({"token_ids": batch, "padding_mask": batch_mask}, labels, chosen.astype(np.float32))
    return model


def make_run(root: str, steps: int = 200) -> str:
    """``root/run``: config.json (data section + corpus), vocab.txt, corpus.txt, student/student.keras."""
    run = os.path.join(root, "run")
    os.makedirs(os.path.join(run, "student"))
    with open(os.path.join(run, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    write_corpus(os.path.join(run, "corpus.txt"))
    tokenizer = WordPieceTokenizer(VOCAB)
    model = train_tiny_student(os.path.join(run, "corpus.txt"), tokenizer, steps)
    model.save(os.path.join(run, "student", "student.keras"))
    with open(os.path.join(run, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"data": {"vocab_file": "vocab.txt", "max_len": 32, "min_len": 4}, "corpus": "corpus.txt"}, f)
    return run


def reference_pack(ids_rows, max_len: int, cls_id: int = 2, sep_id: int = 3):
    """[CLS] ids [SEP] + zero padding to the longest row, in numpy (independent of export.text.pack)."""
    rows = [[cls_id] + list(r[: max_len - 2]) + [sep_id] for r in ids_rows]
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def keras_outputs(model, ids, mask):
    out = model({"token_ids": ids, "padding_mask": mask}, training=False)
    return {k: np.asarray(v) for k, v in out.items()}


_RUNS = {}


def shared_run(tmp_path_factory) -> str:
    """One trained run folder per test session (training costs ~15 s on 2 cores)."""
    if "run" not in _RUNS:
        _RUNS["run"] = make_run(str(tmp_path_factory.mktemp("export_run")))
    return _RUNS["run"]


def load_student(run: str):
    return keras.saving.load_model(os.path.join(run, "student", "student.keras"), compile=False)


def tokenize_reference(texts, max_len: int):
    """Ids of ``texts`` from the data pipeline's tokenizer (what training saw), packed in numpy."""
    rows = WordPieceTokenizer(VOCAB).tokenize(tf.constant(texts)).to_list()
    return reference_pack(rows, max_len)


NEW_SENTENCES = ["The small cat sat near the house at night.", "A big dog ran near the park today!",
                 "Ünïcödé àccents: the OLD man walked near the road, today."]
