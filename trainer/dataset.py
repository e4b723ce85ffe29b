"""From a sensor CSV to scaled training windows: chronological split, train-only scaling, no leakage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.bundle import ColumnScale
from edge_runtime.csv_source import read_columns
from edge_runtime.errors import InputError
from edge_runtime.scaling import Scaler

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)


@dataclass(frozen=True)
class Series:
    timestamps: list[str]
    features: np.ndarray  # (N, F) raw
    targets: np.ndarray  # (N, T) raw
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    time_column: str | None


@dataclass(frozen=True)
class SplitBounds:
    train_end: int
    val_end: int
    rows: int

    def slices(self) -> dict[str, slice]:
        return {
            "train": slice(0, self.train_end),
            "val": slice(self.train_end, self.val_end),
            "test": slice(self.val_end, self.rows),
        }


def load_series(path: Path, features: tuple[str, ...], targets: tuple[str, ...], time_column: str | None) -> Series:
    columns = tuple(dict.fromkeys(features + targets))
    table = read_columns(path, columns, time_column if time_column else "auto")
    if not table.timestamps:
        raise InputError(f"{path}: no data rows (only a header)")
    by_name = {name: table.values[:, i] for i, name in enumerate(columns)}
    return Series(
        table.timestamps,
        np.stack([by_name[c] for c in features], axis=1),
        np.stack([by_name[c] for c in targets], axis=1),
        features,
        targets,
        table.time_column,
    )


def split_bounds(rows: int, window: int, horizon: int, path: Path) -> SplitBounds:
    """70/10/20 by time; each split must hold at least one full window plus its horizon."""
    need = window + horizon
    train_end = int(rows * SPLIT_FRACTIONS[0])
    val_end = train_end + int(rows * SPLIT_FRACTIONS[1])
    smallest = min(train_end, val_end - train_end, rows - val_end)
    if smallest < need:
        raise InputError(
            f"{path}: {rows} rows are too few for window {window} + horizon {horizon}: the 70/10/20 split needs "
            f"at least {need} rows in each part, i.e. {int(np.ceil(need / SPLIT_FRACTIONS[1]))} rows"
        )
    return SplitBounds(train_end, val_end, rows)


def fit_scales(series: Series, train_end: int, path: Path) -> dict[str, ColumnScale]:
    """z-score parameters from the training rows only."""
    scales = {}
    columns = dict(zip(series.feature_names, series.features.T, strict=True))
    columns.update(zip(series.target_names, series.targets.T, strict=True))
    for name, values in columns.items():
        train = values[:train_end]
        std = float(train.std())
        if not std > 0:
            raise InputError(f"{path}: column {name!r} is constant on the training split: it cannot be scaled")
        scales[name] = ColumnScale(float(train.mean()), std)
    return scales


def future_targets(targets: np.ndarray, horizon: int) -> np.ndarray:
    """(N - H, H, T): for row t, the raw target values of rows t+1 .. t+H."""
    rows = targets.shape[0] - horizon
    return np.stack([targets[k + 1 : k + 1 + rows] for k in range(horizon)], axis=1)


def segment_arrays(series: Series, part: slice, scaler: Scaler) -> tuple[np.ndarray, np.ndarray]:
    """Scaled inputs of every row of the part, and model targets of the rows whose horizon stays inside it."""
    inputs = scaler.scale_inputs(series.features[part])
    futures = future_targets(series.targets[part], scaler.horizon)
    return inputs, scaler.model_targets(inputs[: len(futures)], futures)


def windows(inputs: np.ndarray, targets: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping (n, window, F) inputs and (n, window, H*T) targets; every row in a window has a target."""
    starts = np.arange(0, len(targets) - window + 1, stride)
    index = starts[:, None] + np.arange(window)[None, :]
    return inputs[index], targets[index]
