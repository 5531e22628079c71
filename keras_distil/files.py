"""Atomic writes: a file or a whole folder appears complete or not at all.

Why: a run can be killed at any moment (a pre-empted machine, Ctrl-C, a full disk), and its outputs are
read by other processes (TF Serving polls its model folder; a resumed run reads its last manifest). So
nothing is written in place: a file is written to a temporary name beside its destination and renamed
over it; a folder (an export, a checkpoint) is built in a temporary sibling and swapped in. A rename
within one folder is atomic, so a reader sees the old version or the new one, never a half-written one,
and a crash leaves the old version intact (plus, at worst, a hidden temporary next to it).

This module is the lowest layer of the package: it imports nothing from it but the error base class
(:mod:`keras_distil.errors`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from keras_distil.errors import KerasDistilError


class DestinationError(KerasDistilError, OSError):
    """A destination cannot be written as asked; the message names it."""


def temporary_name(path: str | os.PathLike) -> str:
    """The name ``path`` is written under before its rename into place (same folder: same file system)."""
    return f"{os.fspath(path)}.tmp-{os.getpid()}"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place.

    On an error the temporary file is removed and ``path`` keeps its old contents (if any).
    """
    path = os.fspath(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as JSON (indented, keys sorted, a final newline: stable diffs), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, overwrite: bool = False,
                  error: type[Exception] = DestinationError) -> Iterator[str]:
    """Yield an empty temporary sibling of ``folder`` to write into; on normal exit it replaces ``folder``.

    The swap renames the old folder away, renames the new one in and only then removes the old one, so
    ``folder`` holds the old version or the new one, never a mix (it is absent only for the instant
    between the two renames). On any exception in the ``with`` body, or if the swap fails, the temporary
    folder is removed and ``folder`` keeps its old contents (if any).

    ``overwrite=False`` refuses a ``folder`` that exists and is not empty (an empty one is replaced).
    Refusals and a destination that cannot be created raise ``error`` (the caller's own error type)
    with a message that names ``folder``.
    """
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise error(f"{folder}: exists and is not a folder")
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise error(f"{folder}: folder exists and is not empty (pass overwrite=True to replace it)")
    parent = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=parent)
    except OSError as e:
        raise error(f"{folder}: cannot be written ({e.strerror or e})") from None
    try:
        yield tmp
        old = None
        if os.path.exists(folder):
            old = f"{tmp}.old"  # unique, as tmp is
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except OSError:
            if old:
                os.replace(old, folder)  # put the old version back
            raise
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
