"""NAB score of the runtime's anomaly stage behind a trivial forecaster (the previous value), and its cost.

Under the NAB rules no labels are used: for each of the 58 files the anomaly prior (residual statistics, value
range) is measured on the probationary period only, then the rest of the file is streamed one row at a time
through `edge_runtime.anomaly.StreamAnomaly` with its default parameters, exactly as a device would. The NAB
anomaly score of a row is the runtime's score where its alarm fires and 0 elsewhere, so NAB counts the alarms a
device would raise (its threshold sweep can only raise the alarm threshold). Scored by
trainer.evaluation.nab_scorer for the three profiles, with ablations that show what each stage is worth.

Also: the scorer's reproduction of the published HTM rows, and microseconds per update.

    .venv/bin/python benchmarks/nab_baseline.py [--data DIR] [--out FILE] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_runtime.anomaly import AlarmGate, AnomalyLikelihood, AnomalyParams, StreamAnomaly
from trainer.evaluation import nab_scorer

REPO = Path(__file__).resolve().parents[1]

HTM_THRESHOLD = 0.542187690735  # the published standard-profile threshold of the Numenta HTM detector
VARIANTS = {
    "default (likelihood + range rule + alarm de-duplication)": {},
    "no range rule": {"range_tolerance": None},
    "no de-duplication (an alarm on every row at or above 0.5)": {"rearm_after": 0},
    "neither": {"range_tolerance": None, "rearm_after": 0},
}

POLICY_FIELDS = (
    "short_window",
    "long_window",
    "range_tolerance",
    "threshold",
    "rearm_below",
    "rearm_after",
    "min_gap",
)


def stream_file(file: nab_scorer.NabFile, params: AnomalyParams) -> np.ndarray:
    """NAB score per row: the probation period only sets the prior; later rows are streamed one by one."""
    values = file.values.tolist()
    probation = nab_scorer.probation_rows(len(values))
    training = values[:probation]
    residuals = [b - a for a, b in zip(training, training[1:], strict=False)]
    measured = AnomalyParams.measure(residuals, training, **{k: getattr(params, k) for k in POLICY_FIELDS})
    detector = StreamAnomaly(measured)
    scores = [0.0] * len(values)
    previous = values[probation - 1]  # the forecast of the trivial forecaster: the last value seen
    for row in range(probation, len(values)):
        verdict = detector.update(values[row] - previous, values[row])
        if verdict.alarm:
            scores[row] = verdict.score
        previous = values[row]
    return np.array(scores)


def corpus_scores(scores: dict[str, np.ndarray], layouts: dict, profiles: dict) -> dict[str, dict]:
    out = {}
    for name in nab_scorer.PROFILE_NAMES:
        out[name] = nab_scorer.score_corpus(scores, layouts, profiles[name]).totals()
    return out


def htm_fixture(nab_dir: Path, layouts: dict, profiles: dict) -> dict:
    """The published HTM rows of the 7 realKnownCause files, scored at HTM's threshold and swept on the subset."""
    per_file, scores = {}, {}
    for path in sorted((nab_dir / "results" / "numenta" / "realKnownCause").glob("numenta_*.csv")):
        name = "realKnownCause/" + path.name.removeprefix("numenta_")
        scores[name] = nab_scorer.read_results(path).scores
        per_file[name] = {
            p: round(nab_scorer.score_file(scores[name], layouts[name], profiles[p], HTM_THRESHOLD).score, 6)
            for p in nab_scorer.PROFILE_NAMES
        }
    subset = {name: layouts[name] for name in scores}
    return {
        "threshold": HTM_THRESHOLD,
        "per_file": per_file,
        "sum_standard": round(sum(f["standard"] for f in per_file.values()), 6),
        "subset_sweep_not_comparable_with_published": corpus_scores(scores, subset, profiles),
    }


def median_us(function, samples: list[float], repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(samples)
        timings.append((time.perf_counter() - started) / len(samples) * 1e6)
    return statistics.median(timings)


def update_costs() -> dict[str, float]:
    """Median microseconds per update on 100,000 Gaussian residuals, and a bare Python loop for scale."""
    rng = random.Random(0)
    residuals = [rng.gauss(0.0, 1.0) for _ in range(100_000)]
    values = [20.0 + r for r in residuals]
    params = AnomalyParams.measure(residuals[:1000], values[:1000])

    def bare_loop(xs: list[float]) -> None:
        total = 0.0
        for x in xs:
            total += abs(x)

    def likelihood(xs: list[float]) -> None:
        update = AnomalyLikelihood(params).update
        for x in xs:
            update(x)

    def gate(xs: list[float]) -> None:
        update = AlarmGate(params).update
        for x in xs:
            update(abs(x) / 4)

    def stream(xs: list[float]) -> None:
        update = StreamAnomaly(params).update
        for x, v in zip(xs, values, strict=True):
            update(x, v)

    return {
        "bare_python_loop_us": round(median_us(bare_loop, residuals), 4),
        "likelihood_update_us": round(median_us(likelihood, residuals), 3),
        "alarm_gate_update_us": round(median_us(gate, residuals), 3),
        "stream_anomaly_update_us": round(median_us(stream, residuals), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(os.environ.get("RNNEDGE_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data, help="shared data directory (holds nab/)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nab_baseline.json")
    parser.add_argument("--results-dir", type=Path, help="also write one NAB results CSV per file here")
    args = parser.parse_args()
    nab_dir = args.data / "nab"
    if not (nab_dir / "labels" / "combined_windows.json").is_file():
        print(f"nab_baseline: no NAB corpus under {nab_dir} (set RNNEDGE_DATA or --data)", file=sys.stderr)
        return 2

    started = time.perf_counter()
    corpus = nab_scorer.load_corpus(nab_dir)
    profiles = nab_scorer.load_profiles(nab_dir)
    layouts = {f.name: nab_scorer.file_layout(len(f.values), f.windows) for f in corpus}
    load_s = time.perf_counter() - started

    report: dict = {"variants": {}}
    for label, overrides in VARIANTS.items():
        params = replace(AnomalyParams(), **overrides)
        started = time.perf_counter()
        scores = {f.name: stream_file(f, params) for f in corpus}
        stream_s = time.perf_counter() - started
        started = time.perf_counter()
        result = corpus_scores(scores, layouts, profiles)
        score_s = time.perf_counter() - started
        report["variants"][label] = {
            "policy": {k: getattr(params, k) for k in POLICY_FIELDS},
            "scores": result,
            "stream_seconds": round(stream_s, 2),
            "scoring_seconds_3_profiles": round(score_s, 2),
        }
        print(f"{label}: " + ", ".join(f"{p} {r['normalised']:.2f}" for p, r in result.items()), flush=True)
        if args.results_dir and not overrides:
            for f in corpus:
                labels = nab_scorer.window_labels(layouts[f.name])
                path = args.results_dir / f.name.replace("/", "/baseline_", 1)
                nab_scorer.write_results(path, f.timestamps, f.values, scores[f.name], labels)

    report["rows"] = sum(len(f.values) for f in corpus)
    report["files"] = len(corpus)
    report["load_seconds"] = round(load_s, 2)
    report["htm_fixture"] = htm_fixture(nab_dir, layouts, profiles)
    report["update_cost"] = update_costs()
    report["machine"] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("htm_fixture", "update_cost")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
