# Backstage for Python: `make demo`, `make test`, `make test-all`, `make bench`, `make lint`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-all demo lint bench bench-full bench-cluster clean

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The suite on this Python (3.11+); test-all: on 3.11, 3.12 and 3.13 through nox.
test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(VENV)/bin/nox -s tests

demo:
	$(PYTHON) examples/demo.py

# ruff, and mypy --strict on the files listed in pyproject.toml's [tool.mypy].
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .nox build dist *.egg-info

# Benchmarks: the peers (Pykka, Thespian, uvloop) go into a bench venv per
# Python version (bench/.venv-3.11, ...), never into .venv.  `make bench` and
# `make bench-full` write to the untracked bench/out/; the -record targets
# update the tracked bench/results*.md.  Another Python:
#   make bench PYTHON=/root/.pyenv/versions/3.12.1/bin/python3
PYVER        = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
BENCH_VENV   = bench/.venv-$(PYVER)
BENCH_PY     = $(BENCH_VENV)/bin/python
BENCH_STAMP  = $(BENCH_VENV)/.installed

.PHONY: bench-venv bench-record bench-full-record

bench-venv: bench/requirements.txt
	@test -f $(BENCH_STAMP) -a $(BENCH_STAMP) -nt bench/requirements.txt || { \
	  $(PYTHON) -m venv $(BENCH_VENV) && \
	  $(BENCH_PY) -m pip install --quiet --upgrade pip && \
	  $(BENCH_PY) -m pip install --quiet -r bench/requirements.txt && \
	  touch $(BENCH_STAMP); }

bench: bench-venv
	$(BENCH_PY) bench/run.py

bench-record: bench-venv
	$(BENCH_PY) bench/run.py --record

bench-full: bench-venv
	$(BENCH_PY) bench/run.py --full

bench-full-record: bench-venv
	$(BENCH_PY) bench/run.py --full --record

# The cluster against Ray's own actors (Ray is in requirements-dev.txt, so .venv has it).
bench-cluster: $(STAMP)
	$(PY) bench/bench_cluster.py --quick
