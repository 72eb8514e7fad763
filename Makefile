# make test: install everything the tests need on a fresh Debian machine, then lint and test.
# make demo: the offline end-to-end demonstration. make bench: the performance table.
VENV ?= .venv
PY := $(VENV)/bin/python
CODEX_VERSION := 0.169.0
CODEX := .tools/node_modules/.bin/codex

.PHONY: test lint demo bench docs deps system-deps clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,fleet]'
	@touch $@

system-deps:
	@scripts/system-deps.sh

# The real codex CLI, pinned, in a project-local folder (the tests run it against a local model server).
.tools/codex-$(CODEX_VERSION):
	npm install --silent --no-audit --no-fund --prefix .tools @openai/codex@$(CODEX_VERSION)
	$(CODEX) --version
	@touch $@

deps: system-deps $(VENV)/.installed .tools/codex-$(CODEX_VERSION)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check pimainteno tests bench docs
	$(VENV)/bin/ruff format --check pimainteno tests bench docs
	$(VENV)/bin/mypy
	$(PY) -m cogapp -I docs --check docs/commands.md

test: deps lint
	$(VENV)/bin/pytest

docs: $(VENV)/.installed
	$(PY) -m cogapp -I docs -r docs/commands.md

# Offline, no API key: a sample project, the ruff fixer, its tests, a local bare remote.
demo: $(VENV)/.installed
	$(VENV)/bin/pimainteno demo

bench: deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
