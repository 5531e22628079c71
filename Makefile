# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the package with its pinned dependencies.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Quiet TF's C++ start-up chatter (cuInit on a machine without a GPU, oneDNN notices).
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test test-fast demo bench lint clean

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip check
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow'

demo: $(STAMP)
	$(VENV)/bin/keras-distil quickstart

bench: $(STAMP)
	$(PY) benchmarks/train_step.py

lint: $(STAMP)
	$(PY) -m ruff check keras_distil tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
