"""Bad bundles, manifests and device/bench/deploy options give one line naming the problem, exit 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedBundle, copy_bundle, one_line_error, write_rows

from edge_runtime.cli import main


def rehash(bundle: Path) -> None:
    """Re-seal the manifest's sha256 entries over the files as they now are, as a careless re-signer would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"garbage\n", "golden.npz: not a golden-vector file (not an npz archive)"),
        ({"inputs": np.zeros(3)}, "golden.npz: golden array 'inputs' has shape (3,) float64"),
        ({"inputs": np.zeros((2, 32, 1), np.float32)}, "golden.npz: golden array 'forecast' is missing"),
    ],
    ids=["not-npz", "wrong-shape", "missing-array"],
)
def test_parity_refuses_rehashed_garbage_golden_vectors(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, content: bytes | dict, expected: str
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    if isinstance(content, bytes):
        (bundle / "golden.npz").write_bytes(content)
    else:
        with (bundle / "golden.npz").open("wb") as handle:
            np.savez(handle, **content)
    rehash(bundle)
    assert expected in one_line_error(capsys, ["parity", str(bundle)])


def edit_manifest(bundle: Path, edit) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("backend", "model"), [("onnxruntime", "step.onnx"), ("litert", "step.tflite"), ("numpy", "step.weights.npz")]
)
def test_a_state_size_the_model_does_not_have_is_refused_at_load(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, backend: str, model: str
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_manifest(bundle, lambda m: m["step_model"]["states"][1].update(size=9))
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    line = one_line_error(capsys, ["run", str(bundle), "--source", f"csv:{rows}", "--backend", backend])
    assert f"{model}: state 'state_in_0_c' is (batch, 8) in the model but (batch, 9) in the manifest" in line


def test_a_sample_width_the_model_does_not_take_is_refused_at_load(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")

    def two_features(manifest: dict) -> None:
        manifest["data"]["features"].append("value_copy")
        manifest["data"]["scaler"]["columns"]["value_copy"] = manifest["data"]["scaler"]["columns"]["value"]
        manifest["drift"] = None

    edit_manifest(bundle, two_features)
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    line = one_line_error(capsys, ["run", str(bundle), "--source", f"csv:{rows}"])
    assert "step.onnx: input 'x' is (batch, 1) in the model but (batch, 2) in the manifest" in line


def test_a_state_the_numpy_cells_do_not_have_is_refused(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_manifest(bundle, lambda m: m["step_model"]["states"].pop())
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    line = one_line_error(capsys, ["run", str(bundle), "--source", f"csv:{rows}", "--backend", "numpy"])
    assert "step.weights.npz: the manifest lists 1 states, a 1-layer lstm has 2" in line


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda m: m["data"]["scaler"]["columns"]["value"].update(std="8.4"),
            'data.scaler.columns.value.std must be a number, not "8.4"',
        ),
        (lambda m: m["model"].update(layers="8"), "model.layers must be a list, not str"),
        (lambda m: m["model"].update(window="16"), 'model.window must be a whole number of at least 1, not "16"'),
        (lambda m: m["data"].update(features="value"), 'data.features must be a list of strings, not "value"'),
        (lambda m: m.update(artifacts={"step.onnx": {}}), "artifacts must be a list, not dict"),
        (lambda m: m["artifacts"].__setitem__(0, ["step.onnx"]), "artifacts[0] must be an object, not list"),
        (lambda m: m.update(golden=["golden.npz"]), "golden must be an object, not list"),
        (lambda m: m["step_model"]["states"][0].update(size="8"), "step_model.states[0].size must be a whole number"),
        (lambda m: m["files"]["golden.npz"].update(bytes=[1]), "files.golden.npz.bytes must be a whole number"),
        (lambda m: m["anomaly"].update(value=[]), "anomaly.value must be an object, not list"),
        (lambda m: m["data"].update(relative_to_last="yes"), 'data.relative_to_last must be true or false, not "yes"'),
        (lambda m: m["model"].pop("cell"), "missing field 'model.cell'"),
        (lambda m: m["data"].update(targets=["value", "value"]), "data.targets names 'value' twice"),
    ],
    ids=[
        "std-string",
        "layers-string",
        "window-string",
        "features-string",
        "artifacts-object",
        "artifact-list",
        "golden-list",
        "state-size-string",
        "file-bytes-list",
        "anomaly-list",
        "flag-string",
        "missing-nested",
        "target-twice",
    ],
)
def test_manifest_type_errors_name_the_field(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, edit, expected: str
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_manifest(bundle, edit)
    assert f"manifest.json: {expected}" in one_line_error(capsys, ["parity", str(bundle)])


@pytest.mark.parametrize("command", ["parity", "activate"])
def test_a_bundle_without_artifacts_is_refused(tiny_bundle: TrainedBundle, tmp_path: Path, capsys, command) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_manifest(bundle, lambda m: m.update(artifacts=[]))
    store = tmp_path / "store"
    argv = ["parity", str(bundle)] if command == "parity" else ["device", "activate", str(bundle), "--root", str(store)]
    line = one_line_error(capsys, argv)
    assert "manifest.json: artifacts is empty: the bundle has no model to run or verify" in line
    if command == "activate":
        assert not (store / "current").exists()


@pytest.mark.parametrize("action", ["status", "check", "rollback", "confirm"])
def test_device_actions_refuse_a_store_that_does_not_exist(tmp_path: Path, capsys, action: str) -> None:
    root = tmp_path / "bundels"  # a typo: nothing was ever activated there
    line = one_line_error(capsys, ["device", action, "--root", str(root)])
    assert f"--root {root}: no bundle store there (not a directory;" in line
    assert not root.exists()


def test_device_activate_still_creates_its_store(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    root = tmp_path / "device" / "bundles"
    assert main(["device", "activate", str(tiny_bundle.bundle_dir), "--root", str(root)]) == 0
    assert (root / "current" / "manifest.json").is_file()
    assert main(["device", "status", "--root", str(root)]) == 0


@pytest.mark.parametrize("name", ["../step.onnx", "sub/step.onnx", "/tmp/step.onnx", ".."])
def test_a_file_name_outside_the_bundle_is_refused(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, name: str
) -> None:
    """The manifest names files inside the bundle only: `../x` would have load_bundle hash (and a runtime load)
    a file elsewhere on the device."""
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    (tmp_path / "step.onnx").write_bytes((bundle / "step.onnx").read_bytes())

    def point_outside(manifest: dict) -> None:
        for artifact in manifest["artifacts"]:
            if artifact["file"] == "step.onnx":
                artifact["file"] = name
        manifest["files"][name] = manifest["files"].pop("step.onnx")

    edit_manifest(bundle, point_outside)
    line = one_line_error(capsys, ["parity", str(bundle)])
    assert f"file name {name!r} is not a plain name inside the bundle directory" in line


def test_a_parity_report_that_checked_nothing_does_not_pass(tiny_bundle: TrainedBundle) -> None:
    """A tflite-only bundle on a device without LiteRT skips every artifact: the gate must not say it passed."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.parity import ArtifactParity, ParityReport

    bundle = load_bundle(tiny_bundle.bundle_dir)
    skipped = tuple(
        ArtifactParity(a, "litert", "elementwise", "skipped", note="LiteRT is not installed")
        for a in bundle.manifest.artifacts
    )
    report = ParityReport(bundle.digest, skipped)
    assert not report.passed
    assert report.summary().startswith("parity FAILED: nothing was checked, every artifact was skipped (")
    assert report.summary().count("LiteRT is not installed") == len(skipped) > 0
    checked = ArtifactParity(skipped[0].artifact, "numpy", "elementwise", "pass")
    one_pass = ParityReport(bundle.digest, (*skipped, checked))
    assert one_pass.passed and one_pass.summary().startswith("parity passed: 1 artifact/runtime pairs")


@pytest.mark.parametrize(
    ("backend", "model"), [("onnxruntime", "step.onnx"), ("litert", "step.tflite"), ("numpy", "step.weights.npz")]
)
@pytest.mark.parametrize("horizon", [1, 3])
def test_an_output_width_the_model_does_not_give_is_refused_at_load(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, backend: str, model: str, horizon: int
) -> None:
    """The tiny model forecasts 2 steps of 1 target: a manifest saying another horizon used to crash the run at
    the first forecast (3) or publish misread forecasts (1)."""
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_manifest(bundle, lambda m: m["model"].update(horizon=horizon))
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    line = one_line_error(capsys, ["run", str(bundle), "--source", f"csv:{rows}", "--backend", backend])
    assert (
        f"{model}: output 'forecast' is (batch, 2) in the model but (batch, {horizon}) in the manifest "
        f"(model.horizon {horizon} x 1 data.targets)"
    ) in line
    line = one_line_error(capsys, ["parity", str(bundle)])
    assert (
        f"golden array 'forecast' has shape (2, 32, 2) float32, the manifest implies float (2, 32, {horizon})" in line
    )


@pytest.mark.parametrize(("classes", "width"), [(("fault", "normal"), 1), (("a", "b", "c"), 3)])
def test_the_exporters_calibration_manifest_gives_a_classifiers_output_width(
    tiny_bundle: TrainedBundle, classes: tuple[str, ...], width: int
) -> None:
    """int8-static calibration runs the numpy reference on a stub manifest: without the task and classes it
    would say a classifier outputs 0 values, and the output-width check would refuse the exporter's own model."""
    from dataclasses import replace
    from types import SimpleNamespace

    from edge_runtime.bundle import load_bundle, output_width
    from export.bundle_export import _manifest_stub
    from trainer.run_dir import RunConfig

    config = replace(RunConfig.load(tiny_bundle.run_dir), task="classify", classes=classes, targets=())
    stub = _manifest_stub(config, SimpleNamespace(states=load_bundle(tiny_bundle.bundle_dir).manifest.states))
    assert (stub.task, stub.classes, output_width(stub)) == ("classify", classes, width)


def _target_not_an_input(relative: bool):
    """The tiny bundle forecasting a column it does not read ('other'), relative to its last value or not."""

    def edit(manifest: dict) -> None:
        data = manifest["data"]
        data.update(targets=["other"], relative_to_last=relative)
        data["scaler"]["columns"]["other"] = {"mean": 20.0, "std": 4.0}
        manifest["anomaly"] = {"other": manifest["anomaly"]["value"]}
        manifest["drift"] = None

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda m: m["data"]["scaler"].update(columns={}),
            "data.scaler.columns has no entry for the feature 'value': it cannot be scaled",
        ),
        (
            lambda m: (_target_not_an_input(False)(m), m["data"]["scaler"]["columns"].pop("other")),
            "data.scaler.columns has no entry for the target 'other': it cannot be scaled",
        ),
        (_target_not_an_input(False), None),  # the exporter writes such bundles (a target that is not an input)
        (
            lambda m: m["data"].update(differenced=["zzz"]),
            "data.differenced names 'zzz', which is not in data.features (value)",
        ),
        (
            _target_not_an_input(True),
            "data.relative_to_last is true but the target 'other' is not in data.features",
        ),
        (
            lambda m: m["model"].update(warmup_steps=120),
            "golden.task_steps 120 must exceed model.warmup_steps 120 + model.horizon 2",
        ),
        (
            lambda m: m["model"].update(warmup_steps=118),
            "golden.task_steps 120 must exceed model.warmup_steps 118 + model.horizon 2",
        ),
        (
            lambda m: m["anomaly"].update(zzz=m["anomaly"]["value"]),
            "anomaly has parameters for 'zzz', which is not in data.targets (value)",
        ),
        (
            lambda m: m["model"].update(task="regress"),
            "model.task 'regress' is not a task rnnedge runs (forecast, classify)",
        ),
    ],
    ids=[
        "no-scaler-column",
        "no-scaler-column-target",
        "target-not-input-absolute",
        "differenced-not-feature",
        "relative-target-not-input",
        "warmup-covers-task",
        "warmup-leaves-no-known-future",
        "anomaly-not-target",
        "unknown-task",
    ],
)
def test_manifest_fields_that_contradict_each_other_are_refused_at_load(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, edit, expected: str | None
) -> None:
    """Each field is well-typed, but together they crashed the runtime (KeyError, tuple.index) or the parity
    gate (a reshape of no rows): refused when the manifest is read, by every command, nothing written."""
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    edit_manifest(bundle, edit)
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    run = ["run", str(bundle), "--source", f"csv:{rows}", "--backend", "numpy"]
    if expected is None:
        assert main(run) == 0
        messages = [json.loads(line)["message"] for line in capsys.readouterr().out.strip().splitlines()]
        assert len(messages) == 30 - 4 and set(messages[0]["forecast"]) == {"other"}
        return
    before = sorted(p.name for p in bundle.iterdir())
    for argv in (["parity", str(bundle)], run):
        assert f"manifest.json: {expected}" in one_line_error(capsys, argv)
    assert sorted(p.name for p in bundle.iterdir()) == before
