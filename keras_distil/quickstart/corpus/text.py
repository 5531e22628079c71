"""Text of the quickstart corpus: files read safely (gzip, binary, non-UTF-8, symlinks) and cut into
paragraphs of prose (code-like lines dropped, see :func:`is_code_like`)."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable, Iterator

MAX_FILE_BYTES = 2 << 20  # read at most this much of one file (a few changelogs are tens of MB)
MIN_LETTER_RATIO = 0.6  # a line or paragraph with fewer letters among its non-space characters is code-like
MAX_URL_RATIO = 0.3  # a line more than this much URL (changelogs' commit links) is markup, not prose
URL = re.compile(r"\w+://\S+")


# ---- cleaning ----------------------------------------------------------------------------------

_NOT_LETTERS = re.compile(r"[\W\d_]+")


def letter_ratio(text: str) -> float:
    """Letters among the non-space characters of ``text`` (0 for blank text). (String operations in C:
    twice as fast as a per-character ``isalpha`` loop, which was the gatherer's hot spot.)"""
    compact = "".join(text.split())
    return len(_NOT_LETTERS.sub("", compact)) / len(compact) if compact else 0.0


def is_code_like(line: str) -> bool:
    """A doctest line, a code fence, a shell prompt, a rule (``----``), a line of mostly symbols and
    digits, or one mostly made of URLs. Lines of one or two words get a lower bar (a third letters):
    wrapped prose puts ``bar(1),`` or ``(see below).`` alone on a line."""
    stripped = line.strip()
    min_ratio = MIN_LETTER_RATIO if len(stripped.split()) > 2 else MIN_LETTER_RATIO / 2
    if stripped.startswith((">>>", "...", "```", "$ ", "% ")) or letter_ratio(stripped) < min_ratio:
        return True
    return sum(len(url) for url in URL.findall(stripped)) > MAX_URL_RATIO * len(stripped)


def paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated paragraphs of ``text``, whitespace-collapsed, code-like lines removed (a
    code-like line ends the paragraph it is in, so text on both sides is never glued together). A line
    that is only ``.`` is blank (Debian copyright files mark empty lines that way)."""
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped == "." or is_code_like(stripped):
            if current:
                yield " ".join(" ".join(current).split())
            current = []
        else:
            current.append(stripped)
    if current:
        yield " ".join(" ".join(current).split())


def keep_paragraph(paragraph: str, min_words: int) -> bool:
    return len(paragraph.split()) >= min_words and letter_ratio(paragraph) >= MIN_LETTER_RATIO


# ---- reading files -----------------------------------------------------------------------------

def read_text_file(path: str, limit: int = MAX_FILE_BYTES) -> str | None:
    """The UTF-8 text of ``path`` (gunzipped when it ends in .gz), at most ``limit`` bytes of it; None
    for a file that is binary (a NUL byte), not UTF-8, or unreadable."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
    except (OSError, EOFError):
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start >= len(data) - 4:  # cut inside a multi-byte character at the limit
            return data[: e.start].decode("utf-8", errors="strict") if e.start > 0 else None
        return None


def walk_files(root: str, skip_dirs: Iterable[str] = ()) -> list[str]:
    """Regular files under ``root``, sorted, each real file once (man pages are often symlinked)."""
    skip = set(skip_dirs)
    seen, files = set(), []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            real = os.path.realpath(path)
            if real in seen or not os.path.isfile(real):
                continue
            seen.add(real)
            files.append(path)
    return files
