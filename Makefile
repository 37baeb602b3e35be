# Set-up and everyday commands. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build on this kind of machine.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-browser test-gpu bench-gpu lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# setup.py builds the hand-written CPU loops from gates_simd.cpp: a change reinstalls.
$(STAMP): $(PY) pyproject.toml setup.py src/convlstm/nn/fast/gates_simd.cpp
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

# The GPU check, on a machine with one CUDA device (the two targets: under 5 minutes).
# It has a virtual environment of its own with PyPI's build of the pinned torch, a CUDA
# one: the machine's local wheel (find-links, pip config) is CPU-only, so both are left out.
GPU_VENV := .venv-gpu
GPU_PY := $(GPU_VENV)/bin/python
GPU_STAMP := $(GPU_VENV)/.installed

$(GPU_STAMP): pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(GPU_PY) -m pip install --quiet $(TORCH_PIN)
	$(GPU_PY) -m pip install --quiet -c constraints.txt -e . pytest
	$(GPU_PY) -c "import torch; assert torch.version.cuda, f'torch {torch.__version__}: no CUDA'"
	touch $(GPU_STAMP)

# tests/gpu fails here, instead of skipping, when no CUDA device is visible.
test-gpu: $(GPU_STAMP)
	CONVLSTM_REQUIRE_DEVICE=1 $(GPU_PY) -m pytest -q -m cuda tests/gpu

bench-gpu: $(GPU_STAMP)
	$(GPU_PY) tests/gpu/bench.py

clean:
	rm -rf $(VENV) $(GPU_VENV) benchmarks/.venv-bench
