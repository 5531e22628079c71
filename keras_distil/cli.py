"""``keras-distil COMMAND ...``: a thin argparse layer over the owners' command modules.

Each command lives in the module that owns it, registered by ``add_<name>_parser(subparsers)`` (which
sets ``func``). Only the chosen command's module is imported; the others are listed by name and help
line (from the table below) without importing them. A command whose module is absent is not listed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

# name -> (module, registering function, one-line help for the listing)
COMMANDS = {
    "prepare": ("keras_distil.data.prepare", "register_cli", "tokenize a corpus into TFRecord shards"),
    "pretrain": ("keras_distil.training.cli", "add_pretrain_parser",
                 "train a BERT from scratch with the masked-LM loss (a teacher, or a baseline student)"),
    "distill": ("keras_distil.training.cli", "add_distill_parser",
                "distil a teacher into a half-depth student (DistilBERT)"),
    "convert": ("keras_distil.models.checkpoints", "add_convert_parser",
                "convert a checkpoint between Hugging Face, KerasHub and sentence-transformers formats"),
    "export": ("keras_distil.export.cli", "add_export_parser",
               "export a student: SavedModel (TF Serving), TFLite/LiteRT, KerasHub, Hugging Face, "
               "sentence-transformers"),
    "evaluate": ("keras_distil.evaluate", "add_evaluate_parser",
                 "held-out masked-LM accuracy, teacher agreement, sentence-embedding similarity"),
    "finetune": ("keras_distil.finetune", "add_finetune_parser",
                 "text classification on a TSV/CSV or TFDS dataset; task-specific distillation"),
    "quickstart": ("keras_distil.quickstart.cli", "add_quickstart_parser",
                   "offline end-to-end demo: corpus, vocab, teacher, distilled student, baseline, report"),
}


def available_commands() -> list[str]:
    return [name for name, (module, _, _) in COMMANDS.items() if importlib.util.find_spec(module) is not None]


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``selected`` (a command name) gets its real sub-parser, imported from its module."""
    parser = argparse.ArgumentParser(
        prog="keras-distil", description="Distil a BERT teacher into a smaller student the DistilBERT way "
                                         "(TensorFlow, Keras 3, KerasHub). `keras-distil COMMAND --help` for a command.")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="Python logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in available_commands():
        module, function, help_line = COMMANDS[name]
        if name == selected:
            getattr(importlib.import_module(module), function)(subparsers)
        else:
            subparsers.add_parser(name, help=help_line, add_help=False)
    return parser


def _error_types() -> tuple:
    from keras_distil.config import ConfigError

    types = [ConfigError]
    for module, name in (("keras_distil.data.base", "DataError"), ("keras_distil.models.checkpoint_io",
                                                                   "CheckpointError"),
                         ("keras_distil.training.loop", "TrainingDiverged"), ("keras_distil.export.errors",
                                                                              "ExportError")):
        try:
            types.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected is not None and selected not in COMMANDS:
        selected = None
    # `--log-level X` before the command: skip its value when looking for the command.
    if "--log-level" in argv and selected is not None and argv.index("--log-level") + 1 == argv.index(selected):
        rest = argv[argv.index(selected) + 1:]
        selected = next((a for a in rest if a in COMMANDS), None)
    args = build_parser(selected).parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # checkpoint sharding chatter
    try:
        return int(args.func(args) or 0)
    except _error_types() as e:
        print(f"keras-distil {args.command}: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
