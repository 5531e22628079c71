"""The one error type of the export package, and the staging of an export folder.

Every export is written to a temporary sibling of its destination, verified there, and renamed into
place only when the check passed: a reader (TF Serving polls its model folder) never sees a
half-written version, and a failed check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os

from keras_distil import files
from keras_distil.errors import KerasDistilError


class ExportError(KerasDistilError, RuntimeError):
    """An export cannot be written or did not reproduce the model; the message names the path."""


def check_destination(folder: str, overwrite: bool) -> str:
    """Refuse early (before minutes of conversion) a destination that exists or cannot be written."""
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder):
        if not os.path.isdir(folder):
            raise ExportError(f"{folder}: exists and is not a folder")
        if os.listdir(folder) and not overwrite:
            raise ExportError(f"{folder}: this version already exists; pass --overwrite to replace it, "
                              "or choose another --version")
    ancestor, problem = files.unwritable_ancestor(os.path.dirname(folder))  # it must let us create the rest
    if problem == "not a folder":
        raise ExportError(f"{folder}: cannot be created: {ancestor} is not a folder")
    if problem == "not writable":
        raise ExportError(f"{folder}: cannot be written: no write permission on {ancestor}")
    return folder


def staged_folder(folder: str, overwrite: bool = False) -> contextlib.AbstractContextManager[str]:
    """Yield an empty temporary sibling of ``folder``; on normal exit it replaces ``folder``.

    On any exception the temporary folder is removed and ``folder`` keeps its old contents (if any).
    The destination is checked first (:func:`check_destination`); the swap is :func:`keras_distil.files.staged_folder`.
    """
    return files.staged_folder(check_destination(folder, overwrite), overwrite, error=ExportError)
