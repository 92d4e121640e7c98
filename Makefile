# Every target works on a fresh machine: it creates .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: install test bench clean demo run

install: $(STAMP)

# Re-run pip only when a requirements file changed (idempotent and quick otherwise).
$(STAMP): requirements*.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

test: install
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

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.tmp
