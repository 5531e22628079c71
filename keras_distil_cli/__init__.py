"""``keras-distil COMMAND ...``: the command line's argument parsing, kept apart from the library.

Why a package beside ``keras_distil`` rather than in it: importing anything under ``keras_distil`` imports
TensorFlow (the package's ``__init__`` registers its Keras classes for ``keras.saving.load_model``), about
5 s. This package uses argparse and the standard library only, so ``keras-distil --help`` and
``keras-distil COMMAND --help`` answer at once; the library is imported only to run the chosen command:
each sub-parser's ``func`` is a :class:`Command` naming the function of :mod:`keras_distil.cli` that does
the work. One module here per command registers its sub-parser (``add_<name>_parser(subparsers)``); only
the chosen command's is imported, the others are listed by name and help line from :data:`COMMANDS`.

Quiet by default: before the library is imported, :func:`main` sets TensorFlow's native log level and
holds back the native start-up lines (oneDNN, CUDA drivers, cuInit: :func:`native_startup_filtered`),
unless ``--log-level DEBUG``; :func:`setup_logging` prints each Python log line once. Any
:class:`~keras_distil.errors.KerasDistilError` ends the command with one line on stderr and exit status 2,
never a traceback.

The choices and defaults the parsers show (formats, strategies, quantisations, ...) are copies of the
library's constants, since reading those would import it; ``tests/cli/test_quiet_and_quick.py`` checks
that each copy agrees with the library.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# name -> (parser module, registering function, one-line help for the listing)
COMMANDS = {
    "prepare": ("keras_distil_cli.prepare", "add_prepare_parser", "tokenize a corpus into TFRecord shards"),
    "pretrain": ("keras_distil_cli.distill", "add_pretrain_parser",
                 "train a BERT from scratch with the masked-LM loss (a teacher, or a baseline student)"),
    "distill": ("keras_distil_cli.distill", "add_distill_parser",
                "distil a teacher into a smaller student (DistilBERT, TinyBERT, MiniLM)"),
    "convert": ("keras_distil_cli.convert", "add_convert_parser",
                "convert a checkpoint between Hugging Face, KerasHub and sentence-transformers formats"),
    "export": ("keras_distil_cli.export", "add_export_parser",
               "export a student: SavedModel (TF Serving), TFLite/LiteRT, KerasHub, Hugging Face, "
               "sentence-transformers"),
    "evaluate": ("keras_distil_cli.evaluate", "add_evaluate_parser",
                 "held-out masked-LM accuracy, teacher agreement, sentence-embedding similarity"),
    "finetune": ("keras_distil_cli.finetune", "add_finetune_parser",
                 "text classification on a TSV/CSV or TFDS dataset; task-specific distillation"),
    "recipes": ("keras_distil_cli.recipes", "add_recipes_parser", "list the shipped recipes (--recipe NAME)"),
    "quickstart": ("keras_distil_cli.quickstart", "add_quickstart_parser",
                   "offline end-to-end demo: corpus, vocab, teacher, distilled student, baseline, report"),
}

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

# The environment that quiets TensorFlow's native logging, set (unless already set) before it is imported:
# INFO and WARNING lines of its C++ code (TSL's own level), gRPC's (multi-worker and TPU runs).
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR"}

# A native log line: absl's ("I0102 03:04:05.678901   23414 port.cc:153] ..."; before absl is initialised
# the date is 0000 and the time "00:00:" and the seconds since 1970: "I0000 00:00:1796187916.784265 ...") or
# TSL's older format ("2024-01-02 03:04:05.678901: I tensorflow/core/...cc:42] ...").
_NATIVE_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] )"
                          r"[^\s\]]+:\d+\] ")
# absl writes this before its first line when nothing called absl::InitializeLog (TensorFlow 2.21 does not),
# ignoring every level setting; the second is the continuation of cpu_feature_guard's two-line notice.
_NATIVE_NOTICES = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                   "To enable the following instructions:")


def available_commands() -> list[str]:
    return [name for name, (module, _, _) in COMMANDS.items() if importlib.util.find_spec(module) is not None]


class Command:
    """A sub-parser's ``func``: ``function`` of ``module`` (in :mod:`keras_distil.cli`), imported when the
    command runs, so that building the parser and printing its help import no TensorFlow."""

    def __init__(self, module: str, function: str):
        self.module, self.function = module, function

    def load(self):
        """The function itself (importing its module, hence the library and TensorFlow)."""
        return getattr(importlib.import_module(self.module), self.function)

    def __call__(self, args: argparse.Namespace) -> int:
        return self.load()(args)

    def __repr__(self) -> str:
        return f"Command({self.module}.{self.function})"


def shipped_recipe_names() -> list[str]:
    """The names of the recipes installed with ``keras_distil`` (as ``keras_distil.config.shipped_recipes``),
    read from the package's folder without importing it."""
    spec = importlib.util.find_spec("keras_distil")  # a top-level name: found, not imported
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = os.path.join(location, "recipes")
        if os.path.isdir(folder):
            return sorted(name[:-len(".json")] for name in os.listdir(folder) if name.endswith(".json"))
    return []


def selected_command(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is neither an option nor the value of ``--log-level``
    (``keras-distil --log-level DEBUG recipes``); None when that word is no command (argparse says so)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``selected`` (a command name) gets its real sub-parser, imported from its module."""
    parser = argparse.ArgumentParser(
        prog="keras-distil", description="Distil a BERT teacher into a smaller student the DistilBERT way "
                                         "(TensorFlow, Keras 3, KerasHub). `keras-distil COMMAND --help` for a command.")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="Python logging level (default INFO); DEBUG also shows TensorFlow's native "
                             "start-up lines, held back otherwise")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in available_commands():
        module, function, help_line = COMMANDS[name]
        if name == selected:
            getattr(importlib.import_module(module), function)(subparsers)
        else:
            subparsers.add_parser(name, help=help_line, add_help=False)
    return parser


def quiet_native_logging() -> None:
    """Set :data:`QUIET_ENVIRONMENT` where the environment does not already choose: TensorFlow reads it once,
    when imported, so this must run before that import to have any effect."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def is_native_chatter(line: str) -> bool:
    """A line of TensorFlow's native (C++) logging, or absl's notice about it; not Python output."""
    return bool(_NATIVE_LINE.match(line)) or line.startswith(_NATIVE_NOTICES)


@contextlib.contextmanager
def native_startup_filtered(enabled: bool = True) -> Iterator[None]:
    """Hold back the native log lines written to stderr (file descriptor 2) inside the block.

    Importing TensorFlow and listing its devices print absl-formatted lines (oneDNN, "Could not find cuda
    drivers", "failed call to cuInit") whatever ``TF_CPP_MIN_LOG_LEVEL`` says: they are written before
    absl's logging is initialised (TensorFlow 2.21 never initialises it), when absl ignores every threshold.
    So the block's stderr goes to a temporary file, and on exit every line that is not native chatter
    (:func:`is_native_chatter`: a Python warning, a traceback) is written to stderr, in order.
    ``enabled=False`` (``--log-level DEBUG``), or a stderr without a file descriptor: nothing is held back.
    """
    try:
        saved = os.dup(2) if enabled else None
    except OSError:
        saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        _flush(sys.stderr)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            _flush(sys.stderr)
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not is_native_chatter(line)]
            if kept:
                sys.stderr.write("".join(kept))
                _flush(sys.stderr)


def _flush(stream) -> None:
    with contextlib.suppress(Exception):
        stream.flush()


def import_library(func):
    """Import the library and the command's module, and list TensorFlow's devices (where CUDA logs cuInit's
    result): what prints native start-up lines, done at once inside :func:`main`'s
    :func:`native_startup_filtered`. Returns ``(run, KerasDistilError)``, ``run`` the command's function."""
    import tensorflow as tf

    from keras_distil.errors import KerasDistilError  # the package: its Keras classes registered

    run = func.load() if isinstance(func, Command) else func
    tf.config.list_physical_devices()  # creates no context: strategies and device settings stay free
    return run, KerasDistilError


def setup_logging(level: str = "INFO", quiet_absl: bool = True) -> None:
    """The commands' log format on stderr, each line once; ``quiet_absl`` silences absl's checkpoint
    sharding chatter.

    TensorFlow gives its ``tensorflow`` logger a handler of its own when it is imported before the root
    logger has one (``python -m keras_distil``, a script): its records, which also propagate to the root
    handler, would print twice (``INFO:tensorflow:Assets written`` and ``INFO tensorflow: Assets
    written``). That handler is removed; the root handler prints them in the commands' format.
    """
    logging.basicConfig(level=getattr(logging, level), format=LOG_FORMAT)
    tf_logger = logging.getLogger("tensorflow")
    for handler in list(tf_logger.handlers):
        tf_logger.removeHandler(handler)
    tf_logger.propagate = True
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
    """``keras-distil [--log-level LEVEL] COMMAND ...`` (the console script; ``python -m keras_distil``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(selected_command(argv)).parse_args(argv)
    quiet = args.log_level != "DEBUG"
    if quiet:
        quiet_native_logging()
    setup_logging(args.log_level)
    with native_startup_filtered(quiet):
        run, KerasDistilError = import_library(args.func)
    try:
        return int(run(args) or 0)
    except KerasDistilError as e:
        return report_error(args.command, e)
