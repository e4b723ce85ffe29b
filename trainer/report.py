"""`report.md`: what a reviewer needs to trust a run, in one page: data, cleaning, model, training, evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.evaluate import ClassScores, ForecastScores
from trainer.run_dir import RunConfig

MAX_STEP_ROWS = 12


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def shown_steps(horizon: int) -> list[int]:
    """Horizon steps (0-based) for the report table: all of a short horizon, an even spread of a long one."""
    if horizon <= MAX_STEP_ROWS:
        return list(range(horizon))
    return sorted(set(np.linspace(0, horizon - 1, MAX_STEP_ROWS).round().astype(int).tolist()))


def _data_section(config: RunConfig, data: dict[str, Any]) -> list[str]:
    lines = ["## Data", ""]
    lines.append(f"- file: `{data['source']}`; {data['rows_read']} rows read, {data['rows_used']} used after cleaning")
    time = f"`{data['time_column']}`" if data["time_column"] else "none (rows are numbered)"
    lines.append(f"- time column: {time}; sampling interval: {data['interval'] or 'n/a'}")
    inputs = ", ".join(f"`{f}`" + (" (differenced)" if f in config.differenced else "") for f in config.features)
    lines.append(f"- inputs: {inputs}")
    if config.task == "classify":
        lines.append(f"- label: `{config.label}`, classes {', '.join(config.classes)}")
    else:
        lines.append(f"- targets: {', '.join(f'`{t}`' for t in config.targets)}")
    lines.append(f"- scaling: {config.scaler_kind}, fitted on the training rows only")
    lines.append("")
    rows = [[name, s["rows"], s["pieces"], s["from"], s["to"]] for name, s in data["splits"].items()]
    lines += _table(["split", "rows", "gap-free pieces", "from", "to"], rows)
    lines += ["", "## Cleaning", ""] + [f"- {line}" for line in data["cleaning"]]
    return lines


def _model_section(config: RunConfig, training: dict[str, Any]) -> list[str]:
    head = "linear" if config.task == "forecast" else ("sigmoid" if len(config.classes) == 2 else "softmax")
    if config.task == "forecast":
        output = f"{config.horizon} steps x {len(config.targets)} targets" + (
            ", as the change from the last observed value" if config.relative_to_last else ""
        )
    else:
        output = f"class probabilities ({', '.join(config.classes)})"
    return [
        "## Model",
        "",
        f"- {config.cell} with layers {list(config.layers)}, dropout {config.dropout}, recurrent dropout "
        f"{config.recurrent_dropout}; dense head ({head}) at every step: {output}",
        f"- {training['parameters']} parameters; trained on windows of {config.window} rows, the first "
        f"{config.warmup_steps} of each only warm the state (not in the loss, not scored)",
    ]


def _training_section(training: dict[str, Any]) -> list[str]:
    history = training["history"]
    ending = (
        f"stopped early: validation loss gained less than {training['min_delta']:.1%} of its best for "
        f"{training['patience']} epochs"
        if training["stopped_early"]
        else "reached the epoch limit"
    )
    return [
        "## Training",
        "",
        f"- {training['epochs']} epochs in {training['seconds']} s ({ending}); best epoch {training['best_epoch']}, "
        "its weights restored",
        f"- {training['train_windows']} training windows, {training['val_windows']} validation windows; "
        f"loss {training['loss']}",
        f"- training loss {history['loss'][0]:.4g} -> {min(history['loss']):.4g}; validation loss "
        f"{history['val_loss'][0]:.4g} -> {training['best_val_loss']:.4g}; learning rate "
        f"{history['learning_rate'][0]:.3g} -> {history['learning_rate'][-1]:.3g}",
        "",
        "![loss curves](loss.png)",
    ]


def _forecast_section(config: RunConfig, metrics: dict[str, Any]) -> list[str]:
    test = metrics["test"]
    seasonal = test["seasonal_naive"]
    lines = [
        "## Test metrics",
        "",
        f"The test split (from {test['first_timestamp']}) streamed from zero state at the start of each gap-free "
        f"piece, as a device does: {test['rows_scored']} forecasts scored. Baselines on the same rows: "
        f"persistence (the last observed value) and seasonal naive (the value one season of "
        f"{seasonal['season']} rows earlier; scored on {seasonal['rows_scored']} rows where that history exists "
        "inside the piece's segment).",
        "",
    ]
    overall = [["model", test["model"]["mae"], test["model"]["mse"]]]
    overall.append(["persistence", test["persistence"]["mae"], test["persistence"]["mse"]])
    if "mae" in seasonal:
        overall.append(["seasonal naive", seasonal["mae"], seasonal["mse"]])
    lines += _table(["forecaster", "MAE (units)", "MSE (units)"], overall)
    lines += ["", f"Validation, standardised MSE: {_fmt(metrics['validation']['standardised_mse'])}.", ""]
    for name, entry in test["targets"].items():
        model, pers = entry["model"], entry["persistence"]
        seas = entry.get("seasonal_naive")
        header = ["step", "MAE", "RMSE", "MAE std", "MSE std", "R2", "persistence MAE", "MASE vs persistence"]
        if seas:
            header += ["seasonal MAE", "MASE vs seasonal"]
        rows = []
        for k in shown_steps(config.horizon):
            row = [k + 1, model["mae"][k], model["rmse"][k], model["mae_std"][k], model["mse_std"][k], model["r2"][k]]
            row += [pers["mae"][k], entry["mase_persistence"][k]]
            if seas:
                row += [seas["mae"][k], entry["mase_seasonal"][k]]
            rows.append(row)
        lines += [f"### `{name}` per horizon step", ""] + _table(header, rows) + [""]
    lines += [
        "MAE/RMSE in sensor units; *std* = divided by the target's training standard deviation. MASE = model MAE / "
        "baseline MAE on the same rows and step (below 1 beats the baseline; the seasonal ratio uses the rows "
        "where the seasonal baseline exists). Every step is in `metrics.json`.",
        "",
        "![forecasts](forecast.png)",
        "",
        "![residuals](residuals.png)",
    ]
    return lines


def _class_section(config: RunConfig, metrics: dict[str, Any]) -> list[str]:
    test = metrics["test"]
    base = test["majority_class"]
    positive = f" (positive class `{test['positive_class']}`)" if "positive_class" in test else " (macro averages)"
    lines = [
        "## Test metrics",
        "",
        f"The test split streamed from zero state at the start of each gap-free piece: {test['rows_scored']} rows "
        f"scored{positive}. Baseline: always answer the training split's majority class `{base['class']}`.",
        "",
    ]
    keys = ("accuracy", "precision", "recall", "f1")
    lines += _table(
        ["classifier", *keys, "ROC-AUC"],
        [
            ["model", *(test[k] for k in keys), test["roc_auc"]],
            ["majority class", *(base[k] for k in keys + ("roc_auc",))],
        ],
    )
    confusion = test["confusion"]["rows_actual_columns_predicted"]
    lines += ["", "Confusion matrix (rows: actual, columns: predicted):", ""]
    lines += _table(["", *config.classes], [[c, *row] for c, row in zip(config.classes, confusion, strict=True)])
    lines += ["", "![ROC](roc.png)", "", "![probabilities](probabilities.png)"]
    return lines


def write_report(
    run_dir: Path,
    config: RunConfig,
    metrics: dict[str, Any],
    scores: ForecastScores | ClassScores,
    times: np.ndarray | None,
    plots: bool,
) -> None:
    """Write report.md (and the PNGs it shows, unless `plots` is False)."""
    title = f"# Run report: {config.cell} {list(config.layers)}, " + (
        f"forecasting {', '.join(config.targets)} {config.horizon} steps ahead"
        if config.task == "forecast"
        else f"classifying {config.label}"
    )
    lines = [title, ""]
    lines += _data_section(config, metrics["data"]) + [""]
    lines += _model_section(config, metrics["training"]) + [""]
    lines += _training_section(metrics["training"]) + [""]
    if config.task == "forecast":
        lines += _forecast_section(config, metrics)
    else:
        lines += _class_section(config, metrics)
    (run_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if plots:
        from trainer import plots as draw

        training = metrics["training"]
        draw.plot_losses(training["history"], training["best_epoch"], training["loss"], run_dir / "loss.png")
        if config.task == "forecast":
            draw.plot_forecasts(scores, times, config.targets, run_dir / "forecast.png")
            draw.plot_residuals(scores, config.targets, run_dir / "residuals.png")
        else:
            positive = config.classes.index(metrics["test"]["positive_class"]) if len(config.classes) == 2 else 0
            draw.plot_classes(scores, times, config.classes, positive, run_dir)
