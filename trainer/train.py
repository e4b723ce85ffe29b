"""`rnnedge train`: CSV -> run directory with the Keras model, its data facts, metrics, report and plots."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.options import TrainOptions, check_options
from trainer.prepare import data_summary, first_row, prepare, splits_doc, training_windows
from trainer.run_dir import METRICS_FILE, MODEL_FILE, RunConfig, save_splits

__all__ = ["TrainOptions", "train"]


def _head(classes: int, forecast_values: int) -> tuple[int, str, str]:
    """(outputs, activation, loss): one sigmoid for two classes, softmax for more, else H x T linear values."""
    if classes == 2:
        return 1, "sigmoid", "binary_crossentropy"
    if classes > 2:
        return classes, "softmax", "sparse_categorical_crossentropy"
    return forecast_values, "linear", "mse"


def train(options: TrainOptions, run_dir: Path) -> dict[str, object]:
    """Read, clean, split, scale, train and evaluate; write the run directory and return its metrics."""
    check_options(options)
    classify = options.task == "classify"
    prepared = prepare(options)
    classes = prepared.loaded.classes
    if not options.quiet:
        for line in prepared.series.report.lines():
            print(f"cleaning: {line}", flush=True)
    warmup = options.window // 4
    stride = options.stride or max(1, options.window // 8)

    # TensorFlow only now: a mistake in the options or the data is then one line, without its start-up notices
    import keras

    from trainer.evaluate import evaluate_splits
    from trainer.fit import fit
    from trainer.model import build_sequence_model, training_model
    from trainer.report import write_report
    from trainer.streamable import check_streamable

    keras.utils.set_random_seed(options.seed)
    n_outputs, head, loss = _head(len(classes), options.horizon * len(prepared.targets))
    model = build_sequence_model(
        options.cell,
        options.layers,
        len(prepared.features),
        n_outputs,
        options.dropout,
        options.recurrent_dropout,
        head,
        options.bidirectional,
    )
    check_streamable(model)
    train_xy = training_windows(prepared, "train", options.window, stride, warmup, classify)
    val_xy = training_windows(prepared, "val", options.window, stride, warmup, classify)
    result = fit(
        training_model(model, warmup),
        loss,
        train_xy,
        val_xy,
        options.epochs,
        options.batch_size,
        options.learning_rate,
        options.patience,
        options.min_delta,
        options.quiet,
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / MODEL_FILE)
    config = RunConfig(
        source=str(options.csv),
        time_column=prepared.loaded.time_column,
        features=prepared.features,
        targets=prepared.targets,
        relative_to_last=prepared.relative_to_last,
        scaler={n: prepared.scales[n] for n in dict.fromkeys(prepared.features + prepared.targets)},
        cell=options.cell,
        layers=options.layers,
        window=options.window,
        horizon=1 if classify else options.horizon,
        warmup_steps=warmup,
        seed=options.seed,
        split_rows=prepared.splits.counts(),
        task=options.task,
        label=options.label if classify else None,
        classes=classes,
        scaler_kind=options.scaler,
        differenced=prepared.differenced,
        dropout=options.dropout,
        recurrent_dropout=options.recurrent_dropout,
        interval_seconds=prepared.series.report.interval,
        resampled=options.resample is not None,
        max_gap_rows=prepared.series.report.max_gap_rows,
    )
    config.save(run_dir)
    save_splits(run_dir, splits_doc(prepared, classify))

    metrics: dict[str, object] = {
        "task": options.task,
        "data": data_summary(options, prepared),
        "training": {
            "epochs": len(result.history["val_loss"]),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "stopped_early": result.stopped_early,
            "patience": options.patience,
            "min_delta": options.min_delta,
            "seconds": round(result.seconds, 2),
            "train_windows": int(len(train_xy[0])),
            "val_windows": int(len(val_xy[0])),
            "parameters": int(model.count_params()),
            "loss": loss,
            "history": result.history,
        },
    }
    evaluation, test_scores = evaluate_splits(model, prepared, warmup)
    metrics.update(evaluation)
    metrics["test"] = {
        "first_row": first_row(prepared),
        "first_timestamp": prepared.series.timestamp(prepared.splits.val_end),
        **metrics["test"],
    }
    if not classify:
        metrics["units"] = "sensor units; *_std values are divided by the target's training standard deviation"
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_report(run_dir, config, metrics, test_scores, prepared.series.times, options.plots)
    return metrics
