"""Differenced inputs travel from the trainer to the device: the runtime feeds the change of each such column
since the stream's previous sample, and streams exactly what the trained model computes."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import write_rows

from edge_runtime.bundle import load_bundle
from edge_runtime.cli import main
from edge_runtime.csv_source import read_columns
from edge_runtime.scaling import Scaler, model_inputs
from export.bundle_export import ExportOptions, export_bundle
from trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow


def test_a_differenced_model_streams_on_the_device_as_keras_computes(tmp_path: Path, capsys) -> None:
    csv = write_rows(tmp_path / "train.csv", 0, 900)
    options = TrainOptions(
        csv, ("value",), (), None, layers=(8,), window=16, epochs=1, quiet=True, difference=("value",)
    )
    train(options, tmp_path / "run")
    bundle, report = export_bundle(tmp_path / "run", tmp_path / "bundle", ExportOptions(formats=("onnx", "numpy")))
    assert report.passed, report.markdown()
    manifest = load_bundle(bundle.path).manifest
    assert manifest.differenced == ("value",)

    heldout = write_rows(tmp_path / "heldout.csv", 1200, 200)
    assert main(["run", str(bundle.path), "--source", f"csv:{heldout}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    received = np.array([json.loads(line)["message"]["forecast"]["value"] for line in lines])

    scaler = Scaler.from_manifest(manifest)
    levels = scaler.scale_inputs(read_columns(heldout, ("value",)).values)
    model = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    output = model.predict(model_inputs(levels, [0])[None], verbose=0)[0]
    expected = scaler.forecast_units(output, levels)[manifest.warmup_steps :, :, 0]
    np.testing.assert_allclose(received, expected, atol=1e-5)
