"""Run every benchmark script in order, then assemble docs/BENCHMARKS.md (`make bench`).

`--quick` runs each script at tiny sizes (a smoke test of the whole chain: its figures mean nothing) and is meant
with `--results` pointing at a scratch directory. A script that fails does not stop the others: its error is left
in RESULTS/NAME.failed, which the report shows next to that section's previous figures, and the command exits 1.
Each script's time goes to RESULTS/run_all.json (with --only, the others' earlier times stay).

    .venv/bin/python benchmarks/run_all.py [--quick] [--results DIR] [--report FILE] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, machine  # noqa: E402
from report import DEFAULT_OUT, SECTIONS, build_report  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
SAMPLE = REPO / "trainer" / "samples" / "machine_temperature_system_failure.csv"
# Runs a script with common.RESULTS pointed at the chosen directory (common.py fixes it to benchmarks/results),
# so that scripts which write through common.write_result follow --results too.
LAUNCH = (
    "import runpy, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import common; "
    "common.RESULTS = Path(sys.argv[2]); script = sys.argv[3]; sys.argv = sys.argv[3:]; "
    "runpy.run_path(script, run_name='__main__')"
)


@dataclass(frozen=True)
class Step:
    name: str  # the script benchmarks/NAME.py and its fragment RESULTS/NAME.md
    full: Callable[[Path], list[str]]  # arguments, given the results directory
    quick: Callable[[Path], list[str]]
    stdout_is_fragment: bool = False  # the script prints its Markdown instead of writing a fragment


def _small_csv(results: Path) -> str:
    """The first 3,000 rows of the shipped sample, for a quick training-time run."""
    path = results / "quick_train.csv"
    path.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:3001]))
    return str(path)


STEPS = (
    Step("nab_eval", lambda r: [], lambda r: ["--quick"]),
    Step("nab_baseline", lambda r: [], lambda r: []),  # the whole corpus takes seconds: no smaller quick run
    Step(
        "etth1",
        lambda r: ["--out", str(r / "etth1.json")],
        lambda r: [
            *("--out", str(r / "etth1.json"), "--horizons", "24", "--seeds", "0", "--units", "4"),
            *("--epochs", "1", "--no-ablation"),
        ],
    ),
    Step("export_artifacts", lambda r: [], lambda r: ["--units", "8", "--calls", "100", "--repeats", "2"]),
    Step("runtime_throughput", lambda r: [], lambda r: ["--quick"]),
    Step(
        "sources_throughput",
        lambda r: ["--json", str(r / "sources_throughput.json")],
        lambda r: [
            *("--json", str(r / "sources_throughput.json")),
            *("--rows", "5000", "--messages", "1000", "--repeat", "1"),
        ],
        stdout_is_fragment=True,
    ),
    Step(
        "spool_throughput",
        lambda r: [],
        lambda r: ["--messages", "1000", "--repeat", "1"],
        stdout_is_fragment=True,
    ),
    Step(
        "train_time",
        lambda r: ["--out", str(r / "train_time.json"), "--repeats", "3"],
        lambda r: ["--out", str(r / "train_time.json"), "--csv", _small_csv(r)],
    ),
)
assert [s.name for s in STEPS] == [name for name, _, _ in SECTIONS], "run_all.py and report.py list the same steps"


def run_step(step: Step, results: Path, quick: bool) -> tuple[bool, float]:
    """Run one script; on failure leave NAME.failed with the reason. Returns (ok, seconds)."""
    failed = results / f"{step.name}.failed"
    args = (step.quick if quick else step.full)(results)
    command = [sys.executable, "-c", LAUNCH, str(BENCHMARKS), str(results), str(BENCHMARKS / f"{step.name}.py")]
    print(f"== {step.name}: {' '.join(args) or '(defaults)'}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.run([*command, *args], stdout=stdout, text=True, cwd=REPO)
        stdout.seek(0)
        output = stdout.read()
    seconds = time.perf_counter() - started
    print(output, end="" if output.endswith("\n") else "\n", flush=True)
    if process.returncode != 0:
        failed.write_text(f"exit status {process.returncode} on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        return False, seconds
    if step.stdout_is_fragment:
        (results / f"{step.name}.md").write_text(output)
    failed.unlink(missing_ok=True)
    return True, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the chain")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="fragments directory (default: benchmarks/results)"
    )
    parser.add_argument("--report", type=Path, default=DEFAULT_OUT, help="default: docs/BENCHMARKS.md")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], help="run only these scripts")
    args = parser.parse_args()
    if args.quick and args.results.resolve() == RESULTS.resolve():
        parser.error("--quick figures mean nothing: give --results a scratch directory, not benchmarks/results")
    args.results.mkdir(parents=True, exist_ok=True)
    steps = {}
    here = machine()
    for step in STEPS:
        if args.only and step.name not in args.only:
            continue
        ok, seconds = run_step(step, args.results, args.quick)
        # when and where, for the report: not every script records them in its own JSON
        finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        steps[step.name] = {"ok": ok, "seconds": round(seconds, 1), "finished": finished, "machine": here}
    record_path = args.results / "run_all.json"
    if args.only and record_path.is_file():  # the other scripts' latest times still stand
        earlier = json.loads(record_path.read_text())
        if earlier.get("quick") == args.quick:
            steps = {**earlier["steps"], **steps}
    record = {
        "quick": args.quick,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(sum(step["seconds"] for step in steps.values()), 1),
        "steps": {name: steps[name] for name in (s.name for s in STEPS) if name in steps},
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(build_report(args.results), encoding="utf-8")
    ran = [name for name in steps if not args.only or name in args.only]
    failures = [name for name in ran if not steps[name]["ok"]]
    print(f"wrote {args.report}; ran {len(ran)} scripts", end="")
    print(f"; FAILED: {', '.join(failures)}" if failures else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
