"""The parity gate must catch a model that no longer matches what Keras recorded."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from conftest import RNNEDGE, TrainedBundle, copy_bundle
from onnx import numpy_helper

from edge_runtime.bundle import load_bundle, write_bundle
from edge_runtime.parity import check_float_parity


def test_exported_bundle_passes(tiny_bundle: TrainedBundle) -> None:
    report = check_float_parity(load_bundle(tiny_bundle.bundle_dir))
    assert report.passed
    assert {o.output for o in report.outputs} == {"forecast", "state_out_0_h", "state_out_0_c"}
    assert report.worst.max_abs_error < 1e-5


def perturb_largest_weight(model_path: Path, delta: float) -> str:
    model = onnx.load(str(model_path))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(largest).copy()
    values.flat[0] += delta
    largest.CopyFrom(numpy_helper.from_array(values, largest.name))
    onnx.save(model, str(model_path))
    return largest.name


def test_perturbed_weight_is_caught_and_named(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    directory = copy_bundle(tiny_bundle, tmp_path / "bundle")
    perturb_largest_weight(directory / "step.onnx", 1e-3)
    bundle = write_bundle(directory, load_bundle(tiny_bundle.bundle_dir).manifest)  # re-sealed: sha256 is fine

    report = check_float_parity(bundle)
    assert not report.passed
    assert report.worst.max_abs_error > 1e-5
    assert report.worst.first_failing_step is not None
    assert "FAILED" in report.summary()

    result = subprocess.run([*RNNEDGE, "parity", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("rnnedge: error: parity FAILED: step.onnx (onnx/float32) on onnxruntime")
    assert "first exceeded at step" in result.stderr


def test_swapped_state_outputs_are_caught(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    directory = copy_bundle(tiny_bundle, tmp_path / "bundle")
    manifest = load_bundle(directory).manifest
    h, c = manifest.states
    swapped = (replace(h, output=c.output), replace(c, output=h.output))
    bundle = write_bundle(directory, replace(manifest, states=swapped))

    report = check_float_parity(bundle)
    assert not report.passed
    failing = {o.output for o in report.outputs if o.first_failing_step is not None}
    assert failing >= {"state_out_0_h", "state_out_0_c"}


def test_parity_command_passes_on_a_good_bundle(tiny_bundle: TrainedBundle) -> None:
    result = subprocess.run(
        [*RNNEDGE, "parity", str(tiny_bundle.bundle_dir)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "parity passed" in result.stdout
    assert json.loads((tiny_bundle.bundle_dir / "manifest.json").read_text())["golden"]["sequences"] == 2
