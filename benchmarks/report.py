"""Assemble docs/BENCHMARKS.md from the Markdown fragments the benchmark scripts leave in benchmarks/results/.

Sections come in a fixed order, each under its own heading with the script that measures it and when it ran; the
machine is described once. A section whose script has not produced a fragment, or whose last run failed (a
NAME.failed file left by run_all.py), says so instead of silently showing nothing or stale figures.

    .venv/bin/python benchmarks/report.py [--results DIR] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, machine  # noqa: E402

# (fragment name, section title, what it answers)
SECTIONS = (
    ("nab_eval", "Anomaly detection: NAB v1.1", "the detector's score under the NAB rules, next to published ones"),
    (
        "nab_baseline",
        "Anomaly detection: the runtime's anomaly stage without a model",
        "what the likelihood, the range rule and alarm de-duplication are worth on NAB, and what they cost",
    ),
    ("etth1", "Forecasting: ETTh1", "forecast error under the standard protocol, next to baselines and published"),
    ("export_artifacts", "Export: sizes, parity and per-step latency", "what each artifact costs in each runtime"),
    (
        "runtime_throughput",
        "Edge runtime: overhead, many streams, window recompute, MQTT end to end, footprint",
        "the runtime's speed and memory against issue 7's targets",
    ),
    ("sources_throughput", "Edge runtime: input sources", "what reading CSV, JSON lines and MQTT costs per sample"),
    ("spool_throughput", "Edge runtime: the durable spool", "how many messages per second the outbox sustains"),
    ("train_time", "Training time", "how long `rnnedge train` takes on a real sensor file"),
)
DEFAULT_OUT = REPO / "docs" / "BENCHMARKS.md"


def demoted(fragment: str) -> str:
    """Fragments may start at any heading level; inside a section they sit at level 3 or below."""
    return re.sub(r"^#{1,2} ", "### ", fragment, flags=re.MULTILINE).strip()


RUN_ALL_KEYS = {"time": "finished", "machine": "machine"}  # the same facts as run_all.json names them


def recorded(results: Path, name: str, key: str) -> Any:
    """`key` ("time" or "machine") as the script's own JSON records it, else as run_all.json recorded the step."""
    for path, pick in (
        (results / f"{name}.json", lambda doc: doc.get(key)),
        (results / "run_all.json", lambda doc: doc.get("steps", {}).get(name, {}).get(RUN_ALL_KEYS[key])),
    ):
        try:
            found = pick(json.loads(path.read_text())) if path.is_file() else None
        except (ValueError, AttributeError):
            found = None
        if found:
            return found
    return None


def measured_at(results: Path, name: str) -> str:
    """When the fragment was measured; the file's time only when nothing recorded it."""
    when = recorded(results, name, "time")
    if when:
        return str(when)
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((results / f"{name}.md").stat().st_mtime))


def other_machine(results: Path, name: str, here: dict) -> str | None:
    """The machine a section was measured on, when it was not this one."""
    where = recorded(results, name, "machine")
    if isinstance(where, dict) and "cpu" in where and where != here:
        return ", ".join(f"{k} {v}" for k, v in where.items())
    return None


def section(results: Path, name: str, title: str, purpose: str, here: dict) -> list[str]:
    script = f"benchmarks/{name}.py"
    lines = [f"## {title}", ""]
    fragment = results / f"{name}.md"
    failed = results / f"{name}.failed"
    if not fragment.is_file():
        why = f"its last run failed: {failed.read_text().strip()}" if failed.is_file() else "it has not run"
        return lines + [f"Not measured: `{script}` has produced no results ({why}). Run it, or `make bench`.", ""]
    lines.append(f"*{purpose[0].upper() + purpose[1:]}.* Measured {measured_at(results, name)} by `{script}`.")
    if failed.is_file():
        lines.append(
            f"**The last run of `{script}` failed** ({failed.read_text().strip()}): the figures below are from "
            "the earlier run dated above."
        )
    elsewhere = other_machine(results, name, here)
    if elsewhere:
        lines.append(f"Measured on another machine: {elsewhere}.")
    return lines + ["", demoted(fragment.read_text()), ""]


def build_report(results: Path) -> str:
    here = machine()
    lines = [
        "# Benchmarks",
        "",
        "Every figure on this page is produced by a script in `benchmarks/`; none is typed by hand. `make bench` "
        f"runs them all in this order (`benchmarks/run_all.py`{duration(results)}) and rebuilds this "
        "page; `python benchmarks/report.py` rebuilds it from the results already in `benchmarks/results/`. "
        "Speeds are medians over repeated runs with their spread (min-max) and, where a baseline exists, the "
        "ratio against it measured in the same run. `make test` runs a smoke version (`run_all.py --quick`, tiny "
        "sizes, results in a temporary directory).",
        "",
        f"Machine: {here['cpu']}, {here['cores']} cores, {here['system']}, Python {here['python']}. These are "
        "shared machines: figures can move by 10-20% between runs, hence the spreads.",
        "",
        "Contents: " + ", ".join(f"[{title}](#{anchor(title)})" for _, title, _ in SECTIONS) + ".",
        "",
    ]
    for name, title, purpose in SECTIONS:
        lines += section(results, name, title, purpose, here)
    return "\n".join(lines).rstrip() + "\n"


def duration(results: Path) -> str:
    """How long the last run_all.py took, from its record (empty if there is none)."""
    record = results / "run_all.json"
    try:
        doc = json.loads(record.read_text()) if record.is_file() else None
    except ValueError:
        doc = None
    if not doc or doc.get("quick"):
        return ""
    steps = ", ".join(f"{name} {step['seconds'] / 60:.1f}" for name, step in doc["steps"].items())
    return f"; its last full run took {doc['seconds'] / 60:.0f} min on this machine: {steps} min"


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="fragments directory (default: benchmarks/results)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: docs/BENCHMARKS.md")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(build_report(args.results), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
