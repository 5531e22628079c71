"""``keras-distil COMMAND ...``: the commands' work, one module per command (``run_<name>(args)``).

The argument parsing lives in :mod:`keras_distil_cli`, outside this package so that ``keras-distil --help``
imports no TensorFlow; each parser's ``func`` names its ``run_<name>`` here, imported only to run it. The
names below are that package's, kept here for ``python -m keras_distil`` and for callers of this module:
:func:`main` (the console script), :data:`COMMANDS`, :func:`build_parser`, :func:`setup_logging`,
:func:`report_error` and :func:`command_main` (``python -m keras_distil.cli.evaluate evaluate ...``). Any
:class:`~keras_distil.errors.KerasDistilError` ends the command with one line on stderr and exit status 2,
never a traceback.
"""

from keras_distil_cli import (
    COMMANDS,
    Command,
    available_commands,
    build_parser,
    command_main,
    main,
    report_error,
    setup_logging,
)

__all__ = ["COMMANDS", "Command", "available_commands", "build_parser", "command_main", "main", "report_error",
           "setup_logging"]
