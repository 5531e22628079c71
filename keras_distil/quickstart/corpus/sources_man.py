"""The ``man`` source: English man pages (``<man_dir>/man*/``, gzip'd or not), roff markup stripped to
plain text; no-fill blocks (``.nf``/``.EX``: examples, synopses), tables and macro definitions are dropped."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from keras_distil.quickstart.corpus.text import read_text_file, walk_files

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
