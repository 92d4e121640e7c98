# Every target works on a fresh machine: it creates .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: install test bench bench-gpu bench-admission clean demo run chaos

install: $(STAMP)

# Re-run pip only when a requirements file changed (idempotent and quick otherwise).
$(STAMP): requirements*.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The whole stack in the foreground (supervisor + model process + gateway); Ctrl-C stops it.
demo: install
	MODEL_PATH=demo $(PY) stack.py

# The same on the real model (downloads it on first use, so the hub is not offline here).
run: export HF_HUB_OFFLINE = 0
run: install
	MODEL_PATH=$${MODEL_PATH:-llava-hf/llava-v1.6-vicuna-7b-hf} $(PY) stack.py

bench: install
	$(PY) -m bench.run_cpu

# Admission on the demo stack with default settings: 32 concurrent clients, then a burst of 300.
bench-admission: install
	$(PY) -m bench.admission

# The full-size 7B architecture on a CUDA GPU (random weights, no download); says so and exits without one.
bench-gpu: install
	$(PY) -m bench.gpu

# Load and fault suite against the demo stack (~5 min); writes chaos/RESULTS.md.
chaos: install
	$(PY) -m chaos.run

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.tmp
