"""Error measures for forecasts and classifications, in plain numpy so they mean the same everywhere."""

from __future__ import annotations

import numpy as np


def error_summary(forecast: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """MSE and MAE over every value (all rows, steps and targets)."""
    error = forecast - actual
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error)))}


def per_step(forecast: np.ndarray, actual: np.ndarray, scale: float) -> dict[str, list[float]]:
    """For (rows, H) forecasts of one target: MSE, RMSE, MAE and R2 per horizon step, in units and standardised.

    Standardised errors are divided by `scale` (the target's training standard deviation), so they compare across
    sensors and with published benchmark figures whatever scaler the model used.
    """
    error = forecast - actual
    mse = np.mean(error**2, axis=0)
    mae = np.mean(np.abs(error), axis=0)
    spread = np.sum((actual - actual.mean(axis=0)) ** 2, axis=0)
    r2 = 1 - np.sum(error**2, axis=0) / np.where(spread > 0, spread, np.nan)
    return {
        "mse": mse.tolist(),
        "rmse": np.sqrt(mse).tolist(),
        "mae": mae.tolist(),
        "r2": [float(v) if np.isfinite(v) else None for v in r2],
        "mse_std": (mse / scale**2).tolist(),
        "rmse_std": (np.sqrt(mse) / scale).tolist(),
        "mae_std": (mae / scale).tolist(),
    }


def mae_ratio(model: dict[str, list[float]], baseline: dict[str, list[float]]) -> list[float | None]:
    """MASE against a baseline on the same rows: model MAE / baseline MAE per step (below 1 beats the baseline)."""
    return [m / b if b > 0 else None for m, b in zip(model["mae"], baseline["mae"], strict=True)]


def seasonal_naive(values: np.ndarray, rows: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(len(rows), H) forecasts made at `rows`: each future row's value one (or more) seasons earlier, all observed.

    Step k uses row t + k - season * ceil(k / season), the latest same-phase row at or before t.
    """
    steps = np.arange(1, horizon + 1)
    back = steps - season * np.ceil(steps / season).astype(np.int64)
    return values[rows[:, None] + back[None, :]]


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum (Mann-Whitney) statistic, ties counted half; None if one class."""
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # average rank within ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    stops = np.concatenate([boundaries, [len(scores)]])
    for a, b in zip(starts, stops, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2  # ranks are 1-based: mean of a+1 .. b
    rank_sum = ranks[positive.astype(bool)].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    hits = positive[order].astype(np.float64)
    distinct = np.concatenate([np.flatnonzero(np.diff(scores[order])), [len(scores) - 1]])
    tp = np.cumsum(hits)[distinct]
    fp = (distinct + 1) - tp
    return np.concatenate([[0.0], fp / max(fp[-1], 1)]), np.concatenate([[0.0], tp / max(tp[-1], 1)])


def _precision_recall_f1(predicted: np.ndarray, actual: np.ndarray, cls: int) -> tuple[float, float, float]:
    tp = int(np.sum((predicted == cls) & (actual == cls)))
    fp = int(np.sum((predicted == cls) & (actual != cls)))
    fn = int(np.sum((predicted != cls) & (actual == cls)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def classification_metrics(
    probabilities: np.ndarray, actual: np.ndarray, classes: tuple[str, ...], positive: int
) -> dict[str, object]:
    """Accuracy, precision, recall, F1, ROC-AUC and the confusion matrix of (rows, K) class probabilities.

    Two classes: precision/recall/F1/AUC of the `positive` class (e.g. the fault). More: macro averages over
    classes, AUC one-vs-rest.
    """
    predicted = np.argmax(probabilities, axis=1)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (actual, predicted), 1)
    per_class = {
        name: dict(zip(("precision", "recall", "f1"), _precision_recall_f1(predicted, actual, i), strict=True))
        for i, name in enumerate(classes)
    }
    for i, name in enumerate(classes):
        per_class[name]["roc_auc"] = roc_auc(probabilities[:, i], actual == i)
        per_class[name]["support"] = int(np.sum(actual == i))
    if k == 2:
        chosen = per_class[classes[positive]]
        summary = {key: chosen[key] for key in ("precision", "recall", "f1", "roc_auc")}
        summary["positive_class"] = classes[positive]
    else:
        summary = {key: float(np.mean([c[key] for c in per_class.values()])) for key in ("precision", "recall", "f1")}
        aucs = [c["roc_auc"] for c in per_class.values() if c["roc_auc"] is not None]
        summary["roc_auc"] = float(np.mean(aucs)) if aucs else None
        summary["average"] = "macro"
    return {
        "rows_scored": int(len(actual)),
        "accuracy": float(np.mean(predicted == actual)),
        **summary,
        "per_class": per_class,
        "confusion": {"classes": list(classes), "rows_actual_columns_predicted": confusion.tolist()},
    }
