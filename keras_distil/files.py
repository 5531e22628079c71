"""File I/O at the bottom of the package: atomic writes, JSON reading, atomic ``.keras`` saves.

Atomic writes: a file or a whole folder appears complete or not at all.

Why: a run can be killed at any moment (a pre-empted machine, Ctrl-C, a full disk), and its outputs are
read by other processes (TF Serving polls its model folder; a resumed run reads its last manifest). So
nothing is written in place: a file is written to a temporary name beside its destination and renamed
over it; a folder (an export, a checkpoint) is built in a temporary sibling and swapped in. A rename
within one folder is atomic, so a reader sees the old version or the new one, never a half-written one,
and a crash leaves the old version intact (plus, at worst, a hidden temporary next to it).

Reading: :func:`read_json` is the one JSON reader of the package; every error it raises names the file,
as the caller's own error type (``error=``), so a bad recipe is a ConfigError and a bad checkpoint a
CheckpointError with the same wording. :func:`try_read_json` is its lenient form for caches and probes.

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


def check_output(path: str | os.PathLike, what: str, *, is_file: bool = False) -> str:
    """Check, before any work, that ``path`` can be written: a folder (``is_file=False``) or a file; returns it.

    The path itself, if it exists, must be a folder (a file for ``is_file``); its nearest existing ancestor
    must be a writable folder (missing folders in between are created when writing). Raises
    :class:`DestinationError` naming ``what`` (e.g. ``--out``) and the path.

    Args:
      path: the output folder or file.
      what: the flag or knob that gave it, for the message.
      is_file: the output is a file (a report) rather than a folder.

    Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_output(os.path.join(folder, "runs", "a"), "--out") == os.path.join(folder, "runs", "a")
    True
    """
    path = os.fspath(path)
    full = os.path.abspath(path)
    if os.path.exists(full):
        if is_file and os.path.isdir(full):
            raise DestinationError(f"{what} {path}: a folder, not a file")
        if not is_file and not os.path.isdir(full):
            raise DestinationError(f"{what} {path}: a file, not a folder")
    ancestor, problem = unwritable_ancestor(os.path.dirname(full) if is_file or not os.path.exists(full) else full)
    if problem == "not a folder":
        raise DestinationError(f"{what} {path}: {ancestor} is a file, not a folder")
    if problem == "not writable":
        raise DestinationError(f"{what} {path}: {ancestor} is not writable")
    return path


def unwritable_ancestor(folder: str) -> tuple[str, str | None]:
    """``(ancestor, problem)``: the nearest existing one of ``folder`` and its ancestors, and why the folders
    missing below it could not be created there: ``"not a folder"``, ``"not writable"``, or None (they can)."""
    ancestor = os.path.abspath(folder)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return ancestor, "not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return ancestor, "not writable"
    return ancestor, None


class FileReadError(KerasDistilError, ValueError):
    """A file cannot be read as asked (missing, unreadable, not valid JSON, not the expected shape).

    The default error of :func:`read_json`; callers with an error type of their own pass it instead."""


_JSON_KINDS = {dict: "object", list: "list"}


def read_json(path: str | os.PathLike, what: str | None = None, *, expect: type | None = None,
              error: type[Exception] = FileReadError) -> Any:
    """The JSON value in the file at ``path``; every error names the file.

    Args:
      path: the file (UTF-8 JSON).
      what: what the file was expected to be (e.g. "the manifest of a prepared corpus"); said in errors.
      expect: ``dict`` or ``list``: the type the top-level value must have; None: any JSON value.
      error: the exception type raised, called with the message: the caller's own error (ConfigError,
        DataError, CheckpointError, ...); default :class:`FileReadError`.

    Raises ``error`` with one of ``PATH: no such file``, ``PATH: cannot be read: REASON``,
    ``PATH: not valid JSON: REASON`` or ``PATH: expected a JSON object at the top level, got list``
    (``what``, when given, follows the first words in parentheses).

    Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.json")
    >>> with open(path, "w") as f:
    ...     json.dump({"a": 1}, f)
    >>> read_json(path, expect=dict)
    {'a': 1}
    >>> try:
    ...     read_json(path, "a list of counts", expect=list)
    ... except FileReadError as e:
    ...     print(str(e).split(": ", 1)[1])
    expected a JSON list at the top level (a list of counts), got dict
    """
    path = os.fspath(path)
    label = f" ({what})" if what else ""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: no such file{label}") from None
    except OSError as e:  # a folder, no permission, an I/O error
        raise error(f"{path}: cannot be read{label}: {e.strerror or e}") from None
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
        raise error(f"{path}: not valid JSON{label}: {e}") from None
    if expect is not None and not isinstance(data, expect):
        raise error(f"{path}: expected a JSON {_JSON_KINDS.get(expect, expect.__name__)} at the top level{label}, "
                    f"got {type(data).__name__}")
    return data


def try_read_json(path: str | os.PathLike, expect: type | None = dict) -> Any:
    """:func:`read_json` for caches and probes: None where it would raise (missing, unreadable, not valid
    JSON, not an ``expect``), never an error.

    Example:
    >>> try_read_json("/nonexistent/manifest.json") is None
    True
    """
    try:
        return read_json(path, expect=expect)
    except FileReadError:
        return None


def temporary_name(path: str | os.PathLike) -> str:
    """The name ``path`` is written under before its rename into place (same folder: same file system)."""
    return f"{os.fspath(path)}.tmp-{os.getpid()}"


@contextlib.contextmanager
def _renamed_into_place(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary name beside ``path`` (ending in ``suffix``) to write; on normal exit it is renamed
    over ``path``, on any error it is removed and ``path`` keeps its old contents (if any)."""
    tmp = f"{temporary_name(path)}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place.

    On an error the temporary file is removed and ``path`` keeps its old contents (if any).
    """
    with _renamed_into_place(os.fspath(path)) as tmp, open(tmp, "wb") as f:
        f.write(data)


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


def save_model_atomically(model, path: str | os.PathLike) -> str:
    """``model.save`` to a temporary ``.keras`` name beside ``path``, then renamed over ``path``.

    A reader never sees a half-written ``.keras`` file, and a failed save leaves the old file (if any) and
    no temporary behind. Keras wants the ``.keras`` suffix on the name it writes, hence the temporary's.

    Args:
      model: a Keras model (anything with ``save(path)``).
      path: the destination, ending in ``.keras``.

    Returns:
      ``path``.

    Example:
    >>> import keras, os, tempfile
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> path = save_model_atomically(model, os.path.join(tempfile.mkdtemp(), "m.keras"))
    >>> os.listdir(os.path.dirname(path))
    ['m.keras']
    """
    path = os.fspath(path)
    with _renamed_into_place(path, ".keras") as tmp:
        model.save(tmp)
    return path


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
    ancestor, problem = unwritable_ancestor(parent)
    if problem == "not a folder":  # else makedirs would say "File exists", which hides the reason
        raise error(f"{folder}: cannot be written: {ancestor} is a file, not a folder")
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
