# Every target works on a fresh machine: it creates .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: install test bench clean

install: $(STAMP)

# Re-run pip only when a requirements file changed (idempotent and quick otherwise).
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m bench.run_cpu

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.tmp
