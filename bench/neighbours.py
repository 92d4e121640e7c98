"""Does another tenant's grammar slow my decoding? (issue 25, finding 3)

    python -m bench.neighbours          # the demo model on the CPU, in-process, about two minutes

Key B's request (256 tokens of free text, greedy) runs on the continuous engine, as
the model process runs it, beside six neighbours, side by side in one run:

- none (B alone);
- six free-text requests of 1024 tokens (the baseline the bound is stated against);
- six requests of the costliest schemas the up-front limits still let through
  (llava_common/schema_costs.py): a pattern at the limit (`.*a.{15}`) and 32
  `anyOf` objects sharing six properties, kept in the engine in a closed loop
  (a neighbour whose grammar fails, here or over its mask budget, is sent again);
- the review's own hostile schemas (`.*a.{1000}`, 120 `anyOf` objects): now refused
  before they are queued, so B runs as alone.

B's decode time (first to last token) is the median of `--rounds` runs; the bound is
beside hostile schemas <= 1.5x beside free text. Writes bench/results/neighbours.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from llava_runtime.continuous_engine import ContinuousEngine
from llava_runtime.demo_model import ensure_demo_model
from llava_runtime.errors import ApiError
from llava_runtime.grammar import Grammars, MaskBudget
from llava_runtime.inputs import Limits, parse_chat, prepare
from llava_runtime.loader import Progress, load_model
from llava_runtime.metrics import ModelMetrics
from llava_runtime.settings import ModelSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "neighbours.md"
SHARED = {name: {} for name in "abcdef"}
AT_THE_LIMITS = {
    "pattern .*a.{15}": {"type": "object", "properties": {"a": {"type": "string", "pattern": "^.*a.{15}$"}},
                         "required": ["a"]},
    "32 anyOf objects": {"anyOf": [{"type": "object", "properties": {**SHARED, f"k{i}": {}}, "required": [f"k{i}"]}
                                   for i in range(32)]},
}
THE_REVIEWS = {
    "pattern .*a.{1000}": {"type": "object", "properties": {"a": {"type": "string", "pattern": "^.*a.{1000}$"}},
                           "required": ["a"]},
    "120 anyOf objects": {"anyOf": [{"type": "object", "properties": {**SHARED, f"k{i}": {}},
                                     "required": [f"k{i}"]} for i in range(120)]},
}


class Bench:
    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self.loaded = load_model(settings, Progress())
        self.engine = ContinuousEngine(self.loaded, settings, ModelMetrics())
        self.engine.prepare()
        self.engine.start()
        self.grammars = Grammars(self.loaded.tokenizer, MaskBudget(settings.mask_budget_ms / 1000,
                                                                   settings.mask_average_ms / 1000))
        self.limits = Limits(settings)

    def submit(self, request_id: str, tokens: int, schema: dict | None = None):
        body = {"messages": [{"role": "user", "content": f"Describe product {request_id} in detail."}],
                "max_tokens": tokens, "temperature": 0}
        if schema is None:
            body["min_tokens"] = tokens  # exactly `tokens` tokens: EOS cannot end it early
        else:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
        request = parse_chat(body, self.limits)
        prepared = prepare(request, self.loaded.processor, self.engine.length, self.loaded.image_token_id)
        output = request.params.response_format
        constraint = self.grammars.constraint(output, "tenant-a") if output is not None else None
        return self.engine.submit(prepared, request.params, request_id, constraint=constraint)

    def b_beside(self, neighbour) -> tuple[float, dict]:
        """B's decode seconds beside six neighbours kept in the engine by `neighbour(i)`
        (None: none), and what happened to the neighbours' requests."""
        stop, lock = threading.Event(), threading.Lock()
        outcomes = {"answered": 0, "failed alone (400)": 0, "refused up front (400)": 0}

        def count(outcome: str) -> None:
            with lock:
                outcomes[outcome] += 1

        def keep_sending(i: int) -> None:
            while not stop.is_set():
                try:
                    job = neighbour(i)
                except ApiError:
                    count("refused up front (400)")
                    stop.wait(0.05)
                    continue
                try:
                    job.result(timeout=600)
                    count("answered")
                except ApiError as error:
                    assert error.status == 400, error.message
                    count("failed alone (400)")

        threads = [threading.Thread(target=keep_sending, args=(i,), daemon=True) for i in range(6)] if neighbour \
            else []
        for thread in threads:
            thread.start()
        time.sleep(1.0 if threads else 0)  # the neighbours are decoding
        done = self.submit("b", 256).result(timeout=600)
        stop.set()
        for thread in threads:
            thread.join(600)
        return done.latency_s - done.ttft_s, outcomes


def main(argv: list[str]) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--rounds", type=int, default=3)
    options = args.parse_args(argv)
    demo = ensure_demo_model(Path(tempfile.gettempdir()) / "llava-bench-demo-model")
    bench = Bench(ModelSettings.from_env({"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo)}))
    sides = {"alone": None, "beside 6 free-text (1024 tokens)": lambda i: bench.submit(f"free{i}", 1024)}
    for name, schema in {**AT_THE_LIMITS, **THE_REVIEWS}.items():
        sides[f"beside 6 x {name}"] = lambda i, schema=schema: bench.submit(f"a{i}", 1024, schema)
    seconds = {name: [] for name in sides}
    outcomes = {name: {} for name in sides}
    for _ in range(options.rounds):  # alternating the sides over rounds: noise hits each alike
        for name, neighbour in sides.items():
            took, seen = bench.b_beside(neighbour)
            seconds[name].append(took)
            for key, count in seen.items():
                outcomes[name][key] = outcomes[name].get(key, 0) + count
            sys.stderr.write(f"  {name}: {took:.2f} s\n")
    bench.engine.stop(grace_s=5)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    free = median["beside 6 free-text (1024 tokens)"]
    rows = [f"| {name} | {median[name]:.2f} | {median[name] / free:.2f}x | "
            f"{', '.join(f'{k} {v}' for k, v in outcomes[name].items() if v) or '-'} |" for name in sides]
    worst = max(median[name] / free for name in sides if name.startswith("beside 6 x"))
    text = "\n".join([
        "# Another tenant's grammar beside my decoding", "",
        f"Command: `python -m bench.neighbours{'' if options.rounds == 3 else f' --rounds {options.rounds}'}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} cores (shared); the "
        "demo model on the CPU, the continuous engine in-process with the model process's default settings "
        "(GRAMMAR_MASK_BUDGET_MS=10, GRAMMAR_MASK_AVERAGE_MS=0.5). B: 256 tokens of free text, greedy; its decode "
        f"time (first to last token), median of {options.rounds} rounds; the sides alternate within each round.", "",
        "| B's neighbours | B's decode s | vs beside free text | the neighbours' requests |",
        "|---|---|---|---|", *rows, "",
        f"Worst beside hostile schemas / beside free text: **{worst:.2f}x** (bound: 1.5x).", "",
    ])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
