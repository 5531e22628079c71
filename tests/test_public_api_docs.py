"""Every public name (``keras_distil.__all__``) documents its arguments and has an example, and the examples run.

Issue 14: "none of the 16 top-level names has an Args section or an example in its docstring". The anchor is
KerasHub: each public class documents its arguments and has a runnable example. Each name's own docstring
is run here with :mod:`doctest`, in a fresh namespace (an example imports what it uses, so it runs as
copied), with ELLIPSIS and NORMALIZE_WHITESPACE.
"""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import re

import pytest

import keras_distil as kd

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
SECTION = re.compile(r"^\s*([A-Z][A-Za-z ]*):\s*$")  # "Args:", "Example:", "Returns:" on a line of its own


def docstring(name: str) -> str:
    return inspect.getdoc(getattr(kd, name)) or ""


def args_section(doc: str) -> str:
    """The text of the ``Args:`` section: from its header to the next section header."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    end = next((i for i in range(start + 1, len(lines)) if SECTION.match(lines[i])), len(lines))
    return "\n".join(lines[start + 1:end])


def doctests(name: str) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=False, exclude_empty=True)
    return finder.find(getattr(kd, name), name, globs={})


def test_the_public_names():
    assert len(kd.__all__) == len(set(kd.__all__)) and "build_dataset" in kd.__all__
    assert all(hasattr(kd, name) for name in kd.__all__)


@pytest.mark.parametrize("name", kd.__all__)
def test_docstring_has_args_and_an_example(name):
    doc = docstring(name)
    assert re.search(r"^Args:$", doc, re.M), f"{name}: no 'Args:' section"
    assert re.search(r"^Example:$", doc, re.M), f"{name}: no 'Example:' section"
    assert args_section(doc).strip(), f"{name}: an empty 'Args:' section"
    examples = [e for test in doctests(name) for e in test.examples if not e.options.get(doctest.SKIP)]
    assert examples, f"{name}: no example that runs (every '>>>' line is skipped, or there is none)"


@pytest.mark.parametrize("name", [n for n in kd.__all__ if dataclasses.is_dataclass(getattr(kd, n))])
def test_config_docstrings_name_every_field(name):
    documented = args_section(docstring(name))
    missing = [f.name for f in dataclasses.fields(getattr(kd, name))
               if not re.search(rf"^\s+{f.name}:", documented, re.M)]
    assert not missing, f"{name}: fields without a line in 'Args:': {', '.join(missing)}"


@pytest.mark.parametrize("name", kd.__all__)
def test_example_runs(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctests(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
