# Two commands from a fresh clone:
#   make lab    set everything up, then open JupyterLab on a working copy of the notebook
#               (workspace/, git-ignored) with the SD sidebar; PORT=8899 picks the port
#   make test   set everything up, then run every test suite (browser included)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sdpanel-installed
PYTEST_ARGS ?=

# Browser tests drive Debian's /usr/bin/chromium: Playwright must not download its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: lab test setup js notebook lint clean

# make lab PORT=8899: another port (default: Jupyter's, 8888).
lab: setup
	$(BIN)/sdpanel lab $(if $(PORT),--port $(PORT))

# Two pytest processes: the browser suite drives Playwright's sync API, whose event loop
# stays marked as running in the main thread for the rest of its session, and every
# asyncio test after it in the same process would fail with "Runner.run() cannot be
# called from a running event loop". Exit code 5 (no tests collected) is a failure.
# PYTEST_ARGS="tests/unit -x" runs just that, in one process.
test: setup
	@run() { rc=0; $(BIN)/python -m pytest "$$@" || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: $$*" >&2; rc=1; fi; return $$rc; }; \
	if [ -n "$(PYTEST_ARGS)" ]; then run $(PYTEST_ARGS); exit $$?; fi; \
	failed=0; run --ignore=tests/browser || failed=1; run tests/browser || failed=1; exit $$failed

setup: js $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The front end is built before the editable install so the wheel hook finds it built.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[test,lab,engine]"
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci

# esbuild takes a second: always rebuild so the static files match js/.
js: node_modules/.package-lock.json
	npm run build

notebook: setup
	$(BIN)/sdpanel notebook

lint: setup
	$(BIN)/ruff check sdpanel tests

clean:
	rm -rf $(VENV) node_modules sdpanel/static sdpanel/labextension dist build
