#!/usr/bin/env bash
# One GPU-machine session for `python -m bench.gpu` (both engines, ~6 minutes on an
# H100), prepared here and run there as one command (see `make gpu-wheels`):
#
#   make gpu-wheels                      # here: the packages the GPU machine lacks, into .whl/
#   device run, carry [".whl"]:  bash bench/gpu_session.sh
#
# The machine has torch and an older transformers but none of our other pins; the
# wheels are installed into /tmp/site, first on PYTHONPATH (the model processes the
# benchmark starts inherit it). Results and the log land in $OUT (or bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# INT, not KILL: a slow part still leaves the others' numbers and the report.
timeout -s INT 540 python3 -m bench.gpu --output "$out/gpu.md" "$@" 2>&1 | tail -c 1000000 > "$out/bench-gpu.log"
tail -n 40 "$out/bench-gpu.log"
