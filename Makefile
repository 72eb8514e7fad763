# make test: install everything the tests need on a fresh Debian machine, then lint and test.
# make demo: the offline end-to-end demonstration. make bench: the performance table.
VENV ?= .venv
PY := $(VENV)/bin/python
CODEX_VERSION := 0.169.0
CODEX := .tools/node_modules/.bin/codex

.PHONY: test test-quick lint demo bench docs deps system-deps clean test-codex-latest

# The tests need pystemd (the [systemd] extra, built from source); the demo does not.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,systemd,demo,fleet]'
	@touch $@

$(VENV)/.installed-demo: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[demo]'
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
	$(PY) -m cogapp -I docs --check docs/commands.md docs/configuration.md PiMainteno.toml

# Everything, the slow soak and full property runs included; pytest's status is make's (5, no tests ran, fails).
# Four workers on two cores: most tests wait on git, codex, bubblewrap or a booted systemd, not the CPU.
# worksteal: an idle worker takes tests queued on a busy one (test times range from 5 ms to 25 s).
test: deps lint
	$(VENV)/bin/pytest -n 4 --dist worksteal

# The quick loop while working: the property tests' small sample, no soak tests.
test-quick: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not slow"

# The codex tests against the newest @openai/codex on npm (tests/conftest_codex.py honours
# PIMAINTENO_TEST_CODEX); the pinned one above stays what `make test` uses.
test-codex-latest: deps
	npm install --silent --no-audit --no-fund --prefix .tools-latest @openai/codex@latest
	.tools-latest/node_modules/.bin/codex --version
	PIMAINTENO_TEST_CODEX=$(CURDIR)/.tools-latest/node_modules/.bin/codex $(VENV)/bin/pytest -m codex \
		tests/providers tests/commands/test_codex_flow.py

docs: $(VENV)/.installed
	$(PY) -m cogapp -I docs -r docs/commands.md docs/configuration.md PiMainteno.toml

# Offline, no API key: a sample project, the ruff fixer, its tests, a local bare remote.
# Needs only git and python3-venv from Debian (no compiler: pystemd is not installed).
demo:
	@scripts/system-deps.sh --demo
	@$(MAKE) --no-print-directory $(VENV)/.installed-demo
	$(VENV)/bin/pimainteno demo

bench: deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .tools .tools-latest .pytest_cache .mypy_cache .ruff_cache
