"""Training time of the default LSTM-32 on NAB machine_temperature (22,695 rows) to early stop; target <= 60 s.

Runs `rnnedge train`'s own code with its defaults (window 64, 70/10/20 split, early stopping on validation loss)
and reports the fit time (the `training.seconds` of metrics.json) and the wall time of the whole command
(reading, cleaning, training, test evaluation, report; plots off), the median over --repeats runs.

    .venv/bin/python benchmarks/train_time.py [--csv FILE] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "trainer" / "samples" / "machine_temperature_system_failure.csv"  # the NAB file, shipped
TARGET_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=SAMPLE)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_time.json")
    args = parser.parse_args()
    if not args.csv.is_file():
        print(f"train_time: no file {args.csv}", file=sys.stderr)
        return 2

    from trainer.train import TrainOptions, train

    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            started = time.monotonic()
            options = TrainOptions(args.csv, ("value",), (), None, quiet=True, plots=False, seed=repeat)
            metrics = train(options, Path(scratch) / "run")
            wall = time.monotonic() - started
        training = metrics["training"]
        runs.append(
            {
                "seed": repeat,
                "fit_seconds": training["seconds"],
                "wall_seconds": round(wall, 2),
                "epochs": training["epochs"],
                "best_epoch": training["best_epoch"],
                "stopped_early": training["stopped_early"],
                "train_windows": training["train_windows"],
                "parameters": training["parameters"],
                "test_mae": round(metrics["test"]["model"]["mae"], 4),
                "test_persistence_mae": round(metrics["test"]["persistence"]["mae"], 4),
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    fit = statistics.median(r["fit_seconds"] for r in runs)
    wall = statistics.median(r["wall_seconds"] for r in runs)
    report = {
        "benchmark": "LSTM-32 on machine_temperature to early stop",
        "target_seconds": TARGET_SECONDS,
        "median_fit_seconds": fit,
        "median_wall_seconds": wall,
        "meets_target": wall <= TARGET_SECONDS,
        "runs": runs,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    epochs = ", ".join(f"{r['epochs']} ({r['best_epoch']})" for r in runs)
    fragment = (
        "### Training time: LSTM-32 on machine_temperature (22,695 rows), defaults, to early stop\n\n"
        "| runs | fit s (median) | whole command s (median) | epochs (best) per run | target |\n"
        "|---|---|---|---|---|\n"
        f"| {len(runs)} | {fit} | {wall} | {epochs} | <= {TARGET_SECONDS:.0f} s: "
        f"{'met' if wall <= TARGET_SECONDS else 'MISSED'} |\n\n"
        f"Test MAE per run: {', '.join(str(r['test_mae']) for r in runs)} "
        f"(persistence {runs[0]['test_persistence_mae']}).\n"
    )
    args.out.with_suffix(".md").write_text(fragment)
    print(fragment)
    return 0 if wall <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
