"""Every cell type, stacked layers, every format and precision: exported and passed by the parity gate."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_rows

from export.bundle_export import ExportOptions, export_bundle
from trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow

ALL_PRECISIONS = ("float32", "int8", "int8-static")


def train_tiny(root: Path, cell: str, layers: tuple[int, ...], rows: int = 900) -> Path:
    csv = write_rows(root / "train.csv", 0, rows)
    options = TrainOptions(
        csv, ("value",), (), None, cell=cell, layers=layers, window=16, horizon=1, epochs=1, quiet=True
    )
    train(options, root / "run")
    return root / "run"


@pytest.mark.parametrize(
    ("cell", "layers"),
    [("simplernn", (8,)), ("lstm", (8,)), ("gru", (8,)), ("lstm", (12, 6)), ("gru", (12, 6))],
)
def test_step_artifacts_of_every_cell_pass_parity(tmp_path: Path, cell: str, layers: tuple[int, ...]) -> None:
    run = train_tiny(tmp_path, cell, layers)
    bundle, report = export_bundle(run, tmp_path / "bundle", ExportOptions(precisions=ALL_PRECISIONS))
    assert report.passed, report.markdown()
    files = {a.file for a in bundle.manifest.artifacts}
    assert files == {
        "step.weights.npz",
        "step.onnx",
        "step.int8.onnx",
        "step.int8-static.onnx",
        "step.tflite",
        "step.int8-static.tflite",
    }
    # below TFLite's 1,024-element floor nothing would be quantized: refused rather than mislabelled
    assert [(u.format, u.precision) for u in bundle.manifest.unsupported] == [("tflite", "int8")]
    per_layer = 2 if cell == "lstm" else 1
    assert len(bundle.manifest.states) == per_layer * len(layers)
    assert [s.size for s in bundle.manifest.states][::per_layer] == list(layers)
    checked = {(r.artifact.file, r.runtime): r for r in report.results}
    assert checked["step.weights.npz", "numpy"].worst.max_abs_error < 1e-5
    assert checked["step.tflite", "litert"].worst.max_abs_error < 1e-5
    assert checked["step.int8-static.onnx", "onnxruntime"].task.rows > 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_32_unit_models_quantize_to_at_most_55_percent_and_window_models_export(tmp_path: Path, cell: str) -> None:
    run = train_tiny(tmp_path, cell, (32,))
    options = ExportOptions(precisions=ALL_PRECISIONS, window_model=True)
    bundle, report = export_bundle(run, tmp_path / "bundle", options)
    assert report.passed, report.markdown()
    size = {name: entry.bytes for name, entry in bundle.manifest.files.items()}
    assert size["step.int8.onnx"] <= 0.55 * size["step.onnx"]
    assert size["step.int8.tflite"] <= 0.55 * size["step.tflite"]

    files = {a.file for a in bundle.manifest.artifacts}
    assert {"window.onnx", "window.tflite", "window.int8.tflite"} <= files
    refused = {(u.kind, u.format, u.precision): u.reason for u in bundle.manifest.unsupported}
    # the known TFLite crash (full-int8 calibration of a WHILE loop) is isolated and reported, not fatal
    assert "crashed" in refused["window", "tflite", "int8-static"]
    assert "Loop" in refused["window", "onnx", "int8-static"]
    if cell == "lstm":
        assert "window.int8.onnx" in files  # ORT quantizes the native ONNX LSTM op
    else:
        assert "Loop" in refused["window", "onnx", "int8"]
    windows = [r for r in report.results if r.artifact.kind == "window"]
    assert windows and all(r.status == "pass" for r in windows)
    assert all(r.worst.max_abs_error < 1e-5 for r in windows if r.check == "elementwise")
