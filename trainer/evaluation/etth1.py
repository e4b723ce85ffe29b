"""`rnnedge eval etth1`: univariate ETTh1 (target OT) under the standard long-horizon forecasting protocol.

Protocol (the shared data's README.md): train rows [0, 8640), validation [8640, 11520), test [11520, 14400), each
extended left by the look-back; z-score fitted on the training rows only; MSE and MAE on standardised values over
all stride-1 test windows. The trainer gets rows [0, 14400) with a 60/20/20 split, which puts its split points
exactly at 8640 and 11520 (checked, as is the z-score), and trains with the product's settings for a level that
shifts between training and test: OT fed as its change since the previous sample, the output as the change from
the last observed value.

Two scores per model, on the same 2,880 - H + 1 target windows:
- protocol: each test window read by the Keras model from zero state (it sees exactly its L look-back rows, as
  the published window models do), the forecast taken after the last row;
- device: the exported ONNX step model in the edge runtime's engine, streamed one sample at a time from zero
  state at row 11520 - L through the whole test split, as a device would forecast at each row.
Persistence and a closed-form least-squares linear model on the same window (relative to its last value: the
DLinear-style reference of shared/notes/MODELING.md) are scored on the same windows. Persistence must reproduce
the published 0.0693 / 0.0343 MSE, which pins the windowing.

Each horizon trains one model per seed and keeps the one with the lowest validation error (the test split plays
no part in the choice); the spread over seeds is reported too.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import InputError

TRAIN_END, VAL_END, TEST_END = 8640, 11520, 14400
TARGET = "OT"
# published univariate (OT) test MSE / MAE (shared/data/README.md)
PUBLISHED = {
    96: {
        "PatchTST/42": (0.055, 0.179),
        "DLinear": (0.056, 0.180),
        "Autoformer": (0.071, 0.206),
        "Informer": (0.193, 0.377),
    }
}
PERSISTENCE = {24: (0.0343, 0.1394), 96: (0.0693, 0.2033)}
SUMMARY_NAME = "summary"


@dataclass(frozen=True)
class Etth1Settings:
    horizons: tuple[int, ...] = (24, 96)
    cell: str = "lstm"
    units: int = 16
    window: int = 96  # the look-back L, also the training window
    stride: int = 4  # rows between training windows
    epochs: int = 60
    patience: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)
    difference: bool = True  # feed OT's changes (the product setting); False feeds its level (an ablation)


def read_target(path: Path) -> tuple[list[str], np.ndarray]:
    """The date column and OT of ETTh1.csv (read as is: the licence allows no modified copy)."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (expected ETTh1.csv)") from None
    if not rows or TARGET not in rows[0]:
        raise InputError(f"{path}: no {TARGET} column: is this ETTh1.csv?")
    column = rows[0].index(TARGET)
    body = [r for r in rows[1:] if r]
    if len(body) < TEST_END:
        raise InputError(f"{path}: {len(body)} rows; the protocol needs {TEST_END}")
    try:
        values = np.array([float(r[column]) for r in body])
    except ValueError as exc:
        raise InputError(f"{path}: a {TARGET} value is not a number ({exc})") from None
    return [r[0] for r in body], values


def test_window_starts(horizon: int) -> np.ndarray:
    """The first forecast row of each stride-1 test window."""
    return np.arange(VAL_END, TEST_END - horizon + 1)


def truth(z: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    return z[starts[:, None] + np.arange(horizon)[None, :]]


def errors(forecast: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    error = forecast - actual
    return {"mse": round(float(np.mean(error**2)), 5), "mae": round(float(np.mean(np.abs(error))), 5)}


def persistence(z: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(z[starts - 1][:, None], horizon, axis=1)


def linear_reference(z: np.ndarray, look_back: int, horizon: int) -> np.ndarray:
    """Least squares from a window (relative to its last value) to the next H values, fitted on training rows."""

    def design(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = z[starts - 1][:, None]
        windows = z[starts[:, None] - look_back + np.arange(look_back)[None, :]] - last
        return np.concatenate([windows, np.ones((len(starts), 1))], axis=1), last

    fit = np.arange(look_back, TRAIN_END - horizon + 1)
    x, last = design(fit)
    coef, *_ = np.linalg.lstsq(x, truth(z, fit, horizon) - last, rcond=None)
    x, last = design(test_window_starts(horizon))
    return x @ coef + last


def protocol_forecasts(run_dir: Path, z: np.ndarray, look_back: int, horizon: int, difference: bool) -> np.ndarray:
    """Each test window through the trained Keras model from zero state; output relative to the last value."""
    import keras

    from edge_runtime.scaling import model_inputs

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    starts = test_window_starts(horizon)
    windows = z[starts[:, None] - look_back + np.arange(look_back)[None, :]].astype(np.float32)
    inputs = np.stack([model_inputs(w[:, None], [0] if difference else []) for w in windows])
    return model.predict(inputs, batch_size=512, verbose=0)[:, -1, :] + z[starts - 1][:, None]


def device_forecasts(bundle_dir: Path, dates: list[str], ot: np.ndarray, look_back: int, horizon: int) -> np.ndarray:
    """The exported ONNX step model streamed through the runtime's engine from row 11520 - L: (windows, H) in
    sensor units, the forecast each test window's previous row produced."""
    from edge_runtime.backends import open_step_backend
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engine import StreamEngine
    from edge_runtime.payloads import parse_timestamp
    from edge_runtime.samples import Sample

    bundle = load_bundle(bundle_dir)
    engine = StreamEngine(bundle, open_step_backend(bundle, bundle.manifest.artifact("onnx")))
    made_at = {}  # row -> forecast made after it
    for row in range(VAL_END - look_back, TEST_END - horizon):
        ts, text = parse_timestamp(dates[row])
        forecasts, rejected = engine.process([Sample("etth1", ts, text, (float(ot[row]),))])
        if rejected:
            raise InputError(f"ETTh1 row {row}: the engine refused the sample ({rejected[0].reason})")
        for message in forecasts.messages():
            made_at[row] = message["forecast"][TARGET]
    rows = test_window_starts(horizon) - 1
    missing = [r for r in rows if r not in made_at]
    if missing:
        raise InputError(f"the engine made no forecast after row {missing[0]} (warm-up longer than the look-back?)")
    return np.array([made_at[r] for r in rows])


def train_and_score(
    data: Path, dates: list[str], ot: np.ndarray, horizon: int, seed: int, settings: Etth1Settings, scratch: Path
) -> dict[str, Any]:
    """One `rnnedge train` run on the protocol rows, exported, scored on every stride-1 test window."""
    from export.bundle_export import ExportOptions, export_bundle
    from trainer.run_dir import RunConfig
    from trainer.train import TrainOptions, train

    run_dir = scratch / f"run_h{horizon}_s{seed}"
    options = TrainOptions(
        data,
        (TARGET,),
        (),
        None,
        cell=settings.cell,
        layers=(settings.units,),
        window=settings.window,
        horizon=horizon,
        epochs=settings.epochs,
        seed=seed,
        quiet=True,
        difference=(TARGET,) if settings.difference else (),
        split=(0.6, 0.2, 0.2),
        stride=settings.stride,
        patience=settings.patience,
        plots=False,
    )
    started = time.perf_counter()
    metrics = train(options, run_dir)
    seconds = time.perf_counter() - started
    config = RunConfig.load(run_dir)
    if config.split_rows != (TRAIN_END, VAL_END - TRAIN_END, TEST_END - VAL_END):
        raise InputError(f"the trainer split the rows {config.split_rows}, not at the protocol's 8640 and 11520")
    mean, std = ot[:TRAIN_END].mean(), ot[:TRAIN_END].std()
    scale = config.scaler[TARGET]
    if abs(scale.mean - mean) > 1e-9 or abs(scale.std - std) > 1e-9:
        raise InputError("the trainer's z-score was not fitted on the training rows [0, 8640) alone")
    z = (ot - mean) / std
    bundle_dir = scratch / f"bundle_h{horizon}_s{seed}"
    bundle, parity = export_bundle(run_dir, bundle_dir, ExportOptions(("onnx",), ("float32",)))
    if not parity.passed:
        raise InputError(f"the exported model failed its parity gate: {parity.summary()}")
    starts = test_window_starts(horizon)
    actual = truth(z, starts, horizon)
    device = (device_forecasts(bundle.path, dates, ot, config.window, horizon) - mean) / std
    return {
        "horizon": horizon,
        "seed": seed,
        "windows": int(len(starts)),
        "parameters": int(metrics["training"]["parameters"]),
        "onnx_step_bytes": bundle.manifest.files[bundle.manifest.artifact("onnx").file].bytes,
        "train_seconds": round(seconds, 1),
        "epochs": metrics["training"]["epochs"],
        "validation_standardised_mse": round(float(metrics["validation"]["standardised_mse"]), 5),
        "protocol": errors(protocol_forecasts(run_dir, z, config.window, horizon, settings.difference), actual),
        "device": errors(device, actual),
        "persistence": errors(persistence(z, starts, horizon), actual),
        "linear_reference": errors(linear_reference(z, config.window, horizon), actual),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed a user would keep (lowest validation error) and the spread of the test scores over seeds."""
    chosen = min(runs, key=lambda r: r["validation_standardised_mse"])
    spread = {
        kind: {
            metric: {
                "mean": round(float(np.mean([r[kind][metric] for r in runs])), 5),
                "min": min(r[kind][metric] for r in runs),
                "max": max(r[kind][metric] for r in runs),
            }
            for metric in ("mse", "mae")
        }
        for kind in ("protocol", "device")
    }
    return {"chosen_by_validation": chosen, "over_seeds": spread, "seeds": runs}


def run_etth1(
    source: Path, out_dir: Path, settings: Etth1Settings = Etth1Settings(), progress: bool = False
) -> dict[str, Any]:
    """Train, export and score every horizon and seed; write summary.json and summary.md to `out_dir`."""
    dates, ot = read_target(source)
    started = time.perf_counter()
    horizons = []
    with tempfile.TemporaryDirectory(prefix="rnnedge-etth1-") as scratch_name:
        scratch = Path(scratch_name)
        data = scratch / "etth1_protocol_rows.csv"  # rows [0, 14400) of date and OT, deleted afterwards
        lines = [f"{d},{float(v)!r}" for d, v in zip(dates[:TEST_END], ot[:TEST_END], strict=True)]
        data.write_text(f"date,{TARGET}\n" + "\n".join(lines) + "\n", encoding="utf-8")
        for horizon in settings.horizons:
            runs = []
            for seed in settings.seeds:
                runs.append(train_and_score(data, dates, ot, horizon, seed, settings, scratch))
                if progress:
                    r = runs[-1]
                    print(
                        f"H={horizon} seed {seed}: protocol MSE {r['protocol']['mse']}, device {r['device']['mse']} "
                        f"({r['train_seconds']} s, {r['epochs']} epochs)",
                        flush=True,
                    )
            horizons.append(summarise(runs))
    for summary in horizons:
        chosen = summary["chosen_by_validation"]
        expected = PERSISTENCE.get(chosen["horizon"])
        if expected and abs(chosen["persistence"]["mse"] - expected[0]) > 1e-4:
            raise InputError(f"persistence MSE {chosen['persistence']['mse']} is not the published {expected[0]}")
    summary = {
        "benchmark": "ETTh1 univariate OT, standard protocol",
        "settings": asdict(settings),
        "horizons": horizons,
        "published": {h: {k: {"mse": v[0], "mae": v[1]} for k, v in t.items()} for h, t in PUBLISHED.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{SUMMARY_NAME}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{SUMMARY_NAME}.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def _pair(result: dict[str, Any], key: str) -> str:
    return f"{result[key]['mse']:.4f} / {result[key]['mae']:.4f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    reads = "OT differenced" if settings["difference"] else "OT as its level"
    lines = [
        "### ETTh1 univariate (OT), standard protocol",
        "",
        "MSE / MAE on standardised values over all stride-1 test windows (rows 11520-14400). *protocol*: each "
        "window read by the Keras model from zero state; *device*: the exported ONNX step model streamed one "
        "sample at a time through the edge runtime's engine across the test split. Per horizon, one "
        f"{settings['cell'].upper()}-{settings['units']} per seed (look-back {settings['window']}, {reads}, "
        "output relative to the last value); the row shows the seed with the lowest validation error, and the "
        f"protocol MSE's spread over seeds. Whole run: {summary['seconds']} s.",
        "",
        "| H | seed | params | ONNX step | protocol | device | protocol MSE over seeds (mean, min-max) "
        "| persistence | linear reference | train s (epochs) |",
        "|---|---|---:|---:|---|---|---|---|---|---|",
    ]
    for horizon in summary["horizons"]:
        r = horizon["chosen_by_validation"]
        spread = horizon["over_seeds"]["protocol"]["mse"]
        lines.append(
            f"| {r['horizon']} | {r['seed']} | {r['parameters']:,} | {r['onnx_step_bytes']:,} B | "
            f"{_pair(r, 'protocol')} | {_pair(r, 'device')} | {spread['mean']:.4f} ({spread['min']:.4f}-"
            f"{spread['max']:.4f}, {len(horizon['seeds'])} seeds) | {_pair(r, 'persistence')} | "
            f"{_pair(r, 'linear_reference')} | {r['train_seconds']} ({r['epochs']}) |"
        )
    for horizon, table in summary["published"].items():
        published = ", ".join(f"{name} {v['mse']} / {v['mae']}" for name, v in table.items())
        lines += ["", f"Published at H={horizon} (MSE / MAE): {published}."]
    return "\n".join(lines) + "\n"
