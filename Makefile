# The two commands in the README:
#   make serve   install everything and run corral on the embedded default (SQLite)
#   make test    install everything and run the whole test suite (SQLite and PostgreSQL)
# Both are idempotent: the virtualenv is (re)built only when pyproject.toml changes, and the
# web UI (web/ -> corral/web/app) only when its sources or package-lock.json change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install web serve test lint typecheck docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	@touch $(STAMP)

install: $(STAMP)

web:
	scripts/build-web

serve: install web
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
