# Every target works on a fresh machine: it creates .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: install test java bench bench-gpu bench-admission gpu-wheels clean demo run chaos k8s-rules docs

install: $(STAMP)

# Re-run pip only when a requirements file changed (idempotent and quick otherwise).
$(STAMP): requirements*.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# clients/java: unit and integration tests (each integration module starts the demo stack from .venv).
# On the JDK that javac on PATH belongs to (Debian's default-jdk-headless: 17), whatever JAVA_HOME says.
java: install
	cd clients/java && JAVA_HOME="$$(dirname "$$(dirname "$$(readlink -f "$$(command -v javac)")")")" mvn -B verify

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

# Wheels the GPU machine lacks for bench/gpu_session.sh: it has torch (2.11, CUDA 13), transformers
# (5.17), prometheus-client, requests, numpy, Pillow and their dependencies, nothing else; this is
# what the model process, bench.gpu and the engine tests import beyond that (tests/test_gpu_session.py
# runs the session on exactly that set). Python 3.12, manylinux x86_64, unless GPU_PYTHON says otherwise.
GPU_WHEELS := transformers==5.24.0 tokenizers==0.23.3 flask==3.1.3 werkzeug==3.1.9 waitress==3.0.2 \
	itsdangerous==2.2.0 blinker==1.9.0 llguidance==1.9.1 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
	referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 \
	pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pytest-timeout==2.4.0
GPU_PYTHON ?= 3.12
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 --platform manylinux_2_31_x86_64 -d .whl $(GPU_WHEELS)

# Load and fault suite against the demo stack (~5 min); writes chaos/RESULTS.md.
chaos: install
	$(PY) -m chaos.run

# deploy/kubernetes/operators/prometheus-rule.yaml from deploy/prometheus/alerts.yml, and the proxy's
# nginx.conf copied where kubectl apply -k can read it (make test checks both).
k8s-rules: install
	$(PY) deploy/kubernetes/generate_rules.py
	cp deploy/nginx/nginx.conf deploy/kubernetes/base/nginx.conf

# docs/reference/*.md from the code, and the measured results into the pages that include them
# (docgen/; make test fails while a generated page is stale).
docs: install
	$(PY) -m docgen

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.tmp
