# `make study`: fresh clone -> venv, install, MNIST, the default sweep, its summary.
# `make test`:  lint, format check and the whole test suite (what CI runs).
# `make test-fast`: the tests that start no child process (pytest -m "not slow"), for edits.
# `make results`: the published page's tables from the committed summaries (seconds; see
#                `python -m slopestudy.study --help` for status and run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The default study: slope x depth (depth comes from conf/config.yaml's sweep) x init.
STUDY_ARGS ?= slope=0,0.01,0.2 init=pytorch,kaiming

.PHONY: install data study results test test-fast lint clean

install: $(STAMP)

# torch/torchvision first, at the versions whose files this machine has on disk (a plain
# `torch` requirement would pull a multi-GB build from the index).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: $(STAMP)
	$(PY) -m slopestudy.run.data --root data

study: data
	$(PY) train.py -m $(STUDY_ARGS)

results: $(STAMP)
	$(PY) -m slopestudy.study report

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

test-fast: lint
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) multirun outputs
