"""The ``stdlib`` source: docstrings of Python's standard library (modules, classes, functions), read by
parsing the ``.py`` files with :mod:`ast`, so no module is imported and nothing runs; tests and
``site-packages`` are skipped."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

from keras_distil.quickstart.corpus.text import read_text_file, walk_files

STDLIB_SKIP_DIRS = ("site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
                    "lib2to3", "ensurepip", "turtledemo", "config-3", "lib-dynload")


def docstrings(source: str) -> Iterator[str]:
    """Docstrings of a module's source (module, classes, functions), in source order, never executed."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc


def stdlib_texts(root: str) -> Iterator[str]:
    for path in walk_files(root, STDLIB_SKIP_DIRS):
        if path.endswith(".py") and not os.path.basename(path).startswith("test_"):
            text = read_text_file(path, limit=1 << 30)
            if text is not None:
                yield from docstrings(text)
