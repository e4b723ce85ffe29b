"""Scoring a trained model the way a device would run it: each gap-free piece streamed from zero state.

Rows inside the first `warmup_steps` of a piece only warm the state and are not scored, exactly as the runtime
publishes nothing for them. Baselines are scored on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from edge_runtime.scaling import Scaler
from trainer.dataset import Piece
from trainer.metrics import classification_metrics, error_summary, mae_ratio, per_step, seasonal_naive
from trainer.prepare import Prepared, segment_starts


def stream_outputs(model: keras.Model, pieces_inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Every step's output for each piece from zero state, in one call: the model is causal, so padding the
    shorter pieces at the end changes none of their outputs."""
    longest = max(len(x) for x in pieces_inputs)
    batch = np.zeros((len(pieces_inputs), longest, pieces_inputs[0].shape[1]), np.float32)
    for i, x in enumerate(pieces_inputs):
        batch[i, : len(x)] = x
    outputs = model.predict(batch, batch_size=len(batch), verbose=0)
    return [outputs[i, : len(x)] for i, x in enumerate(pieces_inputs)]


@dataclass(frozen=True)
class ForecastScores:
    """Forecasts of every scored row in sensor units, with the actual values and the baselines."""

    rows: np.ndarray  # (n,) cleaned-series row after which each forecast was made
    forecast: np.ndarray  # (n, H, T)
    actual: np.ndarray  # (n, H, T)
    persistence: np.ndarray  # (n, H, T)
    seasonal: np.ndarray  # (n, H, T), NaN where a season of history is not available in the segment


def score_forecasts(
    model: keras.Model,
    pieces: list[Piece],
    inputs: list[np.ndarray],
    scaled: list[np.ndarray],
    targets: np.ndarray,
    segment_start: np.ndarray,
    scaler: Scaler,
    warmup: int,
    season: int,
) -> ForecastScores:
    """`targets` are the raw target columns of the whole cleaned series; `segment_start[t]` is the first row of
    the segment holding row t (the seasonal baseline looks back only inside it)."""
    horizon = scaler.horizon
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("rows", "forecast", "actual", "persistence", "seasonal")}
    for piece, output, levels in zip(pieces, stream_outputs(model, inputs), scaled, strict=True):
        local = np.arange(warmup, piece.rows - horizon)
        if len(local) == 0:
            continue
        rows = piece.start + local
        parts["rows"].append(rows)
        parts["forecast"].append(scaler.forecast_units(output[local], levels[local]))
        parts["actual"].append(np.stack([targets[rows + k] for k in range(1, horizon + 1)], axis=1))
        parts["persistence"].append(np.repeat(targets[rows][:, None, :], horizon, axis=1))
        naive = seasonal_naive(targets, rows, horizon, season)
        available = rows + 1 - season >= segment_start[rows]
        naive[~available] = np.nan
        parts["seasonal"].append(naive)
    if not parts["rows"]:
        empty = np.zeros((0, horizon, targets.shape[1]))
        return ForecastScores(np.zeros(0, np.int64), empty, empty, empty, empty)
    return ForecastScores(*(np.concatenate(parts[k]) for k in parts))


def forecast_metrics(
    scores: ForecastScores, target_names: tuple[str, ...], target_scale: np.ndarray, season: int
) -> dict[str, object]:
    """Overall MSE/MAE (units) plus per-target, per-horizon-step metrics against both baselines."""
    seasonal_rows = ~np.isnan(scores.seasonal).any(axis=(1, 2))
    seasonal_errors = (
        error_summary(scores.seasonal[seasonal_rows], scores.actual[seasonal_rows]) if seasonal_rows.any() else {}
    )
    result: dict[str, object] = {
        "rows_scored": int(len(scores.rows)),
        "model": error_summary(scores.forecast, scores.actual),
        "persistence": error_summary(scores.persistence, scores.actual),
        "seasonal_naive": {
            "season": season,
            "rows_scored": int(seasonal_rows.sum()),
            **seasonal_errors,
        },
    }
    per_target = {}
    for j, name in enumerate(target_names):
        scale = float(target_scale[j])
        model = per_step(scores.forecast[:, :, j], scores.actual[:, :, j], scale)
        persistence = per_step(scores.persistence[:, :, j], scores.actual[:, :, j], scale)
        entry = {
            "model": model,
            "persistence": persistence,
            "mase_persistence": mae_ratio(model, persistence),
        }
        if seasonal_rows.any():
            on_rows = per_step(scores.forecast[seasonal_rows, :, j], scores.actual[seasonal_rows, :, j], scale)
            seasonal = per_step(scores.seasonal[seasonal_rows, :, j], scores.actual[seasonal_rows, :, j], scale)
            entry["seasonal_naive"] = seasonal
            entry["mase_seasonal"] = mae_ratio(on_rows, seasonal)
        per_target[name] = entry
    result["targets"] = per_target
    return result


def standardised_mse(scores: ForecastScores, target_scale: np.ndarray) -> float:
    """One number to rank models by: MSE over every step and target, each target divided by its training std."""
    error = (scores.forecast - scores.actual) / target_scale
    return float(np.mean(error**2)) if error.size else float("nan")


@dataclass(frozen=True)
class ClassScores:
    rows: np.ndarray  # (n,) cleaned-series rows scored
    probabilities: np.ndarray  # (n, K)
    actual: np.ndarray  # (n,) class codes


def class_probabilities(output: np.ndarray) -> np.ndarray:
    """Head output -> (n, K): a sigmoid head gives P(class 1) only."""
    if output.shape[-1] == 1:
        return np.concatenate([1 - output, output], axis=-1)
    return output


def score_classes(
    model: keras.Model, pieces: list[Piece], inputs: list[np.ndarray], codes: np.ndarray, warmup: int
) -> ClassScores:
    rows, probabilities = [], []
    for piece, output in zip(pieces, stream_outputs(model, inputs), strict=True):
        local = np.arange(warmup, piece.rows)
        rows.append(piece.start + local)
        probabilities.append(class_probabilities(output[local]))
    all_rows = np.concatenate(rows)
    return ClassScores(all_rows, np.concatenate(probabilities), codes[all_rows].astype(np.int64))


def class_metrics(scores: ClassScores, classes: tuple[str, ...], positive: int, majority: int) -> dict[str, object]:
    """Model metrics, and those of always answering the training split's majority class on the same rows."""
    result = classification_metrics(scores.probabilities, scores.actual, classes, positive)
    constant = np.zeros_like(scores.probabilities)
    constant[:, majority] = 1.0
    baseline = classification_metrics(constant, scores.actual, classes, positive)
    result["majority_class"] = {
        "class": classes[majority],
        **{k: baseline[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
    }
    return result


def log_loss(scores: ClassScores) -> float:
    """Mean cross-entropy of the true class: the classification counterpart of the standardised MSE."""
    chosen = scores.probabilities[np.arange(len(scores.actual)), scores.actual]
    return float(-np.mean(np.log(np.clip(chosen, 1e-7, 1.0))))


def evaluate_splits(
    model: keras.Model, prepared: Prepared, warmup: int
) -> tuple[dict[str, object], ForecastScores | ClassScores]:
    """Validation and test metrics, each split streamed piece by piece from zero state; and the test scores."""
    results: dict[str, object] = {}
    scores: ForecastScores | ClassScores
    for split, key in (("val", "validation"), ("test", "test")):
        pieces = prepared.splits.of(split)
        inputs = [a.inputs for a in prepared.arrays[split]]
        if prepared.loaded.classes:
            scores = score_classes(model, pieces, inputs, prepared.series.values[:, -1], warmup)
            metrics = class_metrics(scores, prepared.loaded.classes, prepared.positive, prepared.majority)
            metrics["log_loss"] = log_loss(scores)
        else:
            scores = score_forecasts(
                model,
                pieces,
                inputs,
                [a.scaled for a in prepared.arrays[split]],
                prepared.raw_targets,
                segment_starts(prepared.series),
                prepared.scaler,
                warmup,
                prepared.season,
            )
            metrics = forecast_metrics(scores, prepared.targets, prepared.target_std, prepared.season)
            metrics["standardised_mse"] = standardised_mse(scores, prepared.target_std)
        results[key] = metrics
    return results, scores
