"""Gathering the quickstart corpus: the sources read in order, paragraphs kept and de-duplicated, the
hash split into ``train.txt`` / ``heldout.txt``, the manifest, and the cache that reuses a finished corpus
(see :mod:`keras_distil.quickstart.corpus` for the rules)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sysconfig
import time
import unicodedata
from collections.abc import Iterator

from keras_distil.data.base import DataError
from keras_distil.files import atomic_write_bytes, atomic_write_json, file_sha256, try_read_json
from keras_distil.quickstart.corpus.sources_doc import doc_texts
from keras_distil.quickstart.corpus.sources_man import man_texts
from keras_distil.quickstart.corpus.sources_stdlib import stdlib_texts
from keras_distil.quickstart.corpus.text import keep_paragraph, paragraphs

logger = logging.getLogger("keras_distil.quickstart")

FORMAT = "keras-distil-quickstart-corpus"
SOURCES = ("stdlib", "man", "doc")
TRAIN_FILE, HELDOUT_FILE, MANIFEST_FILE = "train.txt", "heldout.txt", "manifest.json"


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """What :func:`gather_corpus` reads and how; the manifest records it, and the cache compares it."""

    sources: tuple[str, ...] = SOURCES
    stdlib_dir: str | None = None  # None: this interpreter's (sysconfig "stdlib")
    man_dir: str = "/usr/share/man"
    doc_dir: str = "/usr/share/doc"
    held_out: float = 0.02  # fraction of documents in heldout.txt (by hash, see keras_distil.quickstart.corpus)
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


def dedup_key(document: str) -> str:
    """The form duplicates are detected on: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", document).casefold().split())


def document_hash(document: str) -> str:
    return hashlib.sha256(dedup_key(document).encode("utf-8")).hexdigest()


def is_held_out(digest: str, held_out: float) -> bool:
    return int(digest[:16], 16) / 2.0 ** 64 < held_out


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
    manifest = try_read_json(path)
    if manifest is None or manifest.get("format") != FORMAT or manifest.get("settings") != settings.to_dict():
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
