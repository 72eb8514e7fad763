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
	$(PY) -m pip install --quiet -e '.[test]'
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

# Until the pipeline lands, the demo stops at init + status on a throwaway folder.
demo: $(VENV)/.installed
	@d=$$(mktemp -d) && git init -q -b main $$d/app && PIMAINTENO_STATE_DIR=$$d/state $(VENV)/bin/pimainteno init $$d/app \
	  && PIMAINTENO_STATE_DIR=$$d/state $(VENV)/bin/pimainteno --config $$d/app/PiMainteno.toml projects \
	  && PIMAINTENO_STATE_DIR=$$d/state $(VENV)/bin/pimainteno --config $$d/app/PiMainteno.toml status

bench: deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
