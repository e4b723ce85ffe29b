"""From TrainOptions and a CSV to everything training needs: columns, clean series, splits, scaling, arrays."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_runtime.bundle import ColumnScale
from edge_runtime.csv_source import guess_time_column
from edge_runtime.errors import InputError
from edge_runtime.scaling import Scaler
from trainer.cleaning import CleanSeries
from trainer.dataset import (
    SPLITS,
    LoadedData,
    PieceArrays,
    Splits,
    fit_scales,
    forecast_arrays,
    load_data,
    model_inputs,
    split_series,
    windows,
)
from trainer.options import TrainOptions
from trainer.table import read_header
from trainer.timestamps import format_interval, parse_interval


@dataclass(frozen=True)
class Prepared:
    """Everything the data decides before training: columns, splits, scaling and the model arrays per piece."""

    loaded: LoadedData
    features: tuple[str, ...]
    targets: tuple[str, ...]
    differenced: tuple[str, ...]
    splits: Splits
    scales: dict[str, ColumnScale]
    scaler: Scaler
    relative_to_last: bool
    target_std: np.ndarray  # training standard deviation of each target: the unit of the standardised metrics
    raw_targets: np.ndarray  # (rows, T) target values of the cleaned series, sensor units
    arrays: dict[str, list[PieceArrays]]
    season: int
    positive: int  # classification: index of the class precision, recall and F1 refer to
    majority: int  # classification: the most frequent class in the training split (the baseline's answer)

    @property
    def series(self) -> CleanSeries:
        return self.loaded.series

    @property
    def diff_columns(self) -> list[int]:
        return [self.features.index(n) for n in self.differenced]


def _default_features(options: TrainOptions) -> tuple[str, ...]:
    if options.features:
        return options.features
    if options.task == "forecast":
        return options.targets
    header = read_header(options.csv)
    skip = {options.label, options.time_column or guess_time_column(header)}
    return tuple(name for name in header if name not in skip)


def _resolve_season(option: int | str | None, series: CleanSeries, train_values: np.ndarray) -> int:
    """Rows per season: as given (rows or a duration), else one day of samples, else the strongest
    autocorrelation peak of the training target, else 1 (the seasonal-naive forecast is then persistence)."""
    interval = series.report.interval
    if option is not None:
        if isinstance(option, int) or str(option).isdigit():
            return max(1, int(option))
        if interval is None:
            raise InputError(f"--season {option!r} is a duration, but the data has no time column: give rows")
        return max(1, round(parse_interval(str(option)) / interval))
    if interval and 86400 % interval == 0 and 2 <= 86400 // interval <= len(train_values) // 2:
        return int(86400 // interval)
    centred = train_values - train_values.mean()
    longest = min(len(centred) // 3, 2000)
    if longest < 3:
        return 1
    spectrum = np.fft.rfft(centred, 2 * len(centred))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: longest + 1]
    acf = acf / acf[0] if acf[0] > 0 else acf
    peaks = [lag for lag in range(2, longest) if acf[lag] > acf[lag - 1] and acf[lag] >= acf[lag + 1]]
    best = max(peaks, key=lambda lag: acf[lag], default=None)
    return int(best) if best is not None and acf[best] > 0.3 else 1


def _class_roles(options: TrainOptions, loaded: LoadedData, train_end: int) -> tuple[int, int]:
    """(positive, majority) class indexes: the positive one is --positive, else the rarer of two in training."""
    classes = loaded.classes
    counts = np.bincount(loaded.series.values[:train_end, -1].astype(np.int64), minlength=len(classes))
    if options.positive is not None:
        if options.positive not in classes:
            raise InputError(f"--positive {options.positive!r} is not a class (classes: {', '.join(classes)})")
        positive = classes.index(options.positive)
    else:
        positive = int(np.argmin(counts)) if len(classes) == 2 else 0
    return positive, int(np.argmax(counts))


def prepare(options: TrainOptions) -> Prepared:
    """Read and clean the CSV, split it, fit the scaling on the training rows, cut it into per-piece arrays."""
    classify = options.task == "classify"
    features = _default_features(options)
    targets = () if classify else options.targets
    loaded = load_data(
        options.csv,
        tuple(dict.fromkeys(features + targets)),
        targets,
        options.time_column,
        options.label if classify else None,
        options.resample,
        options.max_gap,
    )
    series = loaded.series
    horizon = 0 if classify else options.horizon
    what = f"window {options.window}" + ("" if classify else f" + horizon {options.horizon}")
    splits = split_series(series, options.split, options.window + horizon, what, options.csv)
    numeric = tuple(dict.fromkeys(features + targets))
    train_rows = series.values[: splits.train_end, : len(numeric)]
    scales, constant = fit_scales(train_rows, numeric, options.scaler, targets, options.csv)
    series.report.dropped_columns = constant
    features = tuple(f for f in features if f not in constant)
    if not features:
        raise InputError(f"{options.csv}: every input column is constant on the training split")
    unknown = [n for n in options.difference if n != "all" and n not in features]
    if unknown:
        raise InputError(f"--difference names {', '.join(unknown)}, which are not inputs ({', '.join(features)})")
    differenced = features if "all" in options.difference else tuple(f for f in features if f in options.difference)
    diff = [features.index(f) for f in differenced]
    relative = bool(targets) and all(t in features for t in targets)
    target_std = np.array([train_rows[:, numeric.index(t)].std() for t in targets])
    scaler = Scaler(features, targets, scales, relative, options.horizon)
    raw_inputs = series.values[:, [numeric.index(f) for f in features]]
    raw_targets = series.values[:, [numeric.index(t) for t in targets]]
    arrays: dict[str, list[PieceArrays]] = {split: [] for split in SPLITS}
    for piece in splits.pieces:
        part = slice(piece.start, piece.stop)
        if classify:
            scaled = scaler.scale_inputs(raw_inputs[part])
            codes = series.values[part, -1].astype(np.int64)
            arrays[piece.split].append(PieceArrays(scaled, model_inputs(scaled, diff), codes))
        else:
            arrays[piece.split].append(forecast_arrays(raw_inputs[part], raw_targets[part], scaler, diff))
    season = 1 if classify else _resolve_season(options.season, series, raw_targets[: splits.train_end, 0])
    positive, majority = _class_roles(options, loaded, splits.train_end) if classify else (0, 0)
    return Prepared(
        loaded,
        features,
        targets,
        differenced,
        splits,
        scales,
        scaler,
        relative,
        target_std,
        raw_targets,
        arrays,
        season,
        positive,
        majority,
    )


def training_windows(
    prepared: Prepared, split: str, window: int, stride: int, warmup: int, classify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Training or validation windows of every piece long enough, outputs cut after the warm-up steps."""
    xs, ys = [], []
    for piece in prepared.arrays[split]:
        if len(piece.targets) < window:
            continue
        x, y = windows(piece.inputs, piece.targets, window, stride, prepared.diff_columns)
        xs.append(x)
        ys.append(y[:, warmup:])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if classify and len(prepared.loaded.classes) == 2:
        y = y[..., None].astype(np.float32)
    return x, y


def splits_doc(prepared: Prepared, classify: bool) -> dict[str, np.ndarray]:
    """Per split: model inputs, where each gap-free piece starts, and the raw targets (or class codes) per row."""
    doc: dict[str, np.ndarray] = {}
    for split in SPLITS:
        pieces = prepared.splits.of(split)
        rows = np.concatenate([np.arange(p.start, p.stop) for p in pieces])
        doc[split] = np.concatenate([a.inputs for a in prepared.arrays[split]]).astype(np.float32)
        doc[f"{split}_scaled"] = np.concatenate([a.scaled for a in prepared.arrays[split]]).astype(np.float32)
        doc[f"{split}_starts"] = np.cumsum([0] + [p.rows for p in pieces[:-1]])
        if classify:
            doc[f"{split}_labels"] = prepared.series.values[rows, -1].astype(np.int64)
        else:
            doc[f"{split}_targets"] = prepared.raw_targets[rows]
    return doc


def first_row(prepared: Prepared) -> int:
    """The test split's first row as a data-row index of the file: a device replaying the file from there sees
    exactly the test rows (when cleaning changed nothing in them)."""
    source = prepared.series.source_rows[prepared.splits.val_end :]
    real = source[source >= 0]
    return int(real[0]) if len(real) else -1


def data_summary(options: TrainOptions, prepared: Prepared) -> dict[str, object]:
    series, splits = prepared.series, prepared.splits
    report = series.report
    bounds = {
        "train": (0, splits.train_end),
        "val": (splits.train_end, splits.val_end),
        "test": (splits.val_end, splits.rows),
    }
    return {
        "source": str(options.csv),
        "time_column": prepared.loaded.time_column,
        "rows_read": report.rows_read,
        "rows_used": series.rows,
        "interval": format_interval(report.interval) if report.interval else None,
        "features": list(prepared.features),
        "targets": list(prepared.targets),
        "differenced": list(prepared.differenced),
        "splits": {
            name: {
                "rows": hi - lo,
                "pieces": len(splits.of(name)),
                "from": series.timestamp(lo) if hi > lo else None,
                "to": series.timestamp(hi - 1) if hi > lo else None,
            }
            for name, (lo, hi) in bounds.items()
        },
        "cleaning": report.lines(),
        "cleaning_counts": {
            **{k: v for k, v in asdict(report).items() if k not in ("columns", "long_gaps")},
            "long_gaps": [{"last_before": a, "first_after": b, "rows_missing": n} for a, b, n in report.long_gaps],
        },
    }


def segment_starts(series: CleanSeries) -> np.ndarray:
    """For every row, the first row of its gap-free segment."""
    starts = np.zeros(series.rows, dtype=np.int64)
    for start, stop in series.segments:
        starts[start:stop] = start
    return starts
