"""Inference latency of the exported teacher and student: SavedModel and the student's TFLite variants.

    python benchmarks/inference.py [--size small|base|quick] [--calls 20] [--logits]

Builds a randomly initialised teacher (``small``: 4 layers / hidden 256 / vocab 30522, the size of
STACK-NOTES' training figures; ``base``: BERT-base, 12 layers / 768; ``quick``: a smoke-test size) and
its half-depth student (every other teacher layer), exports both with keras_distil.export's own writers
(SavedModel ``serving_default``; the student also as TFLite fp32 / fp16 / dynamic / int8), and times
``serving_default`` (TF) and the LiteRT signature runner at batch 1 and 32, sequence length 128:
median seconds per call after warm-up. Latency does not depend on the weights, so random weights and a
random-id int8 calibration set are enough here (accuracy is the export's own check, on real models).

Prints a table and writes benchmarks/results/inference.json; the teacher/student ratio is printed next to
the DistilBERT paper's claim (60 % faster with half the layers, i.e. a ratio of about 1.6).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from common import machine_info, print_table, write_json  # noqa: E402

from keras_distil import build_mlm_model, student_from_teacher  # noqa: E402
from keras_distil.evaluation.timing import interleaved_median_seconds  # noqa: E402
from keras_distil.export import saved_model, tflite  # noqa: E402
from keras_distil.export.calibration import representative_dataset  # noqa: E402

SIZES = {
    "quick": dict(vocab_size=2000, hidden_size=64, num_layers=4, num_heads=2, intermediate_size=128),
    "small": dict(vocab_size=30522, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "base": dict(vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
}
PAPER_RATIO = 1.6  # "60 % faster": BERT-base 668 s vs DistilBERT 410 s on STS-B, CPU (Sanh et al. 2019, table 3)
SEQ_LEN = 128
BATCHES = (1, 32)


def folder_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, n)) for r, _, names in os.walk(path) for n in names)


def inputs(batch: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(1000 % vocab, vocab, (batch, SEQ_LEN)).astype(np.int32)
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def time_saved_models(folders: dict[str, str], vocab: int, calls: int) -> dict[str, dict[int, float]]:
    """Median seconds per call of each SavedModel, the models' calls interleaved round by round so that
    load from other processes on a shared machine falls on teacher and student alike."""
    import tensorflow as tf

    fns = {name: tf.saved_model.load(path).signatures[saved_model.IDS_SIGNATURE] for name, path in folders.items()}
    out = {name: {} for name in folders}
    for b in BATCHES:
        x = {k: tf.constant(v) for k, v in inputs(b, vocab).items()}
        medians = interleaved_median_seconds({name: (lambda fn=fn, x=x: fn(**x)["hidden"].numpy())
                                              for name, fn in fns.items()}, calls, warmup=2)
        for name, seconds in medians.items():
            out[name][b] = seconds
    return out


def time_tflite(path: str, vocab: int, calls: int) -> dict[int, float]:
    model = tflite.LiteModel(path, num_threads=os.cpu_count())
    out = {}
    for b in BATCHES:
        x = inputs(b, vocab)
        out[b] = interleaved_median_seconds({"tflite": lambda x=x: model(**x)}, calls, warmup=2)["tflite"]
    return out


def row(name: str, params: int | None, size: int, times: dict[int, float]) -> dict:
    return {"model": name, "params_m": params / 1e6 if params else None, "size_mb": size / 2**20,
            "b1_ms": times[1] * 1e3, "b32_ms": times[32] * 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per measurement (median)")
    parser.add_argument("--logits", action="store_true", help="export the MLM logits too (tied embeddings)")
    parser.add_argument("--quantize", nargs="+", default=list(tflite.QUANTIZATIONS), choices=tflite.QUANTIZATIONS)
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)

    cfg = dict(SIZES[args.size], max_position_embeddings=512, dropout=0.0)
    teacher = build_mlm_model(cfg)
    student = student_from_teacher(teacher)
    vocab = cfg["vocab_size"]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        models = {"teacher": teacher, "student": student}
        folders = {name: os.path.join(work, name) for name in models}
        for name, model in models.items():
            saved_model.write_archive(folders[name], model, args.logits)
        times = time_saved_models(folders, vocab, args.calls)
        for name, model in models.items():
            rows.append(row(f"{name} SavedModel", model.count_params(), folder_size(folders[name]), times[name]))
        print("timed the SavedModels", flush=True)
        calibration = [inputs(1, vocab, seed)["token_ids"][0] for seed in range(1, 33)]
        for q in args.quantize:
            path = os.path.join(work, f"student_{q}.tflite")
            with open(path, "wb") as f:
                f.write(tflite.convert(folders["student"], saved_model.IDS_SIGNATURE, q,
                                       representative_dataset(calibration)))
            rows.append(row(f"student TFLite {q}", student.count_params(), os.path.getsize(path), time_tflite(path, vocab, args.calls)))
            print(f"timed student TFLite {q}", flush=True)

    teacher_row, student_row = rows[0], rows[1]
    ratios = {f"b{b}": teacher_row[f"b{b}_ms"] / student_row[f"b{b}_ms"] for b in BATCHES}
    print(f"\nsize={args.size} ({cfg['num_layers']} -> {cfg['num_layers'] // 2} layers, hidden {cfg['hidden_size']}, "
          f"vocab {vocab}), seq {SEQ_LEN}, logits={'yes' if args.logits else 'no'}, "
          f"{os.cpu_count()} CPUs, median of {args.calls} calls")
    print_table(rows, [("model", "model", "s"), ("params_m", "params (M)", ".2f"), ("size_mb", "size (MiB)", ".1f"),
                       ("b1_ms", "batch 1 (ms)", ".2f"), ("b32_ms", "batch 32 (ms)", ".1f")])
    print(f"\nteacher/student SavedModel latency: batch 1 {ratios['b1']:.2f}x, batch 32 {ratios['b32']:.2f}x "
          f"(paper: {PAPER_RATIO}x, '60 % faster' at half the layers; the encoder alone would give 2x)")
    print(f"parameters: student/teacher {student_row['params_m'] / teacher_row['params_m']:.2f} "
          "(paper: 0.60 at BERT-base, '40 % smaller')")
    path = write_json(f"inference_{args.size}", {"size": args.size, "config": cfg, "seq_len": SEQ_LEN,
                                                 "logits": args.logits, "calls": args.calls, "rows": rows,
                                                 "teacher_student_ratio": ratios, "paper_ratio": PAPER_RATIO,
                                                 "machine": machine_info()}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
