"""Training end to end on small messy files: the run directory, the evidence, and an export that passes parity."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from trainer_fixtures import write_sensor_csv

from edge_runtime.cli import main
from export.bundle_export import ExportOptions, export_bundle
from trainer.fit import MIN_LEARNING_RATE, PlateauControl
from trainer.run_dir import RunConfig, load_splits
from trainer.train import TrainOptions, train

ONNX_ONLY = ExportOptions(formats=("onnx",), precisions=("float32",))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Two sensors in, one forecast 3 steps out, stacked GRU with dropout, min-max scaling, differenced temp,
    on a file with empty cells, a short and a long gap, a duplicate and rows out of order."""
    root = tmp_path_factory.mktemp("messy")
    csv = write_sensor_csv(
        root / "messy.csv",
        rows=900,
        empty_cells=(40, 41, 700),
        drop_rows=(100, *range(300, 340)),
        swap_rows=(10,),
        duplicate_rows=(20,),
    )
    options = TrainOptions(
        csv,
        ("temp",),
        ("temp", "load"),
        None,
        cell="gru",
        layers=(6, 4),
        window=24,
        horizon=3,
        epochs=2,
        quiet=True,
        dropout=0.1,
        recurrent_dropout=0.1,
        difference=("temp",),
        scaler="minmax",
    )
    metrics = train(options, root / "run")
    return csv, root / "run", metrics


def test_run_json_records_what_the_device_needs(messy_run) -> None:
    _, run, _ = messy_run
    config = RunConfig.load(run)
    assert (config.cell, config.layers, config.horizon, config.warmup_steps) == ("gru", (6, 4), 3, 6)
    assert config.features == ("temp", "load") and config.targets == ("temp",) and config.relative_to_last
    assert config.scaler_kind == "minmax" and config.differenced == ("temp",)
    assert (config.interval_seconds, config.max_gap_rows, config.task) == (60.0, 3, "forecast")
    model = keras.models.load_model(run / "model.keras", compile=False)
    assert [layer.name for layer in model.layers[1:]] == ["rnn_0", "dropout_0", "rnn_1", "dropout_1", "head"]


def test_minmax_maps_the_training_range_to_unit_interval(messy_run) -> None:
    _, run, _ = messy_run
    splits = load_splits(run)
    load = splits["train"][:, 1]  # level input: (x - min) / (max - min) over the training rows
    assert load.min() == pytest.approx(0, abs=1e-6) and load.max() == pytest.approx(1, abs=1e-6)
    temp = splits["train"][:, 0]  # differenced: changes between samples, 0 where each piece starts
    assert np.abs(temp).max() < 0.5 and temp[splits["train_starts"]].tolist() == [0.0] * len(splits["train_starts"])
    assert splits["val_targets"].shape == (len(splits["val"]), 1)


def test_metrics_hold_baselines_per_step_and_cleaning(messy_run) -> None:
    csv, run, metrics = messy_run
    assert json.loads((run / "metrics.json").read_text()) == metrics
    test = metrics["test"]
    assert test["model"]["mae"] > 0 and test["persistence"]["mae"] > 0
    entry = test["targets"]["temp"]
    for block in ("model", "persistence", "seasonal_naive"):
        assert all(len(entry[block][k]) == 3 for k in ("mse", "rmse", "mae", "r2", "mse_std", "rmse_std", "mae_std"))
    assert entry["mase_persistence"][0] == pytest.approx(entry["model"]["mae"][0] / entry["persistence"]["mae"][0])
    assert test["seasonal_naive"]["season"] == 48  # a day is longer than the data: the 48-row cycle is inferred
    assert metrics["validation"]["standardised_mse"] > 0
    cleaning = " ".join(metrics["data"]["cleaning"])
    for phrase in ("sorted by time", "merged", "short time gap", "split the series", "empty cells interpolated"):
        assert phrase in cleaning
    # The first test row is a data row of the file: its timestamp is the test split's first timestamp.
    rows = csv.read_text().splitlines()[1:]
    assert rows[test["first_row"]].startswith(test["first_timestamp"])


def test_test_split_is_streamed_piece_by_piece_without_the_warmup(messy_run) -> None:
    _, run, metrics = messy_run
    splits = load_splits(run)
    lengths = np.diff(np.append(splits["test_starts"], len(splits["test"])))
    assert metrics["data"]["splits"]["test"]["pieces"] == len(lengths)
    assert metrics["test"]["rows_scored"] == sum(max(0, n - 6 - 3) for n in lengths)  # warm-up 6, horizon 3


def test_report_and_plots(messy_run) -> None:
    _, run, _ = messy_run
    report = (run / "report.md").read_text()
    for heading in ("## Data", "## Cleaning", "## Model", "## Training", "## Test metrics", "### `temp` per horizon"):
        assert heading in report
    assert "temp` (differenced)" in report and "minmax, fitted on the training rows only" in report
    for name in ("loss.png", "forecast.png", "residuals.png"):
        assert (run / name).read_bytes().startswith(PNG)
        assert f"({name})" in report


def test_stacked_dropout_differenced_model_exports_with_parity(messy_run, tmp_path: Path) -> None:
    _, run, _ = messy_run
    bundle, report = export_bundle(run, tmp_path / "bundle", ONNX_ONLY)
    assert report.passed, report.summary()
    assert bundle.manifest.layers == (6, 4)


def test_classification_run_and_export(tmp_path: Path, capsys) -> None:
    csv = write_sensor_csv(tmp_path / "labelled.csv", rows=700)
    options = TrainOptions(
        csv, (), ("load",), None, layers=(6,), window=24, epochs=2, quiet=True, task="classify", label="state"
    )
    metrics = train(options, tmp_path / "run")
    config = RunConfig.load(tmp_path / "run")
    assert (config.task, config.label, config.classes, config.targets) == ("classify", "state", ("fault", "normal"), ())
    test = metrics["test"]
    assert test["positive_class"] == "fault"  # the rarer class by default
    assert 0 <= test["accuracy"] <= 1 and test["roc_auc"] is not None
    assert sum(map(sum, test["confusion"]["rows_actual_columns_predicted"])) == test["rows_scored"]
    assert test["majority_class"]["class"] == "normal" and test["majority_class"]["roc_auc"] == 0.5
    assert metrics["validation"]["log_loss"] > 0
    model = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert model.get_layer("head").activation.__name__ == "sigmoid"
    for name in ("roc.png", "probabilities.png", "loss.png"):
        assert (tmp_path / "run" / name).read_bytes().startswith(PNG)
    # the same export path: every artifact passes parity (the numpy reference applies the sigmoid head), and the
    # runtime streams class probabilities
    bundle, report = export_bundle(tmp_path / "run", tmp_path / "bundle")
    assert report.passed, report.markdown()
    capsys.readouterr()
    window = ["export", str(tmp_path / "run"), "--out", str(tmp_path / "window"), "--window-model"]
    assert main(window) == 2  # a classifier has no window model: refused in one line, nothing written
    assert capsys.readouterr().err.strip() == (
        "rnnedge: error: --window-model is for forecasters: a classifier's window model is not exported"
    )
    assert not (tmp_path / "window").exists()
    assert (bundle.manifest.task, bundle.manifest.classes, bundle.manifest.head_activation) == (
        "classify",
        ("fault", "normal"),
        "sigmoid",
    )
    assert {r.runtime for r in report.results} >= {"onnxruntime", "litert", "numpy"}
    int8 = [r for r in report.results if r.check == "task"]
    assert int8 and all(r.task.decision_agreement >= 0.99 and r.task.mae_ratio is None for r in int8)
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(csv.read_text().splitlines()[:101]) + "\n")
    capsys.readouterr()  # what training printed
    assert main(["run", str(bundle.path), "--source", f"csv:{rows}"]) == 0
    messages = [json.loads(line)["message"] for line in capsys.readouterr().out.strip().splitlines()]
    assert len(messages) == 100 - bundle.manifest.warmup_steps
    for message in messages:
        probabilities = message["probabilities"]
        assert set(probabilities) == {"fault", "normal"}
        assert abs(sum(probabilities.values()) - 1) < 1e-6
        assert message["class"] == max(probabilities, key=probabilities.get)


def test_same_seed_same_model(tmp_path: Path) -> None:
    csv = write_sensor_csv(tmp_path / "s.csv", rows=400)
    options = TrainOptions(csv, ("temp",), (), None, layers=(4,), window=16, epochs=1, quiet=True, plots=False)
    first = train(options, tmp_path / "a")["test"]["model"]
    assert train(options, tmp_path / "b")["test"]["model"] == first


def test_cli_prints_cleaning_and_progress_unless_quiet(tmp_path: Path, capsys) -> None:
    csv = write_sensor_csv(tmp_path / "c.csv", rows=400, swap_rows=(5,))
    args = ["train", str(csv), "--target", "temp", "--units", "4", "--window", "16", "--epochs", "2"]
    assert main([*args, "--no-plots", "--out", str(tmp_path / "loud")]) == 0
    loud = capsys.readouterr().out
    assert "cleaning: 1 row earlier than the row before: sorted by time" in loud
    assert "Epoch 2/2" in loud and "val_loss" in loud
    assert main([*args, "--no-plots", "--quiet", "--out", str(tmp_path / "quiet")]) == 0
    quiet = capsys.readouterr().out.strip().splitlines()
    assert len(quiet) == 1 and quiet[0].startswith("trained lstm [4] in ")
    # training again into an earlier run directory is allowed: it is overwritten (only a bundle there is refused)
    assert main([*args, "--units", "5", "--no-plots", "--quiet", "--out", str(tmp_path / "quiet")]) == 0
    assert RunConfig.load(tmp_path / "quiet").layers == (5,)


def test_plateau_control_halves_the_rate_stops_and_restores_the_best_weights() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    control = PlateauControl(patience=4, lr_patience=2, min_delta=0.01)
    control.set_model(model)
    losses = [1.0, 0.5, 0.499, 0.6, 0.7, 0.8]  # epoch 3 improves by less than 1%: a plateau, but the best weights
    for epoch, loss in enumerate(losses):
        model.layers[0].kernel.assign([[float(epoch)]])
        control.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            break
    assert control.rates == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.005, 0.005])
    assert control.stopped_early and len(control.rates) == 6 and control.best_epoch == 3
    control.on_train_end()
    assert float(model.layers[0].kernel.numpy()[0, 0]) == 2.0
    assert MIN_LEARNING_RATE < 0.005
