#!/usr/bin/env bash
# One GPU-machine session, prepared here and run there as one command:
#
#   make gpu-wheels                                  # here: what the GPU machine lacks, into .whl/
#   device run, carry [".whl"]:  bash bench/gpu_session.sh
#
# The machine has torch, an older transformers, prometheus-client, requests, numpy and
# Pillow, nothing else; the wheels go into one folder first on PYTHONPATH, which the
# servers and tests this starts inherit (harness/procs.py keeps it).
# 1. The engine's correctness suite on CUDA, float32, demo model: the continuous engine
#    against generate, greedy, token for token (CUDA graphs and the Triton attention
#    kernel in play), within TESTS_SECONDS (120).
# 2. python -m bench.gpu "$@" (the card, then ENGINE=continuous, then generate) within
#    BENCH_SECONDS (330); it writes gpu.md as each figure lands.
# Each step is bounded with SIGINT (then KILL 30 s later), so a slow one leaves the
# others' results; the results are printed at the end whatever happened, and the exit
# status says whether every step passed. Results and logs land in $OUT (or bench/results).
set -uo pipefail  # no -e: a failed step must not skip the ones after it, nor the report
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
status=0
started=$SECONDS

note() { echo "[session $((SECONDS - started))s] $*"; }

# Bounded, with its output (at most 2 MB of it: a huge log does not come back) in a file.
bounded() {  # seconds, log file, command...
  local seconds=$1 log=$2
  shift 2
  timeout -s INT -k 30 "$seconds" "$@" 2>&1 | tail -c 2000000 > "$log"
  return "${PIPESTATUS[0]}"
}

wheels="${WHEELS_DIR:-.whl}"  # make gpu-wheels' folder (tests point it elsewhere)
if compgen -G "$wheels/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/llava-gpu-site"
  note "installing $(ls "$wheels"/*.whl | wc -l) wheels into $site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl \
    || { note "wheel install failed"; status=1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || note "no nvidia-smi"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cuda', torch.cuda.is_available())" || status=1

tests=(
  "tests/test_continuous_engine.py::test_one_request_is_answered_as_generate_answers_it"
  "tests/test_continuous_engine.py::test_eight_at_once_with_mixed_sizes_and_max_tokens"
  "tests/test_continuous_engine.py::test_requests_joining_while_others_decode"
  "tests/test_continuous_engine.py::test_a_four_image_chat"
  "tests/test_continuous_engine.py::test_a_seed_gives_the_same_answer_alone_in_a_batch_and_on_either_engine"
  "tests/test_continuous_engine.py::test_greedy_answers_match_generate_token_for_token"
  "tests/test_continuous_engine.py::test_answers_with_a_schema_validate"
  "tests/test_continuous_engine.py::test_a_one_token_answer_needs_no_decode_step"
  "tests/test_structured_output.py::test_constrained_greedy_answers_match_across_engines_and_alone"
  "tests/test_engine.py::test_greedy_answers_are_identical_alone_and_together"
)
if [ -n "${GPU_SESSION_TESTS:-}" ]; then read -r -a tests <<< "$GPU_SESSION_TESTS"; fi
note "1/2 the engine's correctness suite, float32 on the demo model (${#tests[@]} tests)"
LLAVA_TEST_DTYPE=float32 LLAVA_TEST_DECODE_MODE=eager bounded "${TESTS_SECONDS:-120}" "$out/engine-tests.log" \
  python3 -m pytest -q -p no:cacheprovider "${tests[@]}"
rc=$?
[ $rc -eq 0 ] || status=1
note "correctness suite: exit $rc; $(grep -E '(passed|failed|error)' "$out/engine-tests.log" | tail -n 1)"

note "2/2 python -m bench.gpu $*"
bounded "${BENCH_SECONDS:-330}" "$out/bench-gpu.log" python3 -m bench.gpu --output "$out/gpu.md" "$@"
rc=$?
[ $rc -eq 0 ] || status=1
note "bench.gpu: exit $rc (130 = stopped by its time limit, figures kept)"

echo "===== engine tests (last lines) ====="
tail -n 25 "$out/engine-tests.log"
echo "===== bench.gpu progress (last lines) ====="
grep -a '^\[gpu\]' "$out/bench-gpu.log" | tail -n 15
echo "===== $out/gpu.md ====="
cat "$out/gpu.md" 2>/dev/null || echo "(no gpu.md: bench.gpu stopped before its first write)"
note "done, exit $status"
exit $status
