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

Modules: :mod:`.sources_stdlib`, :mod:`.sources_man` (the roff parser) and :mod:`.sources_doc` read the
three sources; :mod:`.text` cleans text into paragraphs and reads files; :mod:`.gather` de-duplicates,
splits, writes and caches. ``python -m keras_distil.cli.corpus OUT_DIR`` builds one from the shell.
"""

from keras_distil.quickstart.corpus.gather import (
    HELDOUT_FILE,
    MANIFEST_FILE,
    SOURCES,
    TRAIN_FILE,
    CorpusSettings,
    cached_manifest,
    gather_corpus,
)

__all__ = ["HELDOUT_FILE", "MANIFEST_FILE", "SOURCES", "TRAIN_FILE", "CorpusSettings", "cached_manifest",
           "gather_corpus"]
