"""From a cleaned series to model arrays: chronological split, train-only scaling, windows inside segments.

A window never crosses a segment boundary (a long gap) or a split boundary, so there is no leakage between
train, validation and test, and no window holds more than `max_gap` interpolated rows in a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.bundle import ColumnScale
from edge_runtime.errors import InputError
from edge_runtime.scaling import Scaler, model_inputs
from trainer.cleaning import CleanSeries, clean
from trainer.table import Table, read_table

SPLITS = ("train", "val", "test")
SPLIT_LABELS = {"train": "training", "val": "validation", "test": "test"}
SCALER_KINDS = ("zscore", "minmax")
MAX_CLASSES = 50


@dataclass(frozen=True)
class Piece:
    """A run of consecutive rows of one split inside one gap-free segment: the unit that is windowed and streamed."""

    split: str
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Splits:
    train_end: int
    val_end: int
    rows: int
    pieces: tuple[Piece, ...]

    def of(self, split: str) -> list[Piece]:
        return [p for p in self.pieces if p.split == split]

    def counts(self) -> tuple[int, int, int]:
        return (self.train_end, self.val_end - self.train_end, self.rows - self.val_end)


@dataclass(frozen=True)
class LoadedData:
    series: CleanSeries
    time_column: str | None
    columns: tuple[str, ...]  # columns of series.values; the label column (codes) comes last when classifying
    classes: tuple[str, ...]  # class names by code, classification only


def _label_codes(labels: list[str], path: Path, label: str) -> tuple[np.ndarray, tuple[str, ...]]:
    names = sorted({text for text in labels if text})
    try:
        names = sorted(names, key=float)  # numeric labels in numeric order: 2 before 10
    except ValueError:
        pass
    if len(names) > MAX_CLASSES:
        raise InputError(
            f"{path}: label column {label!r} holds {len(names)} distinct values: a class label has at most "
            f"{MAX_CLASSES} (is it a measurement?)"
        )
    if len(names) < 2:
        raise InputError(
            f"{path}: label column {label!r} holds {len(names)} class(es): classification needs two or more"
        )
    code = {name: float(i) for i, name in enumerate(names)}
    return np.array([code.get(text, np.nan) for text in labels]), tuple(names)


def _check_columns(table: Table, targets: tuple[str, ...], path: Path) -> None:
    """Problems visible before any cleaning: a column with no value at all, a target that never changes."""
    for i, name in enumerate(table.columns):
        column = table.values[:, i]
        present = column[~np.isnan(column)]
        if len(present) == 0:
            raise InputError(f"{path}: column {name!r} has no values (every cell is empty)")
        if name in targets and len(table.values) > 1 and present.min() == present.max():
            raise InputError(
                f"{path}: column {name!r} is constant on the training split (it is {present[0]:g} in every row): "
                "there is nothing to forecast"
            )


def load_data(
    path: Path,
    columns: tuple[str, ...],
    targets: tuple[str, ...],
    time_column: str | None,
    label: str | None,
    resample: str | None,
    max_gap: int | str,
) -> LoadedData:
    table = read_table(path, columns, time_column, label)
    _check_columns(table, targets, path)
    classes: tuple[str, ...] = ()
    hold: tuple[int, ...] = ()
    if label is not None:
        codes, classes = _label_codes(table.labels or [], path, label)
        table = Table(
            columns + (label,),
            np.column_stack([table.values, codes]),
            table.stamps,
            table.lines,
            table.time_column,
            table.labels,
        )
        hold = (len(columns),)
    return LoadedData(clean(table, path, resample, max_gap, hold), table.time_column, table.columns, classes)


def split_series(
    series: CleanSeries, fractions: tuple[float, float, float], need: int, what: str, path: Path
) -> Splits:
    """Chronological split at the time quantiles of the rows read; each split needs `need` consecutive rows."""
    if series.rows < need:
        raise InputError(
            f"{path}: {what} needs {need} consecutive rows, but the data has {series.rows} "
            f"row{'s' if series.rows != 1 else ''}{' after cleaning' if series.report.rows_read != series.rows else ''}"
        )
    read = series.report.rows_read
    first_val = min(int(read * fractions[0]), read - 1)
    first_test = min(first_val + int(read * fractions[1]), read - 1)
    if series.times is not None:
        train_end, val_end = np.searchsorted(series.times, series.read_times[[first_val, first_test]])
    else:
        train_end, val_end = np.searchsorted(series.source_rows, [first_val, first_test])
    bounds = {"train": (0, int(train_end)), "val": (int(train_end), int(val_end)), "test": (int(val_end), series.rows)}
    pieces = []
    for split, (lo, hi) in bounds.items():
        for start, stop in series.segments:
            a, b = max(start, lo), min(stop, hi)
            if b > a:
                pieces.append(Piece(split, a, b))
    splits = Splits(int(train_end), int(val_end), series.rows, tuple(pieces))
    shares = "/".join(f"{round(100 * f):d}" for f in fractions)
    for split in SPLITS:
        longest = max((p.rows for p in splits.of(split)), default=0)
        if longest >= need:
            continue
        if len(series.segments) == 1:
            raise InputError(
                f"{path}: {series.rows} rows are too few for {what}: the {shares} split needs at least {need} rows "
                f"in each part, i.e. {int(np.ceil(need / min(fractions)))} rows"
            )
        raise InputError(
            f"{path}: no gap-free stretch of the {SPLIT_LABELS[split]} split holds the {need} rows {what} needs "
            f"(longest: {longest}); lower --window or allow longer gaps with --max-gap"
        )
    return splits


def fit_scales(
    values: np.ndarray, columns: tuple[str, ...], kind: str, targets: tuple[str, ...], path: Path
) -> tuple[dict[str, ColumnScale], list[str]]:
    """Per-column offset and scale from the training rows only; constant inputs are reported and dropped.

    z-score stores (mean, std); min-max stores (min, max - min), so the device's (x - offset) / scale maps the
    training range to [0, 1] with the same arithmetic.
    """
    scales, constant = {}, []
    for name, column in zip(columns, values.T, strict=True):
        low, high = float(column.min()), float(column.max())
        if not high > low:
            if name in targets:
                raise InputError(f"{path}: column {name!r} is constant on the training split: it cannot be scaled")
            constant.append(name)
            continue
        scales[name] = (
            ColumnScale(float(column.mean()), float(column.std())) if kind == "zscore" else ColumnScale(low, high - low)
        )
    return scales, constant


def future_targets(targets: np.ndarray, horizon: int) -> np.ndarray:
    """(N - H, H, T): for row t, the raw target values of rows t+1 .. t+H."""
    rows = targets.shape[0] - horizon
    return np.stack([targets[k + 1 : k + 1 + rows] for k in range(horizon)], axis=1)


@dataclass(frozen=True)
class PieceArrays:
    scaled: np.ndarray  # (rows, F) scaled samples (levels)
    inputs: np.ndarray  # (rows, F) model inputs (after differencing)
    targets: np.ndarray  # forecasting: (rows - H, H*T) model targets; classification: (rows,) class codes


def forecast_arrays(raw_inputs: np.ndarray, raw_targets: np.ndarray, scaler: Scaler, diff: list[int]) -> PieceArrays:
    scaled = scaler.scale_inputs(raw_inputs)
    inputs = model_inputs(scaled, diff)
    if len(raw_targets) <= scaler.horizon:  # a piece too short for any forecast to be checked
        return PieceArrays(scaled, inputs, np.zeros((0, scaler.horizon * raw_targets.shape[1]), np.float32))
    futures = future_targets(raw_targets, scaler.horizon)
    return PieceArrays(scaled, inputs, scaler.model_targets(scaled[: len(futures)], futures))


def windows(
    inputs: np.ndarray, targets: np.ndarray, window: int, stride: int, diff: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping (n, window, F) inputs and (n, window, ...) targets; every row in a window has a target.

    Each window starts from zero state in training, as a stream does after a reset: its differenced inputs
    start at 0 too.
    """
    starts = np.arange(0, len(targets) - window + 1, stride)
    index = starts[:, None] + np.arange(window)[None, :]
    x = inputs[index]
    if diff:
        x[:, 0, diff] = 0.0
    return x, targets[index]
