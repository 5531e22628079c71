"""An English corpus gathered offline from what every machine has, for ``keras-distil quickstart``.

Three sources, read in this order (each optional):

* ``stdlib``: docstrings of Python's standard library (modules, classes, functions), read by parsing
  the ``.py`` files with :mod:`ast`, so no module is imported and nothing runs; tests and
  ``site-packages`` are skipped;
* ``man``: English man pages (``<man_dir>/man*/``, gzip'd or not), roff markup stripped to plain text;
  no-fill blocks (``.nf``/``.EX``: examples, synopses), tables and macro definitions are dropped;
* ``doc``: plain-text files under ``<doc_dir>`` (README, copyright, changelog, NEWS, AUTHORS, ... and
  ``*.txt``/``*.md``/``*.rst``, gzip'd or not); HTML, binary, non-UTF-8 and tiny files are skipped.

Text is cut into paragraphs (blank lines; a code-like line also ends a paragraph), and a line is
code-like when it is a doctest (``>>>``, ``...``), a fence or mostly symbols (under 60 % letters).
Paragraphs are whitespace-collapsed, NFC-normalised, and kept when they have at least ``min_words``
words and are mostly letters. Each kept paragraph is one document, de-duplicated exactly on its
case-folded NFKC form (licence texts repeat thousands of times under /usr/share/doc).

A document goes to the held-out file when the first 64 bits of the SHA-256 of that form, as a
fraction of 2^64, fall below ``held_out``: a document's side never depends on the rest of the corpus.
Both files are ordered by the same hash, so sources are mixed (a shuffle buffer of 10 000 lines would
otherwise see one source for the first steps) and the order is a function of the content alone:
the same machine gives the same bytes on every run.

Output folder: ``train.txt`` and ``heldout.txt`` (one document per line, UTF-8) and ``manifest.json``
(settings, counts per source, documents / words / bytes / sha256 per file), each written under a
temporary name and renamed; the manifest comes last, so a folder with a manifest is complete.
:func:`gather_corpus` returns the existing manifest without work when the settings match and the
files are intact (the quickstart's stage cache).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import re
import sys
import sysconfig
import time
import unicodedata
from collections.abc import Iterable, Iterator

from keras_distil.data.base import DataError, atomic_write_bytes, atomic_write_json
from keras_distil.io import file_sha256

logger = logging.getLogger("keras_distil.quickstart")

FORMAT = "keras-distil-quickstart-corpus"
SOURCES = ("stdlib", "man", "doc")
TRAIN_FILE, HELDOUT_FILE, MANIFEST_FILE = "train.txt", "heldout.txt", "manifest.json"
MIN_FILE_BYTES = 256  # /usr/share/doc files smaller than this are stubs ("see /usr/share/common-licenses")
MAX_FILE_BYTES = 2 << 20  # read at most this much of one file (a few changelogs are tens of MB)
MIN_LETTER_RATIO = 0.6  # a line or paragraph with fewer letters among its non-space characters is code-like
MAX_URL_RATIO = 0.3  # a line more than this much URL (changelogs' commit links) is markup, not prose
URL = re.compile(r"\w+://\S+")


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """What :func:`gather_corpus` reads and how; the manifest records it, and the cache compares it."""

    sources: tuple[str, ...] = SOURCES
    stdlib_dir: str | None = None  # None: this interpreter's (sysconfig "stdlib")
    man_dir: str = "/usr/share/man"
    doc_dir: str = "/usr/share/doc"
    held_out: float = 0.02  # fraction of documents in heldout.txt (by hash, see the module docstring)
    min_words: int = 8  # shorter paragraphs are dropped (headings, option tags, signatures)
    max_documents: int | None = None  # per source, after de-duplication, in reading order; None: all

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(self.sources))
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise DataError(f"corpus sources: got {list(self.sources)}; accepted: a non-empty subset of {list(SOURCES)}")
        if not 0.0 <= self.held_out < 1.0:
            raise DataError(f"corpus held_out: got {self.held_out!r}; accepted: a fraction in [0, 1)")
        if self.min_words < 1:
            raise DataError(f"corpus min_words: got {self.min_words!r}; accepted: an integer >= 1")
        if self.max_documents is not None and self.max_documents < 1:
            raise DataError(f"corpus max_documents: got {self.max_documents!r}; accepted: null or an integer >= 1")

    def resolved_stdlib_dir(self) -> str:
        return self.stdlib_dir or sysconfig.get_paths()["stdlib"]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
        data["stdlib_dir"] = self.resolved_stdlib_dir()
        return data


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


def dedup_key(document: str) -> str:
    """The form duplicates are detected on: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", document).casefold().split())


def document_hash(document: str) -> str:
    return hashlib.sha256(dedup_key(document).encode("utf-8")).hexdigest()


def is_held_out(digest: str, held_out: float) -> bool:
    return int(digest[:16], 16) / 2.0 ** 64 < held_out


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


# ---- stdlib docstrings -------------------------------------------------------------------------

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


# ---- man pages ---------------------------------------------------------------------------------

_SPECIAL_CHARS = {"em": "\u2014", "en": "\u2013", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'",
                  "cq": "'", "hy": "-", "mi": "-", "pl": "+", "eq": "=", "bu": "\u2022", "co": "\u00a9",
                  "rg": "\u00ae", "tm": "\u2122", "mu": "\u00d7", "ti": "~", "ha": "^", "ba": "|", "bv": "|",
                  "sl": "/", "rs": "\\", "<=": "\u2264", ">=": "\u2265", "->": "\u2192", "<-": "\u2190",
                  "Tm": "\u2122", "R": "\u00ae"}
_ESCAPES = [
    (re.compile(r'\\".*$'), lambda m: ""),  # comment to the end of the line
    (re.compile(r"\\[fF](\[[^\]]*\]|\(..|.)"), lambda m: ""),  # font changes
    (re.compile(r"\\s(\[[^\]]*\]|\([+-]?\d\d|[+-]?\d)"), lambda m: ""),  # size changes
    (re.compile(r"\\\*(\[([^\]]*)\]|\((..)|(.))"),  # string registers: \*(lq, \*[R], \*R
     lambda m: _SPECIAL_CHARS.get(m.group(2) or m.group(3) or m.group(4), "")),
    (re.compile(r"\\\((..)"), lambda m: _SPECIAL_CHARS.get(m.group(1), "")),  # \(em
    (re.compile(r"\\\[([^\]]*)\]"), lambda m: _SPECIAL_CHARS.get(m.group(1), "")),  # \[em]
    (re.compile(r"\\[nwhvlLxoNkbYVgzDRZ](\[[^\]]*\]|\(..|'[^']*'|.)"), lambda m: ""),  # registers, motions
    (re.compile(r"\\[-e\\]"), lambda m: {"\\-": "-", "\\e": "\\", "\\\\": "\\"}[m.group(0)]),
    (re.compile(r"\\[ ~0]"), lambda m: " "),
    (re.compile(r"\\[&|^%c:)!{}\n]"), lambda m: ""),  # zero-width
    (re.compile(r"\\(.)"), lambda m: m.group(1)),  # \. \' \` and anything else: the character
]
_FONT_MACROS = {"B", "I", "SM", "SB"}  # arguments joined by spaces
_ALTERNATING_MACROS = {"BR", "RB", "BI", "IB", "IR", "RI"}  # arguments joined without spaces
_TEXT_MACROS = {"Nd"}  # mdoc's one-line description
_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN", "de": "..", "ig": "..", "PS": "PE"}


def unescape_roff(text: str) -> str:
    for pattern, replace in _ESCAPES:
        text = pattern.sub(replace, text)
    return text


def _macro_arguments(rest: str) -> list[str]:
    """Arguments of a roff request: space separated, double quotes group (``""`` inside is a quote)."""
    return [quoted.replace('""', '"') if quoted else word
            for quoted, word in re.findall(r'"((?:[^"]|"")*)"?|(\S+)', rest)]


def roff_to_text(source: str) -> str:
    """Plain text of a man page: blank lines where roff starts a paragraph or a section, headings and
    no-fill blocks dropped, font/quote escapes resolved."""
    out: list[str] = []
    end_of_block = None
    skip_tag = False  # the line after .TP is the item's tag (an option such as "-a, --all"), not prose
    for line in source.splitlines():
        if end_of_block is not None:
            if line.startswith(("." + end_of_block, "'" + end_of_block)) or (end_of_block == ".." and line.strip() == ".."):
                end_of_block = None
            continue
        if not line.startswith((".", "'")):
            out.append("" if skip_tag else unescape_roff(line))
            skip_tag = False
            continue
        request = line[1:].lstrip()
        name, _, rest = request.partition(" ")
        name = name.strip()
        if name.startswith('\\"') or not name:
            continue
        if skip_tag:  # a tag set with a font macro (.B -a): dropped like a plain one
            skip_tag = False
            out.append("")
            continue
        skip_tag = name == "TP"
        if name in _BLOCKS:
            end_of_block = _BLOCKS[name]
            out.append("")
        elif name in _FONT_MACROS or name in _TEXT_MACROS:
            out.append(unescape_roff(" ".join(_macro_arguments(rest))))
        elif name in _ALTERNATING_MACROS:
            out.append(unescape_roff("".join(_macro_arguments(rest))))
        else:  # paragraph, section, indentation and every other request: a paragraph break
            out.append("")
    return "\n".join(out)


def man_texts(root: str) -> Iterator[str]:
    """English man pages: the ``man<N>`` folders directly under ``root`` (translations live beside them)."""
    if not os.path.isdir(root):
        return
    for section in sorted(d for d in os.listdir(root) if re.fullmatch(r"man\w+", d)):
        for path in walk_files(os.path.join(root, section)):
            text = read_text_file(path)
            if text is None or text.lstrip().startswith((".so ", "'so ")):  # a redirect to another page
                continue
            yield roff_to_text(text)


# ---- /usr/share/doc ----------------------------------------------------------------------------

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


# ---- gathering ---------------------------------------------------------------------------------

def source_texts(name: str, settings: CorpusSettings) -> Iterator[str]:
    if name == "stdlib":
        return stdlib_texts(settings.resolved_stdlib_dir())
    if name == "man":
        return man_texts(settings.man_dir)
    return doc_texts(settings.doc_dir)


def collect_documents(settings: CorpusSettings) -> tuple[dict[str, str], dict[str, dict]]:
    """``{hash: document}`` (first occurrence wins, sources in order) and counts per source."""
    documents: dict[str, str] = {}
    counts: dict[str, dict] = {}
    for name in settings.sources:
        start = time.perf_counter()
        stats = {"texts": 0, "documents": 0, "duplicates": 0, "words": 0}
        for text in source_texts(name, settings):
            stats["texts"] += 1
            for paragraph in paragraphs(unicodedata.normalize("NFC", text)):
                if not keep_paragraph(paragraph, settings.min_words):
                    continue
                digest = document_hash(paragraph)
                if digest in documents:
                    stats["duplicates"] += 1
                    continue
                documents[digest] = paragraph
                stats["documents"] += 1
                stats["words"] += len(paragraph.split())
                if settings.max_documents is not None and stats["documents"] >= settings.max_documents:
                    break
            if settings.max_documents is not None and stats["documents"] >= settings.max_documents:
                break
        stats["seconds"] = round(time.perf_counter() - start, 2)
        counts[name] = stats
        logger.info("corpus source %s: %d texts -> %d documents (%d words), %d duplicates dropped",
                    name, stats["texts"], stats["documents"], stats["words"], stats["duplicates"])
    return documents, counts


def _file_entry(path: str, lines: list[str]) -> dict:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    atomic_write_bytes(path, data)
    return {"file": os.path.basename(path), "documents": len(lines),
            "words": sum(len(line.split()) for line in lines), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def cached_manifest(out_dir: str, settings: CorpusSettings) -> dict | None:
    """The manifest of a finished corpus in ``out_dir`` made with ``settings`` and intact, else None."""
    path = os.path.join(out_dir, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            manifest.get("settings") != settings.to_dict():
        return None
    for split in ("train", "heldout"):
        entry = manifest.get(split) or {}
        file = os.path.join(out_dir, str(entry.get("file")))
        if not os.path.isfile(file) or file_sha256(file) != entry.get("sha256"):
            return None
    return manifest


def gather_corpus(out_dir: str | os.PathLike, settings: CorpusSettings | None = None, force: bool = False) -> dict:
    """Gather, clean, de-duplicate and split the corpus into ``out_dir``; returns the manifest.

    With ``force=False`` a finished corpus of the same settings is reused as it is. Raises
    :class:`DataError` when the sources yield no document at all.
    """
    out_dir = os.fspath(out_dir)
    settings = settings or CorpusSettings()
    if not force:
        manifest = cached_manifest(out_dir, settings)
        if manifest is not None:
            logger.info("corpus in %s is up to date (%d train / %d held-out documents)", out_dir,
                        manifest["train"]["documents"], manifest["heldout"]["documents"])
            return manifest
    start = time.perf_counter()
    documents, counts = collect_documents(settings)
    if not documents:
        raise DataError(f"corpus: no document of >= {settings.min_words} words found in the sources "
                        f"{', '.join(settings.sources)} (stdlib {settings.resolved_stdlib_dir()}, man "
                        f"{settings.man_dir}, doc {settings.doc_dir})")
    train, heldout = [], []
    for digest in sorted(documents):
        (heldout if is_held_out(digest, settings.held_out) else train).append(documents[digest])
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST_FILE)
    if os.path.exists(manifest_path):  # no old manifest may ever describe new files
        os.remove(manifest_path)
    manifest = {
        "format": FORMAT,
        "settings": settings.to_dict(),
        "sources": counts,
        "train": _file_entry(os.path.join(out_dir, TRAIN_FILE), train),
        "heldout": _file_entry(os.path.join(out_dir, HELDOUT_FILE), heldout),
        "seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_json(manifest_path, manifest)
    logger.info("corpus written to %s: %d train / %d held-out documents, %.1f MB, %.1f s", out_dir,
                len(train), len(heldout), (manifest["train"]["bytes"] + manifest["heldout"]["bytes"]) / 1e6,
                manifest["seconds"])
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.quickstart.corpus OUT_DIR [--max-documents N] [--sources stdlib man doc]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--max-documents", type=int, default=None, help="per source")
    parser.add_argument("--held-out", type=float, default=0.02)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest = gather_corpus(args.out_dir, CorpusSettings(sources=tuple(args.sources), held_out=args.held_out,
                                                          max_documents=args.max_documents), force=args.force)
    json.dump({k: manifest[k] for k in ("sources", "train", "heldout", "seconds")}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
