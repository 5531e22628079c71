"""``keras-distil COMMAND ...``: the command line, a thin argparse layer over the library.

Every argparse parser and command function of the package lives here, one module per command, each
registered by ``add_<name>_parser(subparsers)`` (which sets ``func``). Only the chosen command's module is
imported; the others are listed by name and help line (from the table below) without importing them. A
command whose module is absent is not listed. Any :class:`~keras_distil.errors.KerasDistilError` ends the
command with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from keras_distil.errors import KerasDistilError

# name -> (module, registering function, one-line help for the listing)
COMMANDS = {
    "prepare": ("keras_distil.cli.prepare", "add_prepare_parser", "tokenize a corpus into TFRecord shards"),
    "pretrain": ("keras_distil.cli.distill", "add_pretrain_parser",
                 "train a BERT from scratch with the masked-LM loss (a teacher, or a baseline student)"),
    "distill": ("keras_distil.cli.distill", "add_distill_parser",
                "distil a teacher into a smaller student (DistilBERT, TinyBERT, MiniLM)"),
    "convert": ("keras_distil.cli.convert", "add_convert_parser",
                "convert a checkpoint between Hugging Face, KerasHub and sentence-transformers formats"),
    "export": ("keras_distil.cli.export", "add_export_parser",
               "export a student: SavedModel (TF Serving), TFLite/LiteRT, KerasHub, Hugging Face, "
               "sentence-transformers"),
    "evaluate": ("keras_distil.cli.evaluate", "add_evaluate_parser",
                 "held-out masked-LM accuracy, teacher agreement, sentence-embedding similarity"),
    "finetune": ("keras_distil.cli.finetune", "add_finetune_parser",
                 "text classification on a TSV/CSV or TFDS dataset; task-specific distillation"),
    "recipes": ("keras_distil.cli.recipes", "add_recipes_parser", "list the shipped recipes (--recipe NAME)"),
    "quickstart": ("keras_distil.cli.quickstart", "add_quickstart_parser",
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


def setup_logging(level: str = "INFO", quiet_absl: bool = True) -> None:
    """The commands' log format on stderr; ``quiet_absl`` silences absl's checkpoint sharding chatter."""
    logging.basicConfig(level=getattr(logging, level), format="%(levelname)s %(name)s: %(message)s")
    if quiet_absl:
        logging.getLogger("absl").setLevel(logging.WARNING)


def report_error(command: str, error: BaseException, file=None) -> int:
    """Print ``error`` as the one line ``keras-distil COMMAND: error: MESSAGE`` (stderr by default); returns 2,
    the exit status of a command that failed on its input."""
    print(f"keras-distil {command}: error: {error}", file=sys.stderr if file is None else file, flush=True)
    return 2


def command_main(add_parser, argv: list[str] | None = None, *, logs: bool = True) -> int:
    """Run one command alone, its name first in ``argv`` (``python -m keras_distil.cli.evaluate evaluate ...``).

    Unlike :func:`main`, errors propagate as exceptions. ``logs``: set up INFO logging (absl not silenced).
    """
    parser = argparse.ArgumentParser(prog="keras-distil")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if logs:
        setup_logging("INFO", quiet_absl=False)
    return args.func(args)


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
    setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KerasDistilError as e:
        return report_error(args.command, e)

