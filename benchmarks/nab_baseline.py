"""NAB score of the runtime's anomaly stage behind a trivial forecaster (the previous value), and its cost.

Under the NAB rules no labels are used: for each of the 58 files the anomaly prior (residual statistics, value
range) is measured on the probationary period only, then the rest of the file is streamed one row at a time
through `edge_runtime.anomaly.StreamAnomaly` with its default parameters, exactly as a device would. The NAB
anomaly score of a row is the runtime's score where its alarm fires and 0 elsewhere, so NAB counts the alarms a
device would raise (its threshold sweep can only raise the alarm threshold). Scored by
trainer.evaluation.nab_scorer for the three profiles, with ablations that show what each stage is worth.

Also: the scorer's reproduction of the published HTM rows, and microseconds per update.

Writes benchmarks/results/nab_baseline.json and the Markdown fragment nab_baseline.md (`make bench`).

    .venv/bin/python benchmarks/nab_baseline.py [--data DIR] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_runtime.anomaly import AlarmGate, AnomalyLikelihood, AnomalyParams, StreamAnomaly
from trainer.evaluation import nab_scorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, write_result  # noqa: E402

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
    parser.add_argument("--data", type=Path, default=data_dir(), help="shared data directory (holds nab/)")
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
    report["numpy"] = np.__version__
    write_result("nab_baseline", report, markdown(report))
    return 0


def markdown(report: dict) -> str:
    """The section of docs/BENCHMARKS.md: the score of each variant, the scorer check and the cost per update."""
    profiles = nab_scorer.PROFILE_NAMES
    lines = [
        f"The runtime's anomaly stage alone (`StreamAnomaly`, default parameters) behind a trivial forecaster (the "
        f"previous value), on all {report['files']} NAB files ({report['rows']:,} rows), labels unused. Normalised "
        "NAB scores, and what each stage is worth:",
        "",
        f"| variant | {' | '.join(profiles)} | windows detected / missed (standard) | false-positive rows |",
        "|---|" + "---:|" * (len(profiles) + 2),
    ]
    for label, variant in report["variants"].items():
        scores = variant["scores"]
        standard = scores["standard"]
        normalised = " | ".join(f"{scores[p]['normalised']:.2f}" for p in profiles)
        lines.append(
            f"| {label} | {normalised} | "
            f"{standard['detected_windows']} / {standard['missed_windows']} | {standard['false_positive_rows']} |"
        )
    htm = report["htm_fixture"]
    cost = report["update_cost"]
    lines += [
        "",
        f"Scorer check: the published Numenta HTM rows of the {len(htm['per_file'])} realKnownCause files, scored "
        f"at HTM's threshold {htm['threshold']:.4f}, sum to {htm['sum_standard']:.4f} (standard profile, raw).",
        "",
        f"Cost per update (median of 5 passes over 100,000 residuals): likelihood {cost['likelihood_update_us']} us, "
        f"alarm gate {cost['alarm_gate_update_us']} us, the whole stage {cost['stream_anomaly_update_us']} us "
        f"(a bare Python loop: {cost['bare_python_loop_us']} us).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
