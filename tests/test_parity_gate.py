"""The parity gate must pass a faithful bundle and catch one that no longer matches what Keras recorded."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import onnx
from conftest import RNNEDGE, TrainedBundle, copy_bundle
from onnx import numpy_helper

from edge_runtime.bundle import load_bundle, write_bundle
from edge_runtime.parity import check_bundle


def result_for(report, file: str):
    (found,) = [r for r in report.results if r.artifact.file == file]
    return found


def test_every_artifact_of_the_exported_bundle_passes_on_its_runtime(tiny_bundle: TrainedBundle) -> None:
    report = check_bundle(load_bundle(tiny_bundle.bundle_dir))
    assert report.passed, report.markdown()
    runs = {(r.artifact.file, r.runtime, r.check) for r in report.results}
    assert runs == {
        ("step.weights.npz", "numpy", "elementwise"),
        ("step.onnx", "onnxruntime", "elementwise"),
        ("step.tflite", "litert", "elementwise"),
        ("step.int8.onnx", "onnxruntime", "task"),
    }
    # at 8 units no weight tensor reaches TFLite's 1,024-element quantization floor: refused, with the reason
    (refused,) = load_bundle(tiny_bundle.bundle_dir).manifest.unsupported
    assert (refused.kind, refused.format, refused.precision) == ("step", "tflite", "int8")
    assert "1,024 elements" in refused.reason
    for r in report.results:
        assert {o.output for o in r.outputs} == {"forecast", "state_out_0_h", "state_out_0_c"}
        if r.check == "elementwise":
            assert r.worst.max_abs_error < 1e-5
        else:
            assert r.task.mae_ratio <= 1.02 and r.task.decision_agreement >= 0.99
            assert r.worst.max_abs_error > 1e-6  # int8 really is quantized: its element-wise error is visible


def perturb_initializer(model_path: Path, delta: float, pick=lambda t: int(np.prod(t.dims))) -> None:
    model = onnx.load(str(model_path))
    float_tensors = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    target = max(float_tensors, key=pick)
    values = numpy_helper.to_array(target).copy()
    values.flat[0] += delta
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    onnx.save(model, str(model_path))


def test_perturbed_weight_is_caught_and_named(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    directory = copy_bundle(tiny_bundle, tmp_path / "bundle")
    perturb_initializer(directory / "step.onnx", 1e-3)
    bundle = write_bundle(directory, load_bundle(tiny_bundle.bundle_dir).manifest)  # re-sealed: sha256 is fine

    report = check_bundle(bundle)
    assert not report.passed
    failed = [r for r in report.results if r.status == "fail"]
    assert [r.artifact.file for r in failed] == ["step.onnx"]
    worst = failed[0].worst
    assert worst.max_abs_error > 1e-5 and worst.first_failing_step is not None
    first = min(o.first_failing_step for o in failed[0].outputs if o.first_failing_step is not None)
    assert f"first exceeds 1e-05 at step {first}" in failed[0].note

    result = subprocess.run([*RNNEDGE, "parity", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    # LiteRT itself may print one INFO line when it creates its CPU delegate; ours is exactly one line
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("rnnedge")]
    assert error.startswith("rnnedge: error: parity FAILED: step.onnx (step onnx/float32) on onnxruntime: output ")
    assert "Traceback" not in result.stderr


def test_int8_gate_fails_when_the_forecast_degrades(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    directory = copy_bundle(tiny_bundle, tmp_path / "bundle")
    # the smallest float tensor of a quantized model is a bias: shift it far enough to hurt every forecast
    perturb_initializer(directory / "step.int8.onnx", 0.5, pick=lambda t: -int(np.prod(t.dims)))
    report = check_bundle(write_bundle(directory, load_bundle(tiny_bundle.bundle_dir).manifest))
    broken = result_for(report, "step.int8.onnx")
    assert broken.status == "fail"
    assert broken.task.mae_ratio > 1.02
    assert "above float" in broken.note
    assert result_for(report, "step.onnx").status == "pass"


def test_swapped_state_outputs_are_caught_in_every_runtime(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    directory = copy_bundle(tiny_bundle, tmp_path / "bundle")
    manifest = load_bundle(directory).manifest
    h, c = manifest.states
    swapped = (replace(h, output=c.output), replace(c, output=h.output))
    report = check_bundle(write_bundle(directory, replace(manifest, states=swapped)))
    for file in ("step.onnx", "step.tflite", "step.weights.npz", "step.int8.onnx"):
        failing = {o.output for o in result_for(report, file).outputs if o.first_failing_step is not None}
        assert failing >= {"state_out_0_h", "state_out_0_c"}, file


def test_parity_command_writes_json_and_junit(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *RNNEDGE,
            "parity",
            str(tiny_bundle.bundle_dir),
            "--json",
            str(tmp_path / "p.json"),
            "--junit",
            str(tmp_path / "p.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "parity passed: 4 artifact/runtime pairs" in result.stdout
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["passed"] is True and len(report["results"]) == 4
    assert report["bundle"] == load_bundle(tiny_bundle.bundle_dir).digest
    suite = ElementTree.parse(tmp_path / "p.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == 4


def test_junit_names_the_failure(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    directory = copy_bundle(tiny_bundle, tmp_path / "bundle")
    perturb_initializer(directory / "step.onnx", 1e-3)
    write_bundle(directory, load_bundle(tiny_bundle.bundle_dir).manifest)
    junit = tmp_path / "p.xml"
    result = subprocess.run(
        [*RNNEDGE, "parity", str(directory), "--junit", str(junit)], capture_output=True, timeout=60
    )
    assert result.returncode == 1
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("failures") == "1"
    (failure,) = suite.iter("failure")
    assert failure.get("message").startswith("output ")
