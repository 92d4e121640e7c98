"""bench/results/gpu.md, rewritten whole each time a figure lands, so a run that
is stopped (a time limit's SIGINT) or fails half way leaves every figure it got,
the ones it did not get marked as such, and a note saying why.

Each row stands beside its ceiling (bench/ceiling.py, from what this run measured
on this card) and its target; the last two columns give the continuous engine's
figure as a fraction of the ceiling and whether it meets the target.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MISSING = "not measured"


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    cell: Callable                    # value -> text
    ceiling: Callable | None = None   # Ceiling -> the value a perfect engine would get
    # (value, ceiling value) -> (fraction text, passed); None = no target
    target: Callable | None = None
    target_text: Callable = lambda ceiling: ""


def _at_least(share: float):
    return lambda v, c: (f"{v / c:.2f} of the ceiling", v >= share * c)


def rows(concurrency: list[int], repeats: int) -> list[Row]:
    table = [
        Row("ready_s", "process start to ready (load + warmup)",
            lambda r: f"{r['ready_s']:.1f} s (weights {r['load_s']:.1f} s, warmup {r['warmup_s']:.1f} s)",
            target=lambda v, c: (f"{v['ready_s'] / 45:.2f} of 45 s", v["ready_s"] <= 45),
            target_text=lambda c: "<= 45 s"),
        Row("ttft", f"time to first token, alone, median of {repeats}", lambda v: f"{v * 1000:.0f} ms",
            ceiling=lambda c: c.prefill_s,
            target=lambda v, c: (f"{v / c:.2f}x the ceiling", v <= 1.5 * c + 0.020),
            target_text=lambda c: f"<= 1.5x + 20 ms = {(1.5 * c.prefill_s + 0.020) * 1000:.0f} ms"),
        Row("batch1", "decode at batch 1", lambda v: f"{v:.1f} tokens/s", ceiling=lambda c: c.batch1,
            target=_at_least(0.80), target_text=lambda c: f">= 0.80x = {0.8 * c.batch1:.0f} tokens/s"),
    ]
    for n in concurrency:
        table.append(Row(f"aggregate_{n}", f"aggregate at concurrency {n} (prefill counted)",
                         lambda v: f"{v:.0f} tokens/s", ceiling=lambda c, n=n: c.aggregate(n),
                         target=_at_least(0.80) if n in (8, 16) else None,
                         target_text=lambda c, n=n: f">= 0.80x = {0.8 * c.aggregate(n):.0f} tokens/s"
                         if n in (8, 16) else ""))
        if n == 8:
            table.append(Row("latency_8", "latency at concurrency 8: p50 / p95",
                             lambda v: f"{v[0]:.2f} s / {v[1]:.2f} s", ceiling=lambda c: c.latency(8),
                             target=lambda v, c: (f"p95 {v[1] / c:.2f}x the ideal", v[1] <= 1.25 * c),
                             target_text=lambda c: f"p95 <= 1.25x = {1.25 * c.latency(8):.2f} s"))
    table += [
        Row("schema", "structured output at concurrency 8: JSON Schema / free text of as many tokens",
            lambda v: f"{v[0]:.0f} / {v[1]:.0f} tokens/s = {v[0] / v[1]:.2f}x"),
        Row("decode", "decode step as served (`/health`)", str),
        Row("memory", "GPU memory allocated after the runs", lambda r: f"{r['bytes'] / 2**30:.1f} GiB"
            + (f", {r['rows']} KV rows" if r.get("rows") else "")),
    ]
    return table


def _ceiling_text(key: str, value: float) -> str:
    if key == "ttft":
        return f"{value * 1000:.0f} ms"
    if key == "latency_8":
        return f"{value:.2f} s"
    return f"{value:.0f} tokens/s"


class Report:
    def __init__(self, path: Path, engines: list[str], title: str, header: list[str], table: list[Row]):
        self.path, self.engines, self.title, self.header, self.table = Path(path), engines, title, header, table
        self.card: dict | None = None
        self.ceiling = None
        self.values: dict[str, dict] = {engine: {} for engine in engines}
        self.notes: list[str] = []

    def set_card(self, card: dict, ceiling) -> None:
        self.card, self.ceiling = card, ceiling
        self.write()

    def add(self, engine: str, key: str, value) -> None:
        self.values[engine][key] = value
        self.write()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.write()

    def render(self) -> str:
        lines = [f"# {self.title}", "", *self.header, ""]
        if self.card:
            c = self.ceiling
            lines += [f"The card, measured first ({self.card['name']}): device-to-device copy "
                      f"{self.card['copy_bytes_per_s'] / 1e9:.0f} GB/s (read + write), "
                      f"{self.card['matmul_dtype']} matrix product {self.card['matmul_flops'] / 1e12:.3g} TFLOP/s. "
                      f"Ceilings from those two numbers: a decode step reads the weights "
                      f"({c.shapes.weight_bytes / 2**30:.3g} GiB) and each row's KV "
                      f"({c.shapes.kv_bytes_per_token / 2**20:.3g} MiB per token) once; a prefill is "
                      f"{c.prefill_flop / 1e12:.3g} TFLOP ({c.prompt} prompt tokens, {c.vision_tokens} vision "
                      f"patches) at the measured matrix rate.", ""]
        else:
            lines += ["The card: not measured yet.", ""]
        lines += ["| measurement | " + " | ".join(self.engines) + " | ceiling | target | continuous vs ceiling |"
                  " meets target |", "|---|" + "---|" * (len(self.engines) + 4)]
        for row in self.table:
            cells = [row.cell(self.values[e][row.key]) if row.key in self.values[e] else MISSING
                     for e in self.engines]
            ceiling = row.ceiling(self.ceiling) if row.ceiling and self.ceiling else None
            fraction, verdict = "", ""
            value = self.values.get("continuous", {}).get(row.key)
            if row.target and value is not None and (ceiling is not None or row.ceiling is None):
                fraction, passed = row.target(value, ceiling)
                verdict = "pass" if passed else "**miss**"
            lines.append(f"| {row.label} | " + " | ".join(cells) + " | "
                         + (_ceiling_text(row.key, ceiling) if ceiling is not None else "") + " | "
                         + (row.target_text(self.ceiling) if row.target and self.ceiling else "")
                         + f" | {fraction} | {verdict} |")
        lines.append("")
        lines += [f"- {note}" for note in self.notes]
        lines += ["", f"Written {datetime.datetime.now():%Y-%m-%d %H:%M:%S}."]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(self.render())
        os.replace(partial, self.path)  # a reader (or a kill) never sees half a file
