"""`rnnedge export`: run directory -> sealed (optionally signed) bundle, then the parity gate."""

from __future__ import annotations

import platform
import shutil
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge_runtime.anomaly import AnomalyParams
from edge_runtime.bundle import (
    Artifact,
    Bundle,
    GoldenSpec,
    Manifest,
    Unsupported,
    load_bundle,
    write_bundle,
)
from edge_runtime.drift import DriftReference
from edge_runtime.errors import RnnedgeError
from edge_runtime.numpy_backend import NumpyStepBackend
from edge_runtime.parity import ParityReport, check_bundle
from edge_runtime.scaling import Scaler
from edge_runtime.signing import load_private_key, sign_manifest
from export.calibration import visited_feeds
from export.golden import TASK_STEPS, future_values, golden_inputs, record_golden
from export.isolated_convert import convert_window_tflite_isolated
from export.numpy_weights import save_numpy_weights
from export.onnx_compact import compact_names
from export.onnx_convert import convert_step_model
from export.options import ExportOptions, check_output
from export.quantize_onnx import quantize_onnx_dynamic, quantize_onnx_static
from export.step_model import STEP_INPUT, STEP_OUTPUT, StepModel, build_step_model
from export.tflite_convert import quantized_anything, representative_feeds, to_tflite
from export.window_model import build_window_model, window_to_onnx
from trainer.model import HEAD_NAME
from trainer.run_dir import MODEL_FILE, RunConfig, load_splits

GOLDEN_FILE = "golden.npz"
PARITY_FILE = "parity.json"
WEIGHTS_FILE = "step.weights.npz"
QUANTIZATION = {
    ("onnx", "int8"): "ort-dynamic (int8 weights, activations quantized per call)",
    ("onnx", "int8-static"): "ort-static-qdq (int8 weights and activations, calibrated on visited states)",
    ("tflite", "int8"): "tflite-dynamic-range (int8 weights, float activations)",
    ("tflite", "int8-static"): "tflite-full-int8 (int8 weights and activations, float32 inputs and outputs)",
}
TFLITE_CALIBRATION_SAMPLES = 2000
WINDOW_GOLDEN = 64


def artifact_name(kind: str, format: str, precision: str) -> str:
    suffix = {"onnx": "onnx", "tflite": "tflite"}[format]
    return f"{kind}.{suffix}" if precision == "float32" else f"{kind}.{precision}.{suffix}"


def _versions() -> dict[str, str]:
    found = {}
    for name in ("rnnedge", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        try:
            found[name] = version(name)
        except Exception:  # a package installed without metadata is not worth failing an export for
            continue
    found["python"] = platform.python_version()
    return found


def _swap_in(staging: Path, out: Path) -> None:
    """Put the finished bundle at `out`, replacing an earlier one only now that the new one is complete."""
    if out.exists():
        previous = out.parent / f".{out.name}.previous"
        shutil.rmtree(previous, ignore_errors=True)
        out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous)
    else:
        staging.rename(out)


def _targets_raw(config: RunConfig, splits: dict[str, np.ndarray], split: str) -> np.ndarray:
    """A split's target values in sensor units (recorded by the trainer, or recovered from the inputs)."""
    if f"{split}_targets" in splits:
        return splits[f"{split}_targets"].astype(np.float64)
    if not all(t in config.features for t in config.targets):
        raise RnnedgeError(f"the run directory lacks {split}_targets in splits.npz: retrain with this version")
    inputs = splits[split]
    columns = [config.features.index(t) for t in config.targets]
    mean = np.array([config.scaler[t].mean for t in config.targets])
    std = np.array([config.scaler[t].std for t in config.targets])
    return inputs[:, columns].astype(np.float64) * std + mean


def _window_golden(
    sequence_model: keras.Model, inputs: np.ndarray, levels: np.ndarray, targets: np.ndarray, config: RunConfig
):
    starts = np.linspace(0, len(inputs) - config.window, min(WINDOW_GOLDEN, len(inputs) - config.window + 1))
    starts = np.unique(starts.astype(int))
    windows = np.stack([inputs[s : s + config.window] for s in starts]).astype(np.float32)
    forecast = sequence_model.predict(windows, verbose=0)[:, -1, :].astype(np.float32)
    future = future_values(targets, config.horizon)[starts + config.window - 1]
    last_levels = levels[starts + config.window - 1].astype(np.float32)
    return {
        "window_inputs": windows,
        "window_forecast": forecast,
        "window_future": future,
        "window_levels": last_levels,
    }


def export_bundle(run_dir: Path, out: Path, options: ExportOptions | None = None) -> tuple[Bundle, ParityReport]:
    options = options or ExportOptions()
    options.validate()
    config = RunConfig.load(run_dir)
    options.check_task(config.task)
    try:
        sequence_model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise RnnedgeError(f"{run_dir / MODEL_FILE}: Keras cannot load the model ({exc})") from None
    private_key = load_private_key(options.signing_key) if options.signing_key else None
    step = build_step_model(sequence_model, len(config.layers))
    check_output(out)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_files(run_dir, staging, options, config, sequence_model, step, private_key)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the earlier bundle in `out`, if any, is untouched
        raise
    bundle = load_bundle(out)
    report = check_bundle(bundle)
    report.write_json(out / PARITY_FILE)
    return bundle, report


def _write_files(
    run_dir: Path,
    out: Path,
    options: ExportOptions,
    config: RunConfig,
    sequence_model: keras.Model,
    step: StepModel,
    private_key: Any,
) -> None:
    """Every file of the bundle, manifest and signature included, into the (empty) directory `out`."""
    n_features = len(config.features)
    splits = load_splits(run_dir)
    artifacts: list[Artifact] = []
    unsupported: list[Unsupported] = []
    operators: list[str] = []

    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        weights_path = (out if "numpy" in options.formats else scratch_dir) / WEIGHTS_FILE
        save_numpy_weights(sequence_model, len(config.layers), weights_path)
        if "numpy" in options.formats:
            artifacts.append(Artifact(WEIGHTS_FILE, "step", "numpy", "float32"))

        float_onnx = scratch_dir / "step.onnx"
        operators = convert_step_model(step, n_features, float_onnx, options.opset)
        compact_names(float_onnx)
        needs_calibration = "int8-static" in options.precisions
        feeds = {}
        if needs_calibration:
            reference = NumpyStepBackend(weights_path, _manifest_stub(config, step))
            feeds = visited_feeds(reference, [s.input for s in step.states], splits["train"])

        if "onnx" in options.formats:
            for precision in options.precisions:
                name = artifact_name("step", "onnx", precision)
                if precision == "float32":
                    (out / name).write_bytes(float_onnx.read_bytes())
                elif precision == "int8":
                    quantize_onnx_dynamic(float_onnx, out / name)
                    compact_names(out / name)
                else:
                    quantize_onnx_static(float_onnx, out / name, feeds)
                    compact_names(out / name)
                artifacts.append(
                    Artifact(name, "step", "onnx", precision, QUANTIZATION.get(("onnx", precision), "none"))
                )

        if "tflite" in options.formats:
            float_flatbuffer = to_tflite(step.model, "float32")
            for precision in options.precisions:
                name = artifact_name("step", "tflite", precision)
                representative = representative_feeds(feeds, TFLITE_CALIBRATION_SAMPLES) if feeds else None
                flatbuffer = (
                    to_tflite(step.model, precision, representative) if precision != "float32" else float_flatbuffer
                )
                if precision == "int8" and not quantized_anything(float_flatbuffer, flatbuffer):
                    reason = "TFLite quantizes no weight tensor under 1,024 elements: this model has none larger"
                    unsupported.append(Unsupported("step", "tflite", precision, reason))
                    continue
                (out / name).write_bytes(flatbuffer)
                artifacts.append(
                    Artifact(name, "step", "tflite", precision, QUANTIZATION.get(("tflite", precision), "none"))
                )

        val_inputs = splits["val"]
        classify = config.task == "classify"
        val_targets = None if classify else _targets_raw(config, splits, "val")
        extra_golden = {}
        if options.window_model:
            window_artifacts, window_unsupported = _export_window_models(
                run_dir, out, scratch_dir, sequence_model, config, splits["train"], options
            )
            artifacts += window_artifacts
            unsupported += window_unsupported
            extra_golden = _window_golden(
                sequence_model, val_inputs, _levels(config, splits, "val"), val_targets, config
            )

    task_rows = min(TASK_STEPS + config.horizon, len(val_inputs))  # the last H rows have no future to judge
    inputs = golden_inputs(val_inputs, config.window)
    golden = record_golden(
        step,
        sequence_model,
        inputs,
        val_inputs[:task_rows],
        None if classify else val_targets[:task_rows],
        config.horizon,
    )
    golden["task_levels"] = _levels(config, splits, "val")[None, :task_rows].astype(np.float32)
    np.savez_compressed(out / GOLDEN_FILE, **golden, **extra_golden)

    val_levels = _levels(config, splits, "val")
    if classify:  # no forecast, no residual: the drift reference covers the inputs only
        residuals, train_targets = np.zeros((0, 0)), np.zeros((0, 0))
    else:
        residuals = _validation_residuals(sequence_model, config, val_inputs, val_levels, val_targets)
        train_targets = _targets_raw(config, splits, "train")
    manifest = Manifest(
        task=config.task,
        classes=config.classes,
        head_activation=sequence_model.get_layer(HEAD_NAME).activation.__name__,
        anomaly={
            target: AnomalyParams.measure(residuals[:, j], train_targets[:, j])
            for j, target in enumerate(config.targets)
        },
        drift=DriftReference.measure(
            _features_raw(config, _levels(config, splits, "train")), config.features, residuals, config.targets
        ),
        cell=config.cell,
        layers=config.layers,
        window=config.window,
        horizon=config.horizon,
        warmup_steps=config.warmup_steps,
        features=config.features,
        targets=config.targets,
        time_column=config.time_column,
        relative_to_last=config.relative_to_last,
        scaler=config.scaler,
        scaler_kind=config.scaler_kind,
        differenced=config.differenced,
        step_input=STEP_INPUT,
        step_output=STEP_OUTPUT,
        states=step.states,
        artifacts=tuple(artifacts),
        unsupported=tuple(unsupported),
        golden=GoldenSpec(
            GOLDEN_FILE,
            int(inputs.shape[0]),
            int(inputs.shape[1]),
            task_rows,
            len(extra_golden.get("window_inputs", ())),
        ),
        provenance={
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source_run": str(run_dir.resolve()),
            "source_csv": config.source,
            "parameters": int(sequence_model.count_params()),
            "onnx_opset": options.opset,
            "onnx_operators": operators,
            "versions": _versions(),
        },
    )
    write_bundle(out, manifest)
    if private_key is not None:
        sign_manifest(out, private_key)


def _validation_residuals(
    sequence_model: keras.Model,
    config: RunConfig,
    val_inputs: np.ndarray,
    val_levels: np.ndarray,
    val_targets: np.ndarray,
) -> np.ndarray:
    """(rows, T) one-step residuals, sensor units, of the model streaming the validation split after warm-up,
    as on a device: the prior of the anomaly score and the reference of the residual drift."""
    scaler = Scaler(config.features, config.targets, config.scaler, config.relative_to_last, config.horizon)
    output = sequence_model.predict(val_inputs[None].astype(np.float32), verbose=0)[0]
    next_forecast = scaler.forecast_units(output, val_levels)[:-1, 0, :]
    return (val_targets[1:] - next_forecast)[config.warmup_steps :]


def _levels(config: RunConfig, splits: dict[str, np.ndarray], split: str) -> np.ndarray:
    """A split's scaled sample values (levels): the model inputs, unless some columns are differenced."""
    return splits.get(f"{split}_scaled", splits[split])


def _features_raw(config: RunConfig, scaled: np.ndarray) -> np.ndarray:
    mean = np.array([config.scaler[f].mean for f in config.features])
    std = np.array([config.scaler[f].std for f in config.features])
    return scaled.astype(np.float64) * std + mean


def _manifest_stub(config: RunConfig, step) -> Manifest:
    """The few manifest facts the numpy reference needs before the real manifest exists (the task and classes
    too: they make the output width it checks the weights against)."""
    return Manifest(
        config.cell,
        config.layers,
        config.window,
        config.horizon,
        config.warmup_steps,
        config.features,
        config.targets,
        config.time_column,
        config.relative_to_last,
        config.scaler,
        STEP_INPUT,
        STEP_OUTPUT,
        step.states,
        (),
        GoldenSpec("", 0, 0, 0),
        {},
        task=config.task,
        classes=config.classes,
    )


def _export_window_models(
    run_dir: Path,
    out: Path,
    scratch: Path,
    sequence_model: keras.Model,
    config: RunConfig,
    train_inputs: np.ndarray,
    options: ExportOptions,
) -> tuple[list[Artifact], list[Unsupported]]:
    model = build_window_model(sequence_model, config.window, len(config.features))
    artifacts: list[Artifact] = []
    unsupported: list[Unsupported] = []
    for format in ("onnx", "tflite"):
        if format not in options.formats:
            continue
        for precision in options.precisions:
            name = artifact_name("window", format, precision)
            reason = None
            if precision == "float32":
                data = window_to_onnx(model, options.opset) if format == "onnx" else to_tflite(model, "float32")
                (out / name).write_bytes(data)
            elif format == "onnx":
                reason = _quantize_window_onnx(model, config, out / name, options.opset, precision)
            else:
                calibration = scratch / "window_calibration.npz"
                starts = np.linspace(0, len(train_inputs) - config.window, 200).astype(int)
                np.savez(calibration, windows=np.stack([train_inputs[s : s + config.window] for s in starts]))
                reason = convert_window_tflite_isolated(run_dir, calibration, precision, out / name)
                dynamic_range = precision == "int8"
                if (
                    reason is None
                    and dynamic_range
                    and not quantized_anything(to_tflite(model, "float32"), (out / name).read_bytes())
                ):
                    (out / name).unlink()
                    reason = "TFLite quantizes no weight tensor under 1,024 elements: this model has none larger"
            if reason:
                unsupported.append(Unsupported("window", format, precision, reason))
            else:
                artifacts.append(
                    Artifact(name, "window", format, precision, QUANTIZATION.get((format, precision), "none"))
                )
    return artifacts, unsupported


def _quantize_window_onnx(model: keras.Model, config: RunConfig, path: Path, opset: int, precision: str) -> str | None:
    """ORT quantizes the native ONNX LSTM op (dynamic mode) only: GRU and Loop bodies stay float."""
    if precision != "int8" or config.cell != "lstm":
        return (
            "onnxruntime quantizes only the native LSTM op of an LSTM window model, in dynamic mode (int8); "
            "GRU and SimpleRNN window models become a Loop it does not quantize"
        )
    float_path = path.with_suffix(".float.tmp")
    float_path.write_bytes(window_to_onnx(model, opset))
    try:
        quantize_onnx_dynamic(float_path, path, ("LSTM", "MatMul"))
    finally:
        float_path.unlink(missing_ok=True)
    return None
