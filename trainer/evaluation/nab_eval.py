"""`rnnedge eval nab`: the product's own detector on the Numenta Anomaly Benchmark, under the NAB rules.

For each corpus file, with no label in sight: train a small forecaster (`rnnedge train`'s code) on the file's
probationary period only (the first min(floor(0.15 n), 750) rows), export its ONNX step model (`rnnedge
export`'s code, parity gate included), then stream every row of the file through the edge runtime's
`StreamEngine` one sample at a time, as a device replaying the CSV would. The engine turns each one-step
residual into an anomaly score in [0, 1] and raises at most one alarm per incident.

The NAB anomaly score of a row is the engine's score on the rows where it raises an alarm, and 0 elsewhere
(no forecast yet, warm-up after a gap, a refused sample): NAB then counts exactly the alarms a device would
raise, and its threshold sweep can only drop the weakest of them. Scoring every row's raw score instead lets
the sweep flag every row of an incident, each one outside a window a false positive (benchmarks/nab_baseline.py
measures what the de-duplication is worth).

Detection (`detect_file`) reads a data file and nothing else; the labels are read afterwards, by `score_run`,
for the results files' label column and the score. Files are processed in up to `jobs` worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.csv_source import iter_rows
from edge_runtime.errors import InputError
from edge_runtime.payloads import parse_timestamp
from edge_runtime.samples import Sample
from trainer.evaluation import nab_scorer

DETECTOR = "rnnedge"
SUMMARY_NAME = "summary"
MIN_WINDOW = 4
LABELS = "labels/combined_windows.json"
NAB_FILES = 58  # NAB v1.1


@dataclass(frozen=True)
class DetectorSettings:
    """The forecaster trained per file. Small on purpose: 750 rows of history cannot feed a big model."""

    cell: str = "lstm"
    units: int = 16
    window: int = 32  # the longest; files with short probationary periods get less (`training_window`)
    epochs: int = 50  # at most: the trainer's default, early stopping on the validation rows decides
    seed: int = 0


@dataclass(frozen=True)
class FileDetection:
    """What the detector made of one data file, with the counts a device's metrics would show."""

    name: str  # relative to the corpus's data/ folder, e.g. "realKnownCause/nyc_taxi.csv"
    timestamps: list[str]
    values: np.ndarray
    scores: np.ndarray  # the NAB anomaly score per row: the engine's score where it alarms, else 0
    probation: int
    window: int
    epochs: int  # trained, before early stopping ended it
    forecasts: int
    alarms: int
    refused: int  # samples the engine refused (e.g. a repeated timestamp): scored 0
    gap_resets: int
    train_seconds: float
    export_seconds: float
    stream_seconds: float
    untrained: str = ""  # why the trainer refused the probationary rows (then no alarm, every score 0)

    def facts(self) -> dict[str, Any]:
        skip = {"timestamps", "values", "scores"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def training_window(probation: int, longest: int) -> int:
    """The trainer's 70/10/20 split of the probationary rows must fit a window and its target in the 10%.

    When gaps cut the probationary rows into shorter stretches, `detect_file` halves it until it fits."""
    return max(MIN_WINDOW, min(longest, probation // 10 - 1))


def corpus_files(nab_dir: Path) -> list[str]:
    """The data files of a corpus directory, relative to data/, sorted; found without reading any label."""
    data = Path(nab_dir) / "data"
    names = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*.csv"))
    if not names:
        raise InputError(f"{data}: no data files (expected data/<folder>/<file>.csv: is this a NAB corpus?)")
    return names


def detect_file(path: Path, name: str, settings: DetectorSettings, scratch: Path) -> FileDetection:
    """Train on the probationary rows of one file, export, and stream the whole file through the engine."""
    from edge_runtime.backends import open_step_backend
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engine import EngineSettings, StreamEngine
    from export.bundle_export import ExportOptions, export_bundle
    from trainer.train import TrainOptions, train

    rows = list(iter_rows(path, ("value",), "timestamp"))  # the CSV replay source's reader and timestamp rule
    times = []
    for row in rows:
        try:
            if row.values is None:
                raise ValueError(row.problem)
            times.append(parse_timestamp(row.timestamp))
        except ValueError as problem:
            raise InputError(f"{path}: line {row.line}: {problem}") from None
    probation = nab_scorer.probation_rows(len(rows))
    window = training_window(probation, settings.window)
    probation_csv = scratch / "probation.csv"
    kept = "".join(f"{r.timestamp},{r.values[0]!r}\n" for r in rows[:probation])
    probation_csv.write_text("timestamp,value\n" + kept, encoding="utf-8")

    started = time.perf_counter()
    while True:
        options = TrainOptions(
            probation_csv,
            ("value",),
            (),
            "timestamp",
            cell=settings.cell,
            layers=(settings.units,),
            window=window,
            horizon=1,
            epochs=settings.epochs,
            seed=settings.seed,
            quiet=True,
            plots=False,
        )
        try:
            epochs = int(train(options, scratch / "run")["training"]["epochs"])
            break
        except InputError as refusal:  # gaps leave no stretch long enough: shorter windows; a flat line: none
            if window // 2 < MIN_WINDOW:
                return _untrained(name, rows, probation, window, str(refusal).split(": ", 1)[-1])
            window //= 2
    trained = time.perf_counter()
    bundle, parity = export_bundle(
        scratch / "run", scratch / "bundle", ExportOptions(formats=("onnx",), precisions=("float32",))
    )
    if not parity.passed:
        raise InputError(f"{name}: the exported model failed its parity gate: {parity.summary()}")
    exported = time.perf_counter()

    bundle = load_bundle(bundle.path)
    engine = StreamEngine(bundle, open_step_backend(bundle, bundle.manifest.artifact("onnx")), EngineSettings())
    stream = Path(name).stem
    scores = np.zeros(len(rows))
    for index, (row, (ts, text)) in enumerate(zip(rows, times, strict=True)):
        forecasts, _ = engine.process([Sample(stream, ts, text, row.values)])
        for alarm, score in zip(forecasts.alarm, forecasts.score, strict=True):
            if alarm:
                scores[index] = score
    streamed = time.perf_counter()

    counters = engine.counters
    return FileDetection(
        name=name,
        timestamps=[r.timestamp for r in rows],
        values=np.array([r.values[0] for r in rows]),
        scores=scores,
        probation=probation,
        window=window,
        epochs=epochs,
        forecasts=counters.forecasts,
        alarms=counters.alarms,
        refused=counters.rejected,
        gap_resets=counters.gap_resets,
        train_seconds=round(trained - started, 2),
        export_seconds=round(exported - trained, 2),
        stream_seconds=round(streamed - exported, 2),
    )


def _untrained(name: str, rows: list, probation: int, window: int, reason: str) -> FileDetection:
    """A file the trainer refused: no model, so no alarm (every score 0), and the reason kept for the summary."""
    return FileDetection(
        name=name,
        timestamps=[r.timestamp for r in rows],
        values=np.array([r.values[0] for r in rows]),
        scores=np.zeros(len(rows)),
        probation=probation,
        window=window,
        epochs=0,
        forecasts=0,
        alarms=0,
        refused=0,
        gap_resets=0,
        train_seconds=0.0,
        export_seconds=0.0,
        stream_seconds=0.0,
        untrained=reason,
    )


def _detect_in_scratch(nab_dir: Path, name: str, settings: DetectorSettings) -> FileDetection:
    scratch = Path(tempfile.mkdtemp(prefix="rnnedge-nab-"))
    try:
        return detect_file(Path(nab_dir) / "data" / name, name, settings, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _quiet_worker() -> None:
    """One TensorFlow thread per worker process: `jobs` workers use `jobs` cores, no more."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def detect_corpus(
    nab_dir: Path,
    names: Sequence[str],
    settings: DetectorSettings = DetectorSettings(),
    jobs: int = 2,
    progress: bool = False,
) -> dict[str, FileDetection]:
    """Run the detector on each named data file (largest first, in `jobs` processes); reads no label."""
    order = sorted(names, key=lambda n: -(Path(nab_dir) / "data" / n).stat().st_size)
    done: dict[str, FileDetection] = {}

    def report(result: FileDetection) -> None:
        done[result.name] = result
        if progress:
            print(
                f"[{len(done)}/{len(order)}] {result.name}: {result.alarms} alarms, window {result.window}, "
                f"train {result.train_seconds} s, export {result.export_seconds} s, "
                f"stream {result.stream_seconds} s",
                flush=True,
            )

    if jobs <= 1:
        for name in order:
            report(_detect_in_scratch(nab_dir, name, settings))
    else:
        context = get_context("spawn")  # a fresh interpreter: TensorFlow does not survive fork
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_quiet_worker) as pool:
            futures = [pool.submit(_detect_in_scratch, nab_dir, name, settings) for name in order]
            for future in futures:
                report(future.result())
    return {name: done[name] for name in sorted(done)}


def load_windows(nab_dir: Path, detections: dict[str, FileDetection]) -> dict[str, nab_scorer.FileLayout]:
    """The scoring layout of each detected file, from labels/combined_windows.json (read only here)."""
    path = Path(nab_dir) / LABELS
    labels = nab_scorer.read_json(path)  # run_nab checked that it exists before detecting anything
    missing = [name for name in detections if name not in labels]
    if missing:
        raise InputError(f"{path}: no windows listed for {missing[0]} (and {len(missing) - 1} more)")
    return {
        name: nab_scorer.file_layout(len(d.values), nab_scorer.window_rows(d.timestamps, labels[name], name))
        for name, d in detections.items()
    }


def results_path(out_dir: Path, name: str) -> Path:
    """NAB's layout: <folder>/<detector>_<file>.csv."""
    folder, file = name.split("/", 1)
    return Path(out_dir) / folder / f"{DETECTOR}_{file}"


def published_scores(nab_dir: Path) -> dict[str, dict[str, float]]:
    """results/final_results.json: each known detector's normalised score per profile (empty if absent)."""
    path = Path(nab_dir) / "results" / "final_results.json"
    if not path.is_file():
        return {}
    doc = nab_scorer.read_json(path)
    return {name: {p: float(v) for p, v in scores.items()} for name, scores in doc.items()}


def score_run(nab_dir: Path, out_dir: Path, detections: dict[str, FileDetection], complete: bool) -> dict[str, Any]:
    """Write one NAB results file per detected file, score the three profiles, return the summary."""
    layouts = load_windows(nab_dir, detections)
    for name, d in detections.items():
        labels = nab_scorer.window_labels(layouts[name])
        nab_scorer.write_results(results_path(out_dir, name), d.timestamps, d.values, d.scores, labels)
    profiles = nab_scorer.load_profiles(nab_dir)
    scores = {name: d.scores for name, d in detections.items()}
    profile_scores = {}
    for profile in nab_scorer.PROFILE_NAMES:
        result = nab_scorer.score_corpus(scores, layouts, profiles[profile])
        profile_scores[profile] = {
            **result.totals(),
            "per_file": {
                name: {
                    "score": round(f.score, 4),
                    "detected_windows": f.detected_windows,
                    "missed_windows": f.missed_windows,
                    "false_positive_rows": f.false_positives,
                }
                for name, f in result.files.items()
            },
        }
    return {
        "detector": DETECTOR,
        "complete_corpus": complete,
        "files": len(detections),
        "rows": sum(len(d.values) for d in detections.values()),
        "windows_scored": sum(int(layout.counted.sum()) for layout in layouts.values()),
        "scores": profile_scores,
        "published": published_scores(nab_dir) if complete else {},
        "per_file": {name: d.facts() for name, d in detections.items()},
    }


def run_nab(
    nab_dir: Path,
    out_dir: Path,
    settings: DetectorSettings = DetectorSettings(),
    files: int | None = None,
    jobs: int = 2,
    progress: bool = False,
) -> dict[str, Any]:
    """The whole evaluation: detect every file (or the `files` smallest: not comparable), score, write."""
    nab_dir, out_dir = Path(nab_dir), Path(out_dir)
    names = corpus_files(nab_dir)
    labels = nab_dir / LABELS
    if not labels.is_file():  # only its presence: the labels are read after detection, to score
        raise InputError(f"{labels}: no such file (the NAB labels are needed to score)")
    if files is not None:
        if files < 1:
            raise InputError(f"--files {files}: choose at least 1 file")
        names = sorted(names, key=lambda n: ((nab_dir / "data" / n).stat().st_size, n))[:files]
    complete = len(names) == NAB_FILES  # comparable with the published scores only on the whole corpus
    started = time.perf_counter()
    detections = detect_corpus(nab_dir, names, settings, jobs, progress)
    detect_seconds = time.perf_counter() - started
    summary = score_run(nab_dir, out_dir, detections, complete)
    summary.update(
        settings=asdict(settings),
        jobs=jobs,
        detect_seconds=round(detect_seconds, 1),
        seconds=round(time.perf_counter() - started, 1),
        cpus=os.cpu_count(),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{SUMMARY_NAME}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{SUMMARY_NAME}.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


PUBLISHED_NAMES = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "htmjava": "HTM Java",
    "numentaTM": "Numenta TM",
    "earthgeckoSkyline": "Earthgecko Skyline",
    "knncad": "KNN CAD",
    "relativeEntropy": "Relative Entropy",
    "randomCutForest": "Random Cut Forest",
    "twitterADVec": "Twitter ADVec",
    "windowedGaussian": "Windowed Gaussian",
    "skyline": "Skyline",
    "bayesChangePt": "Bayes Changepoint",
    "expose": "EXPoSE",
    "random": "Random",
    "null": "Null",
}


def summary_markdown(summary: dict[str, Any], baselines: dict[str, dict[str, float]] | None = None) -> str:
    """The summary as a Markdown fragment: our three scores ranked among the published detectors and any
    `baselines` measured in the same run (label -> normalised score per profile)."""
    settings = summary["settings"]
    ours = {p: summary["scores"][p]["normalised"] for p in nab_scorer.PROFILE_NAMES}
    standard = summary["scores"]["standard"]
    lines = [
        "### NAB v1.1: rnnedge's detector, scored by the NAB rules",
        "",
        f"{summary['files']} files, {summary['rows']:,} rows, {summary['windows_scored']} labelled windows. Per "
        f"file: {settings['cell'].upper()}-{settings['units']} (window <= {settings['window']}, <= "
        f"{settings['epochs']} epochs) trained on the probationary period only, exported to ONNX, the whole file "
        "streamed through the edge runtime's engine one sample at a time. Row score: the engine's anomaly score "
        "where it raises an alarm (one per incident), 0 elsewhere. One threshold per profile for the corpus, swept "
        f"over the score values. Whole run: {summary['seconds']} s with {_processes(summary['jobs'])} on "
        f"{summary['cpus']} cores.",
        "",
    ]
    if not summary["complete_corpus"]:
        lines += [
            "**A subset of the corpus: these scores are not comparable with the published ones.**",
            "",
        ]
    header = "| detector | standard | reward_low_FP_rate | reward_low_FN_rate |"
    rule = "|---|---:|---:|---:|"
    rows = [("**rnnedge (this run)**", ours, True)]
    for label, scores in (baselines or {}).items():
        rows.append((f"{label} (same run)", scores, False))
    for key, scores in summary["published"].items():
        rows.append((PUBLISHED_NAMES.get(key, key), scores, False))
    rows.sort(key=lambda r: -r[1].get("standard", 0.0))
    lines += [header, rule]
    for label, scores, mine in rows:
        cells = [f"{scores.get(p, float('nan')):.2f}" for p in nab_scorer.PROFILE_NAMES]
        if mine:
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Standard profile: {standard['detected_windows']} windows detected, {standard['missed_windows']} missed, "
        f"{standard['false_positive_rows']} false-positive rows at threshold {_threshold(standard['threshold'])}; "
        "windows detected per folder: " + _per_folder(standard["per_file"]) + ".",
    ]
    files = summary["per_file"].values()
    untrained = [f for f in files if f["untrained"]]
    lines += [
        "",
        f"Across the files the engine refused {sum(f['refused'] for f in files)} samples (repeated or backward "
        f"timestamps) and reset a stream's state after a gap {sum(f['gap_resets'] for f in files)} times; "
        f"training took {sum(f['train_seconds'] for f in files):.0f} s, export "
        f"{sum(f['export_seconds'] for f in files):.0f} s and streaming {sum(f['stream_seconds'] for f in files):.0f}"
        " s of worker time.",
    ]
    if untrained:
        lines += ["", "Files without a model (the trainer refused their probationary rows; every score 0):"]
        lines += [f"- {f['name']}: {f['untrained']}" for f in untrained]
    return "\n".join(lines) + "\n"


def _processes(jobs: int) -> str:
    return "1 worker process" if jobs == 1 else f"{jobs} worker processes"


def _per_folder(per_file: dict[str, dict[str, Any]]) -> str:
    folders: dict[str, list[int]] = {}
    for name, f in per_file.items():
        counts = folders.setdefault(name.split("/")[0], [0, 0])
        counts[0] += f["detected_windows"]
        counts[1] += f["detected_windows"] + f["missed_windows"]
    return ", ".join(f"{folder} {found}/{total}" for folder, (found, total) in sorted(folders.items()) if total)


def _threshold(value: float | None) -> str:
    return "inf (detect nothing)" if value is None else f"{value:.4f}"
