"""``keras-distil export SRC --format saved_model|tflite|keras_hub|hf|sentence_transformers ...``: the parser
(the work: :func:`keras_distil.cli.export.run_export`)."""

from __future__ import annotations

import argparse

from keras_distil_cli import Command

# Copies of keras_distil.export.api.FORMATS, keras_distil.export.tflite.QUANTIZATIONS and
# keras_distil.export.verify.MIN_TOP1 / MIN_COSINE: reading them would import TensorFlow.
FORMATS = ("saved_model", "tflite", "keras_hub", "hf", "sentence_transformers")
QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")
MIN_TOP1 = 0.99
MIN_COSINE = 0.99


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "export", help="export a student for serving (SavedModel, TFLite, KerasHub, HF, sentence-transformers), "
                       "verified after writing",
        description="Export the student of SRC (a run folder, a .keras file, a KerasHub preset or a Hugging Face "
                    "folder). The export is written to a temporary folder, reloaded and compared with the Keras "
                    "model on a fixed batch, and renamed into place only if the check passes.")
    p.add_argument("src", help="run folder or student file/folder")
    p.add_argument("--format", default="saved_model", choices=FORMATS,
                   help="default: saved_model (with an 'embed' text -> sentence-embedding signature when the "
                        "model has a sentence pooling); sentence_transformers needs that pooling")
    p.add_argument("--quantize", nargs="+", default=["none"], choices=QUANTIZATIONS, metavar="Q",
                   help=f"TFLite only; one or more of {', '.join(QUANTIZATIONS)} (default: none = float32)")
    p.add_argument("--name", help="model name (default: the run folder's or file's name)")
    p.add_argument("--version", help="version folder, an integer (default: the next free one)")
    p.add_argument("--out", default="saved_models", help="base folder (default: saved_models/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    p.add_argument("--logits", action="store_true", help="also output the MLM logits [B, L, vocab]")
    p.add_argument("--no-text", dest="text", action="store_false",
                   help="no raw-text signature / text-input TFLite model (ids only)")
    p.add_argument("--vocab", help="vocab.txt for the text signature (default: the source's)")
    p.add_argument("--cased", action="store_true", help="with --vocab: the vocabulary is cased (no lower-casing)")
    p.add_argument("--max-len", type=int, help="tokens per text, [CLS] and [SEP] included (default: the run's "
                                               "data.max_len, else the model's max positions)")
    p.add_argument("--calibration", nargs="+", metavar="SOURCE",
                   help="corpus for the int8 representative dataset and the verification batch: text files, "
                        "globs or a prepared shard folder (default: the run's corpus when recorded)")
    p.add_argument("--calibration-size", type=int, default=200, help="sequences used to calibrate int8")
    p.add_argument("--min-top1", type=float, default=MIN_TOP1,
                   help="quantised exports: least masked-token top-1 agreement with the Keras model (default 0.99)")
    p.add_argument("--min-cosine", type=float, default=MIN_COSINE,
                   help="quantised exports: least mean token-embedding cosine (default 0.99)")
    p.set_defaults(func=Command("keras_distil.cli.export", "run_export"))
    return p
