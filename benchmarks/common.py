"""Shared by the benchmark scripts: where results go, repeated timing with medians and spread, the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The shared real data (NAB, ETTh1): RNNEDGE_DATA, default ../shared/data beside the repository."""
    return Path(os.environ.get("RNNEDGE_DATA", REPO.parent / "shared" / "data"))


def per_call_us(call: Callable[[], Any], calls: int, repeats: int) -> dict[str, float]:
    """Median (and min/max) over `repeats` runs of the mean time of one call, in microseconds."""
    for _ in range(min(calls, 200)):
        call()  # warm caches and lazy initialisation
    runs = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for _ in range(calls):
            call()
        runs.append((time.perf_counter_ns() - started) / calls / 1000)
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "repeats": repeats}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def write_result(name: str, data: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)


def fmt(timing: dict[str, float]) -> str:
    return f"{timing['median']:.1f} ({timing['min']:.1f}-{timing['max']:.1f})"
