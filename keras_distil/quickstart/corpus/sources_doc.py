"""The ``doc`` source: plain-text files under ``<doc_dir>`` (README, copyright, changelog, NEWS, AUTHORS,
... and ``*.txt``/``*.md``/``*.rst``, gzip'd or not); HTML, binary, non-UTF-8 and tiny files are skipped."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from keras_distil.quickstart.corpus.text import read_text_file, walk_files

MIN_FILE_BYTES = 256  # /usr/share/doc files smaller than this are stubs ("see /usr/share/common-licenses")
DOC_NAMES = ("readme", "copyright", "changelog", "changes", "news", "authors", "thanks", "todo", "faq",
             "history", "credits", "notice", "intro", "copying", "license")
DOC_SUFFIXES = (".txt", ".md", ".rst")
NOT_TEXT_SUFFIXES = (".html", ".htm", ".xml", ".xhtml", ".css", ".js", ".json", ".py", ".c", ".h", ".pl",
                     ".sh", ".svg", ".pdf", ".png", ".jpg", ".gif", ".yaml", ".yml", ".el", ".patch", ".diff")


def is_doc_text_name(path: str) -> bool:
    name = os.path.basename(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(NOT_TEXT_SUFFIXES):
        return False
    return name.startswith(DOC_NAMES) or name.endswith(DOC_SUFFIXES)


def looks_like_html(text: str) -> bool:
    head = text[:2048].lower()
    return "<html" in head or "<!doctype" in head


DEB822_FIELD = re.compile(r"^[A-Z][A-Za-z-]*:(\s|$)")


def strip_deb822_fields(text: str) -> str:
    """Debian copyright files: field lines (``Files: *``, ``License: GPL-2+``) become paragraph breaks, so
    the licence text in their continuation lines is not glued to them."""
    return "\n".join("" if DEB822_FIELD.match(line) else line for line in text.splitlines())


def doc_texts(root: str) -> Iterator[str]:
    if not os.path.isdir(root):
        return
    for path in walk_files(root):
        if not is_doc_text_name(path):
            continue
        text = read_text_file(path)
        if text is None or len(text.encode("utf-8")) < MIN_FILE_BYTES or looks_like_html(text):
            continue
        yield strip_deb822_fields(text) if os.path.basename(path).startswith("copyright") else text
