"""`rnnedge train`: CSV -> run directory with the Keras model, its data facts and test metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.scaling import Scaler
from trainer.dataset import Series, fit_scales, load_series, segment_arrays, split_bounds, windows
from trainer.model import CELLS, build_sequence_model, training_model
from trainer.run_dir import METRICS_FILE, MODEL_FILE, RunConfig, save_splits


@dataclass(frozen=True)
class TrainOptions:
    csv: Path
    targets: tuple[str, ...]
    features: tuple[str, ...]  # empty: the targets themselves
    time_column: str | None
    cell: str = "lstm"
    layers: tuple[int, ...] = (32,)
    window: int = 64
    horizon: int = 1
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    quiet: bool = False


def stream_forecasts(model: keras.Model, inputs: np.ndarray, scaler: Scaler) -> np.ndarray:
    """What a device streaming `inputs` from zero state would forecast after each row: (N, H, T) in units."""
    output = model.predict(inputs[None], verbose=0)[0]
    return scaler.forecast_units(output, inputs)


def forecast_errors(series: Series, start: int, forecasts: np.ndarray, warmup: int) -> dict[str, object]:
    """MSE/MAE in sensor units of the model and of persistence on every row after warm-up whose horizon fits."""
    horizon = forecasts.shape[1]
    targets = series.targets[start:]
    rows = np.arange(warmup, len(targets) - horizon)
    actual = np.stack([targets[rows + k + 1] for k in range(horizon)], axis=1)
    model_error = forecasts[rows] - actual
    persistence_error = targets[rows][:, None, :] - actual

    def summary(error: np.ndarray) -> dict[str, float]:
        return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error)))}

    return {
        "rows_scored": int(len(rows)),
        "model": summary(model_error),
        "persistence": summary(persistence_error),
    }


def train(options: TrainOptions, run_dir: Path) -> dict[str, object]:
    if options.cell not in CELLS:
        raise InputError(f"unknown cell {options.cell!r} (supported: {', '.join(CELLS)})")
    if options.window < 2 or options.horizon < 1:
        raise InputError("window must be at least 2 and horizon at least 1")
    features = options.features or options.targets
    series = load_series(options.csv, features, options.targets, options.time_column)
    bounds = split_bounds(len(series.timestamps), options.window, options.horizon, options.csv)
    scales = fit_scales(series, bounds.train_end, options.csv)
    relative = all(t in features for t in options.targets)
    scaler = Scaler(features, options.targets, scales, relative, options.horizon)
    warmup = options.window // 4
    parts = {name: segment_arrays(series, part, scaler) for name, part in bounds.slices().items()}

    keras.utils.set_random_seed(options.seed)
    model = build_sequence_model(options.cell, options.layers, len(features), options.horizon * len(options.targets))
    fit_model = training_model(model, warmup)
    fit_model.compile(optimizer=keras.optimizers.Adam(options.learning_rate, clipnorm=1.0), loss="mse")
    stride = max(1, options.window // 8)
    x_train, y_train = windows(*parts["train"], options.window, stride)
    x_val, y_val = windows(*parts["val"], options.window, stride)
    started = time.monotonic()
    history = fit_model.fit(
        x_train,
        y_train[:, warmup:],
        validation_data=(x_val, y_val[:, warmup:]),
        epochs=options.epochs,
        batch_size=options.batch_size,
        shuffle=True,
        verbose=0 if options.quiet else 2,
        callbacks=[
            keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=1e-5),
        ],
    )
    seconds = time.monotonic() - started

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / MODEL_FILE)
    config = RunConfig(
        source=str(options.csv),
        time_column=series.time_column,
        features=features,
        targets=options.targets,
        relative_to_last=relative,
        scaler=scales,
        cell=options.cell,
        layers=options.layers,
        window=options.window,
        horizon=options.horizon,
        warmup_steps=warmup,
        seed=options.seed,
        split_rows=(bounds.train_end, bounds.val_end - bounds.train_end, bounds.rows - bounds.val_end),
    )
    config.save(run_dir)
    save_splits(run_dir, {name: inputs for name, (inputs, _) in parts.items()})

    forecasts = stream_forecasts(model, parts["test"][0], scaler)
    val_losses = history.history["val_loss"]
    metrics = {
        "units": "sensor units (inverse of the scaler)",
        "test": {"first_row": bounds.val_end, **forecast_errors(series, bounds.val_end, forecasts, warmup)},
        "training": {
            "epochs": len(val_losses),
            "best_epoch": int(np.argmin(val_losses)) + 1,
            "best_val_loss": float(np.min(val_losses)),
            "seconds": round(seconds, 2),
            "train_windows": int(len(x_train)),
            "parameters": int(model.count_params()),
        },
    }
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
