"""Shared benchmark helpers: a throwaway cluster with the demo, servers started like a user would,
percentiles and a markdown table."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import free_port, serve, stop, throwaway_cluster  # noqa: E402  (test helpers, reused as is)

__all__ = ["free_port", "serve", "stop", "throwaway_cluster", "percentiles", "markdown_table", "write_result"]


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    if not ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"p50": q[49], "p95": q[94], "p99": q[98]}


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.1f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    path.write_text(f"# {title}\n\nRun {stamp} on this machine (2 cores). Ratios matter, not absolute times.\n\n{body}\n",
                    encoding="utf-8")
    return path

