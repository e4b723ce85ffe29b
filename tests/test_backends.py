"""The runtime's backends stream the same forecasts: ONNX Runtime, LiteRT and the numpy reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedBundle, write_rows

from edge_runtime.bundle import load_bundle
from edge_runtime.cli import main
from edge_runtime.errors import BundleError


def forecasts_with(backend: str, bundle: Path, csv: Path, capsys, precision: str = "float32") -> np.ndarray:
    assert main(["run", str(bundle), "--source", f"csv:{csv}", "--backend", backend, "--precision", precision]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return np.array([json.loads(line)["message"]["forecast"]["value"] for line in lines])


def test_every_backend_streams_the_same_forecasts(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    csv = write_rows(tmp_path / "rows.csv", 1200, 300)
    reference = forecasts_with("onnxruntime", tiny_bundle.bundle_dir, csv, capsys)
    assert reference.shape == (300 - 4, 2)
    for backend in ("litert", "numpy"):
        np.testing.assert_allclose(forecasts_with(backend, tiny_bundle.bundle_dir, csv, capsys), reference, atol=1e-5)
    int8 = forecasts_with("onnxruntime", tiny_bundle.bundle_dir, csv, capsys, precision="int8")
    assert 0 < np.abs(int8 - reference).max() < 0.05 * np.abs(reference).mean()


def test_asking_for_an_artifact_the_bundle_lacks_names_what_it_has(tiny_bundle: TrainedBundle) -> None:
    with pytest.raises(BundleError, match=r"no step model in tflite/int8 \(it has: .*step onnx/float32"):
        load_bundle(tiny_bundle.bundle_dir).manifest.artifact("tflite", "int8")
