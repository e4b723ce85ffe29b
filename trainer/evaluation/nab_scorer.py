"""NAB-compatible scoring of anomaly scores (Numenta Anomaly Benchmark v1.1), written from the published rules.

A detector emits one score per row. Row i is a detection iff it is past the file's probationary period and its
score reaches the threshold. A labelled window scores the weight of its earliest detection (earlier is worth
more) or costs A_FN when missed; a detection outside every window costs up to A_FP, less when it falls just after
a window. One threshold per cost profile is shared by the whole corpus and chosen to maximise the corpus score.
The rules are restated in the shared data's README.md; this module is the project's one implementation of them.

Everything a rule says about a row that does not depend on the detector (which window holds it, what a
detection there would weigh) is computed once per file as a `FileLayout`, so that scoring many thresholds and
three profiles costs a few array operations.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import InputError

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750  # NAB: 15% of 5,000 rows
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
RESULTS_COLUMNS = ("timestamp", "value", "anomaly_score", "label")


@dataclass(frozen=True)
class CostProfile:
    """Weights of a true positive (A_TP), a false positive (A_FP) and a missed window (A_FN)."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class NabFile:
    """One corpus file: its rows and its labelled windows as inclusive 0-based row ranges."""

    name: str  # relative to the corpus's data/ folder, e.g. "realKnownCause/nyc_taxi.csv"
    timestamps: list[str]
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class FileLayout:
    """What the rules make of a file's rows before any detector runs.

    `unit_weight[i]` is what a detection at row i weighs per unit cost: sigma(y)/sigma(-1) inside a window
    (times A_TP), sigma(y) or -1 outside (times A_FP).
    """

    rows: int
    probation: int
    windows: np.ndarray  # (K, 2) int, inclusive row ranges, sorted
    counted: np.ndarray  # (K,) bool: the window has a row past the probationary period
    window_of_row: np.ndarray  # (rows,) int: index of the window holding the row, -1 outside every window
    unit_weight: np.ndarray  # (rows,) float


@dataclass(frozen=True)
class FileScore:
    score: float
    detected_windows: int
    missed_windows: int
    false_positives: int  # rows


@dataclass(frozen=True)
class CorpusScore:
    """A profile's corpus score at its best threshold, with the per-file scores behind it."""

    profile: str
    threshold: float  # math.inf when detecting nothing scores best
    raw: float
    normalised: float
    files: dict[str, FileScore]

    @property
    def detected_windows(self) -> int:
        return sum(f.detected_windows for f in self.files.values())

    @property
    def missed_windows(self) -> int:
        return sum(f.missed_windows for f in self.files.values())

    @property
    def false_positives(self) -> int:
        return sum(f.false_positives for f in self.files.values())

    def totals(self) -> dict[str, Any]:
        """The corpus figures for a JSON summary (the threshold None when detecting nothing scores best)."""
        return {
            "normalised": round(self.normalised, 2),
            "raw": round(self.raw, 4),
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "detected_windows": self.detected_windows,
            "missed_windows": self.missed_windows,
            "false_positive_rows": self.false_positives,
        }


@dataclass(frozen=True)
class ResultsTable:
    """A NAB results CSV: one anomaly score per row, and the label (1 inside a window)."""

    timestamps: list[str]
    values: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def probation_rows(rows: int) -> int:
    """P = min(floor(0.15 n), 750): the first P rows of a file are never scored."""
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(y: np.ndarray) -> np.ndarray:
    """sigma(y) = 2/(1+exp(5y)) - 1, and -1 past y = 3: +1 long before a window's end, -1 long after it."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp overflows to inf for large y, which gives -1 as it should
        value = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, value)


MAX_TP_UNIT = float(scaled_sigmoid(-1.0))  # sigma(-1): a detection on a window's first row


def load_profiles(nab_dir: Path) -> dict[str, CostProfile]:
    """The cost profiles of `config/profiles.json`."""
    path = Path(nab_dir) / "config" / "profiles.json"
    doc = read_json(path)
    try:
        return {
            name: CostProfile(name, float(c["tpWeight"]), float(c["fpWeight"]), float(c["fnWeight"]))
            for name, entry in doc.items()
            for c in [entry["CostMatrix"]]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a NAB profiles file ({exc!r})") from None


def load_corpus(nab_dir: Path) -> list[NabFile]:
    """Every file listed in `labels/combined_windows.json`, with its rows from `data/`, in label-file order."""
    nab_dir = Path(nab_dir)
    labels = read_json(nab_dir / "labels" / "combined_windows.json")
    files = []
    for name, windows in labels.items():
        timestamps, values = read_data_file(nab_dir / "data" / name)
        files.append(NabFile(name, timestamps, values, window_rows(timestamps, windows, name)))
    return files


def read_data_file(path: Path) -> tuple[list[str], np.ndarray]:
    """A corpus file (`timestamp,value`): its timestamps and values."""
    table = _read_csv(path, ("timestamp", "value"))
    return table["timestamp"], _floats(path, table, "value")


def window_rows(timestamps: Sequence[str], windows: Sequence[Sequence[str]], name: str) -> tuple[tuple[int, int], ...]:
    """Inclusive [start, end] timestamps -> row ranges; an edge is the first row with that timestamp.

    Timestamps are compared as times, not text ("2014-02-19 10:50:00.000000" is row "2014-02-19 10:50:00").
    Some corpus files repeat a timestamp (a clock change) or step back once; NAB takes the first match too.
    """
    times = _parse_times(timestamps, name)
    rows = []
    for window in windows:
        edges = []
        for stamp in window:
            matches = np.flatnonzero(times == _parse_times([stamp], name)[0])
            if not len(matches):
                raise InputError(f"{name}: window edge {stamp!r} is not a timestamp of the file")
            edges.append(int(matches[0]))
        rows.append((edges[0], edges[1]))
    return tuple(rows)


def file_layout(rows: int, windows: Sequence[tuple[int, int]]) -> FileLayout:
    """Apply the rules to a file of `rows` rows with these windows (sorted, disjoint, inclusive row ranges)."""
    spans = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    if len(spans) and (
        np.any(spans[:, 0] > spans[:, 1])
        or np.any(spans[1:, 0] <= spans[:-1, 1])
        or spans[0, 0] < 0
        or spans[-1, 1] >= rows
    ):
        raise InputError(f"windows {spans.tolist()} are not sorted, disjoint row ranges of a {rows}-row file")
    probation = probation_rows(rows)
    index = np.arange(rows)
    starts, ends = spans[:, 0], spans[:, 1]
    widths = (ends - starts + 1).astype(np.float64)

    holder = np.searchsorted(starts, index, side="right") - 1  # last window starting at or before the row
    inside = holder >= 0
    inside[inside] = index[inside] <= ends[holder[inside]]
    window_of_row = np.where(inside, holder, -1)

    unit = np.full(rows, -1.0)  # outside, before any window has ended
    k = window_of_row[inside]
    unit[inside] = scaled_sigmoid(-(ends[k] - index[inside] + 1) / widths[k]) / MAX_TP_UNIT
    previous = np.searchsorted(ends, index, side="left") - 1  # last window that ended before the row
    after = ~inside & (previous >= 0)
    p = previous[after]
    # a 1-row window makes the rule's denominator W-1 zero: such a window then counts as 2 rows wide
    unit[after] = scaled_sigmoid(np.abs(ends[p] - index[after]) / np.maximum(widths[p] - 1.0, 1.0))
    counted = ends >= probation
    return FileLayout(rows, probation, spans, counted, window_of_row, unit)


def score_detections(detections: np.ndarray, layout: FileLayout, profile: CostProfile) -> FileScore:
    """Score a boolean detection per row (rows of the probationary period are ignored)."""
    detections = np.asarray(detections, dtype=bool)
    if detections.shape != (layout.rows,):
        raise InputError(f"{detections.shape[0]} detections for a file of {layout.rows} rows")
    hits = detections.copy()
    hits[: layout.probation] = False
    outside = hits & (layout.window_of_row < 0)
    score = profile.fp * float(layout.unit_weight[outside].sum())
    detected = missed = 0
    for k, (start, end) in enumerate(layout.windows):
        if not layout.counted[k]:
            continue
        rows = np.flatnonzero(hits[start : end + 1])
        if len(rows):
            score += profile.tp * float(layout.unit_weight[start + rows[0]])
            detected += 1
        else:
            score -= profile.fn
            missed += 1
    return FileScore(score, detected, missed, int(outside.sum()))


def score_file(scores: np.ndarray, layout: FileLayout, profile: CostProfile, threshold: float) -> FileScore:
    """Score one file's anomaly scores at a threshold: row i is a detection iff i >= P and score >= threshold."""
    return score_detections(_checked_scores(scores, layout) >= threshold, layout, profile)


def best_threshold(
    scores: Sequence[np.ndarray], layouts: Sequence[FileLayout], profile: CostProfile
) -> tuple[float, float]:
    """(threshold, raw corpus score) maximising the corpus score over every distinct score value.

    Sorting all scored rows by score once turns the sweep into one cumulative sum: a row outside windows adds
    its weight when the threshold falls to its score; a window's value is the weight of its earliest row
    detected so far, so each window row adds the change of that value. Ties are scored together, and among
    equally good thresholds the highest wins (detecting nothing is threshold inf).
    """
    row_scores, deltas = [np.empty(0)], [np.empty(0)]
    missed_all = 0.0
    for file_scores, layout in zip(scores, layouts, strict=True):
        s = _checked_scores(file_scores, layout)[layout.probation :]
        window = layout.window_of_row[layout.probation :]
        outside = window < 0
        row_scores += [s[outside], s[~outside]]
        deltas.append(profile.fp * layout.unit_weight[layout.probation :][outside])
        rows = np.arange(layout.probation, layout.rows)[~outside]
        deltas.append(_window_row_deltas(s[~outside], rows, window[~outside], layout, profile))
        missed_all -= profile.fn * int(layout.counted.sum())
    all_scores = np.concatenate(row_scores)
    order = np.argsort(-all_scores, kind="stable")
    ranked = all_scores[order]
    totals = missed_all + np.cumsum(np.concatenate(deltas)[order])
    last_of_tie = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))[: len(ranked)]
    thresholds = np.concatenate([[math.inf], ranked[last_of_tie]])
    candidates = np.concatenate([[missed_all], totals[last_of_tie]])
    best = int(np.argmax(candidates))
    return float(thresholds[best]), float(candidates[best])


def _window_row_deltas(
    scores: np.ndarray, rows: np.ndarray, windows: np.ndarray, layout: FileLayout, profile: CostProfile
) -> np.ndarray:
    """For rows inside windows: how much detecting each row adds once every higher-scored row is detected.

    Within a window, rows are taken by descending score; the window's value is -A_FN until its first detection,
    then A_TP times the unit weight of the earliest row detected so far (a running minimum of row index,
    computed for all windows at once as a running maximum of window * (rows + 1) - row).
    """
    order = np.lexsort((-scores, windows))
    group = windows[order]
    span = layout.rows + 1
    earliest = group * span - np.maximum.accumulate(group * span - rows[order])
    value = profile.tp * layout.unit_weight[earliest]
    before = np.empty_like(value)
    before[1:] = value[:-1]
    first_of_window = np.ones(len(order), dtype=bool)
    first_of_window[1:] = group[1:] != group[:-1]
    before[first_of_window] = -profile.fn
    deltas = np.empty_like(value)
    deltas[order] = value - before
    return deltas


def normalised_score(raw: float, windows: int, profile: CostProfile) -> float:
    """100 (S - S_null)/(S_perfect - S_null): the null detector scores 0, one on every window start 100."""
    if windows < 1:
        raise InputError("no labelled window past a probationary period: the normalised score is undefined")
    perfect, null = profile.tp * windows, -profile.fn * windows
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    scores: Mapping[str, np.ndarray], layouts: Mapping[str, FileLayout], profile: CostProfile
) -> CorpusScore:
    """Best global threshold for the profile, the raw and normalised corpus scores, and each file's score.

    Normalisation counts the windows of the files given (116 for the whole corpus): scores of a subset are not
    comparable with published ones.
    """
    missing = sorted(set(layouts) - set(scores))
    if missing:
        raise InputError(f"no scores for {len(missing)} files, e.g. {missing[0]}")
    names = list(layouts)
    threshold, _ = best_threshold([scores[n] for n in names], [layouts[n] for n in names], profile)
    files = {n: score_file(scores[n], layouts[n], profile, threshold) for n in names}
    raw = math.fsum(f.score for f in files.values())
    windows = sum(int(layouts[n].counted.sum()) for n in names)
    return CorpusScore(profile.name, threshold, raw, normalised_score(raw, windows, profile), files)


def window_labels(layout: FileLayout) -> np.ndarray:
    """The results CSV's label column: 1 on rows inside a labelled window."""
    return (layout.window_of_row >= 0).astype(np.int64)


def read_results(path: Path) -> ResultsTable:
    """A NAB results CSV; extra columns (NAB writes `raw_score` and `S(t)_*`) are ignored."""
    table = _read_csv(path, RESULTS_COLUMNS)
    return ResultsTable(
        table["timestamp"],
        _floats(path, table, "value"),
        _floats(path, table, "anomaly_score"),
        _floats(path, table, "label").astype(np.int64),
    )


def write_results(
    path: Path, timestamps: Sequence[str], values: np.ndarray, scores: np.ndarray, labels: np.ndarray
) -> None:
    """Write `timestamp,value,anomaly_score,label`; floats are written so that they read back exactly."""
    if not len(timestamps) == len(values) == len(scores) == len(labels):
        raise InputError(
            f"{path}: columns differ in length ({len(timestamps)}, {len(values)}, {len(scores)}, {len(labels)})"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RESULTS_COLUMNS)
        for row in zip(timestamps, values.tolist(), scores.tolist(), labels.tolist(), strict=True):
            writer.writerow((row[0], repr(row[1]), repr(row[2]), int(row[3])))


def _checked_scores(scores: np.ndarray, layout: FileLayout) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (layout.rows,):
        raise InputError(f"{len(scores)} scores for a file of {layout.rows} rows")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{int(np.sum(~np.isfinite(scores)))} anomaly scores are not finite numbers")
    return scores


def read_json(path: Path) -> dict:
    """A NAB JSON file (labels, profiles, results); a missing or broken one is a one-line InputError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (is this a NAB corpus directory?)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _read_csv(path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [cell.strip() for cell in next(reader, [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise InputError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)})")
            indexes = [header.index(c) for c in columns]
            cells = [row for row in reader if row]
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    for line, row in enumerate(cells, start=2):
        if len(row) < len(header):
            raise InputError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
    return {c: [row[i] for row in cells] for c, i in zip(columns, indexes, strict=True)}


def _floats(path: Path, table: dict[str, list[str]], column: str) -> np.ndarray:
    values = []
    for line, text in enumerate(table[column], start=2):
        try:
            values.append(float(text))
        except ValueError:
            raise InputError(f"{path}: line {line}: column {column!r} holds {text!r}, not a number") from None
    return np.array(values, dtype=np.float64)


def _parse_times(stamps: Sequence[str], name: str) -> np.ndarray:
    try:
        return np.array([s.strip() for s in stamps], dtype="datetime64[us]")
    except ValueError as exc:
        raise InputError(f"{name}: a timestamp cannot be read ({exc})") from None
