# Set-up and everyday commands. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build on this kind of machine.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-browser lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m convlstm.cli demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow and not browser"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Reports rendered in headless Chromium (Debian's chromium package, installed on demand).
test-browser: $(STAMP)
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }
	$(PY) -m pytest -q -m browser tests/reports

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(MAKE) -C benchmarks bench

clean:
	rm -rf $(VENV) benchmarks/.venv-bench
