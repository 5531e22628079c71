"""``keras-distil evaluate --model [NAME=]PATH [--teacher [NAME=]PATH] --data PATH ...``: the parser (the work:
:func:`keras_distil.cli.evaluate.run_evaluate`)."""

from __future__ import annotations

import argparse

from keras_distil_cli import Command

# keras_distil.evaluation.loop.EVAL_SEED and MAX_TEXTS (copies: reading them would import TensorFlow)
EVAL_SEED = 1234
MAX_TEXTS = 2000


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate --model PATH [--teacher PATH] --data PATH ...`` on argparse ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate", help="masked-token accuracy / perplexity on held-out text, teacher-student agreement, "
                         "sentence-embedding agreement",
        description="Evaluate masked-LM and sentence-embedding models on held-out text. Models are Hugging Face "
                    "folders, KerasHub presets or .keras files; give several --model NAME=PATH to compare. "
                    "Masked-LM figures use deterministic masks; models without an MLM head get '-' there. Against "
                    "the teacher, on the clean text with the teacher's pooling: token and sentence cosines, the "
                    "Spearman correlation of all pairwise similarities and nearest-neighbour agreement. A "
                    "reference row, the untrained student copied from teacher layers, shows what distillation "
                    "added.")
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                        help="model to evaluate; repeatable")
    parser.add_argument("--teacher", metavar="[NAME=]PATH", help="teacher: the others are compared with it")
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="held-out text (one document per line), a prepared folder or tfds:NAME; repeatable")
    parser.add_argument("--vocab", metavar="VOCAB.txt",
                        help="WordPiece vocabulary (default: the teacher's, else the model's)")
    parser.add_argument("--no-lowercase", action="store_true", help="with --vocab: a cased vocabulary")
    parser.add_argument("--max-len", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--min-len", type=int, default=None,
                        help="drop shorter sequences (default: 12 when a model has an MLM head, else 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per batch (default 32)")
    parser.add_argument("--max-batches", type=int, default=None, help="evaluate at most this many batches")
    parser.add_argument("--max-texts", type=_non_negative, default=MAX_TEXTS,
                        help=f"texts of the pairwise similarity figures (Spearman, neighbours; an N x N matrix; "
                             f"default {MAX_TEXTS}; 0: off)")
    parser.add_argument("--copied-layers", metavar="0,2,4|auto|none", default=None,
                        help="the reference row, the untrained student copying these teacher layers; default "
                             "(auto): when a model has the teacher's width and fewer layers, its run's "
                             "distill.student_layers, else every other layer, else evenly spaced; none: no row")
    parser.add_argument("--latency-runs", type=int, default=10, help="timed forwards per model (0: no timing)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help=f"masking seed (default {EVAL_SEED})")
    parser.add_argument("--out", metavar="REPORT.json", help="also write the report here (atomically)")
    parser.set_defaults(func=Command("keras_distil.cli.evaluate", "run_evaluate"))
    return parser
