"""PNG evidence for a run: loss curves, forecasts against the actual test values, residuals, class scores."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from trainer.evaluate import ClassScores, ForecastScores  # noqa: E402
from trainer.metrics import roc_curve  # noqa: E402

MAX_PANELS = 3  # targets plotted; metrics.json has them all
ZOOM_ROWS = 500


def _axis(times: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """Plot positions of cleaned-series rows: datetimes when the data has them, else row numbers."""
    if times is None:
        return rows
    return (times[rows] * 1000).astype("datetime64[ms]")


def _on_grid(rows: np.ndarray, values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Values placed at their rows on [lo, hi), NaN elsewhere, so lines break across gaps and unscored rows."""
    grid = np.full(hi - lo, np.nan)
    grid[rows - lo] = values
    return grid


def plot_losses(history: dict[str, list[float]], best_epoch: int, loss: str, path: Path) -> None:
    fig, axis = plt.subplots(figsize=(8, 4.5))
    epochs = np.arange(1, len(history["loss"]) + 1)
    axis.plot(epochs, history["loss"], label="training")
    axis.plot(epochs, history["val_loss"], label="validation")
    axis.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch}), weights restored")
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"loss ({loss}, after warm-up steps)")
    axis.set_title("training curves")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_forecasts(scores: ForecastScores, times: np.ndarray | None, targets: tuple[str, ...], path: Path) -> None:
    """Actual values and the forecasts made 1 and H steps before them over the test split (and the last
    ZOOM_ROWS rows in a second panel when the split is much longer than that)."""
    horizon = scores.forecast.shape[1]
    shown = targets[:MAX_PANELS]
    lo, hi = int(scores.rows.min()) + 1, int(scores.rows.max()) + horizon + 1
    parts = (slice(None), slice(-ZOOM_ROWS, None)) if hi - lo > 2 * ZOOM_ROWS else (slice(None),)
    fig, axes = plt.subplots(
        len(shown),
        len(parts),
        figsize=(7 * len(parts), 3.8 * len(shown)),
        squeeze=False,
        width_ratios=(2, 1)[: len(parts)],
    )
    x = _axis(times, np.arange(lo, hi))
    for j, name in enumerate(shown):
        actual = _on_grid(scores.rows + 1, scores.actual[:, 0, j], lo, hi)
        first = _on_grid(scores.rows + 1, scores.forecast[:, 0, j], lo, hi)
        last = _on_grid(scores.rows + horizon, scores.forecast[:, -1, j], lo, hi)
        for axis, part in zip(axes[j], parts, strict=True):
            axis.plot(x[part], actual[part], label="actual", linewidth=0.9, color="black")
            axis.plot(x[part], first[part], label="forecast 1 step ahead", linewidth=0.9)
            if horizon > 1:
                axis.plot(x[part], last[part], label=f"forecast {horizon} steps ahead", linewidth=0.9)
            axis.set_ylabel(name)
            axis.tick_params(axis="x", labelrotation=20)
        axes[j, 0].set_title(f"{name}: test split, streamed from zero state")
        if len(parts) > 1:
            axes[j, 1].set_title(f"last {ZOOM_ROWS} rows")
    axes[0, 0].legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_residuals(scores: ForecastScores, targets: tuple[str, ...], path: Path) -> None:
    horizon = scores.forecast.shape[1]
    shown = targets[:MAX_PANELS]
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4), squeeze=False)
    for j, name in enumerate(shown):
        axis = axes[0, j]
        steps = (0, horizon - 1) if horizon > 1 else (0,)
        for k in steps:
            residual = scores.forecast[:, k, j] - scores.actual[:, k, j]
            axis.hist(residual, bins=60, alpha=0.6, label=f"{k + 1} step(s) ahead (sd {residual.std():.3g})")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel(f"forecast - actual ({name}, sensor units)")
        axis.set_ylabel("test rows")
        axis.legend()
    fig.suptitle("test residuals")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_classes(
    scores: ClassScores, times: np.ndarray | None, classes: tuple[str, ...], positive: int, directory: Path
) -> list[str]:
    """ROC curve(s) and the positive class's probability over the test split against the true label."""
    fig, axis = plt.subplots(figsize=(5.5, 5))
    shown = (positive,) if len(classes) == 2 else range(len(classes))
    for k in shown:
        fpr, tpr = roc_curve(scores.probabilities[:, k], scores.actual == k)
        axis.plot(fpr, tpr, label=f"{classes[k]}")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set_xlabel("false-positive rate")
    axis.set_ylabel("true-positive rate")
    axis.set_title("ROC on the test split")
    axis.legend()
    fig.tight_layout()
    fig.savefig(directory / "roc.png", dpi=100)
    plt.close(fig)

    lo, hi = int(scores.rows.min()), int(scores.rows.max()) + 1
    fig, axis = plt.subplots(figsize=(14, 4))
    x = _axis(times, np.arange(lo, hi))
    axis.plot(
        x,
        _on_grid(scores.rows, scores.probabilities[:, positive], lo, hi),
        linewidth=0.8,
        label=f"P({classes[positive]})",
    )
    axis.plot(
        x,
        _on_grid(scores.rows, (scores.actual == positive).astype(float), lo, hi),
        linewidth=0.8,
        label=f"actual is {classes[positive]}",
    )
    axis.set_ylim(-0.05, 1.05)
    axis.set_title("test split, streamed from zero state")
    axis.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(directory / "probabilities.png", dpi=100)
    plt.close(fig)
    return ["roc.png", "probabilities.png"]
