"""Real English text and a real WordPiece vocabulary for the data tests (tests/data/), and references.

The vocabulary is a real WordPiece vocabulary trained with Hugging Face ``tokenizers`` on the Python
standard library's docstrings (real English prose, available offline), so tokenizer-parity tests
exercise genuine sub-word splits.
"""

from __future__ import annotations

import importlib
import os
import warnings

from keras_distil.data.tokenize import SPECIAL_TOKENS

DOC_MODULES = ("os", "json", "collections", "argparse", "logging", "email.message", "http.client",
               "unittest", "pathlib", "subprocess", "inspect", "textwrap", "functools", "re", "string",
               "datetime", "decimal", "fractions", "threading", "shutil")


def _docstrings(modules) -> list[str]:
    """Every docstring of the public attributes of ``modules``, in a deterministic order."""
    docs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in modules:
            module = importlib.import_module(name)
            for attr in sorted(vars(module)):
                doc = getattr(getattr(module, attr), "__doc__", None)
                if isinstance(doc, str):
                    docs.append(doc)
    return docs


def docstring_lines(modules=DOC_MODULES) -> list[str]:
    """Distinct non-empty docstring lines of standard-library modules (deterministic order)."""
    lines = [line.strip() for doc in _docstrings(modules) for line in doc.splitlines() if line.strip()]
    return list(dict.fromkeys(lines))


def docstring_documents(modules=DOC_MODULES) -> list[str]:
    """One document per docstring (whitespace collapsed), as in the reference's dump.txt."""
    return list(dict.fromkeys(" ".join(doc.split()) for doc in _docstrings(modules) if doc.strip()))


def train_vocab(texts: list[str], path: str, size: int = 2000) -> str:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS),
                                                             show_progress=False))
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    write_lines(path, tokens)
    return path


def write_lines(path, lines, encoding="utf-8") -> str:
    with open(path, "w", encoding=encoding, newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    return os.fspath(path)


def hf_tokenizer(vocab_path, lowercase=True, strip_accents=None):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=os.fspath(vocab_path), do_lower_case=lowercase, strip_accents=strip_accents)


def balanced_chunks(ids: list[int], capacity: int) -> list[list[int]]:
    """Reference for the document split: ceil(n / capacity) chunks of sizes differing by at most one."""
    n = len(ids)
    k = -(-n // capacity)
    sizes = [n // k + (1 if j < n % k else 0) for j in range(k)] if k else []
    out, start = [], 0
    for size in sizes:
        out.append(ids[start:start + size])
        start += size
    return out


def reference_sequences(docs: list[str], vocab_path, max_len: int, min_len: int) -> tuple[list[list[int]], int]:
    """Sequences the pipeline must produce, computed with Hugging Face's tokenizer; and the dropped count."""
    hf = hf_tokenizer(vocab_path)
    cls_id, sep_id = hf.cls_token_id, hf.sep_token_id
    kept, dropped = [], 0
    for ids in hf(docs, add_special_tokens=False)["input_ids"]:
        for chunk in balanced_chunks(ids, max_len - 2):
            seq = [cls_id, *chunk, sep_id]
            if len(seq) >= min_len:
                kept.append(seq)
            else:
                dropped += 1
    return kept, dropped
