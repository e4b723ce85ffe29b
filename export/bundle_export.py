"""`rnnedge export`: run directory -> sealed bundle, then the parity gate on what was written."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import keras
import numpy as np

from edge_runtime.bundle import Artifact, Bundle, GoldenSpec, Manifest, write_bundle
from edge_runtime.errors import RnnedgeError
from export.golden import golden_inputs, record_golden
from export.onnx_convert import DEFAULT_OPSET, convert_step_model
from export.step_model import STEP_INPUT, STEP_OUTPUT, build_step_model
from trainer.run_dir import MODEL_FILE, RunConfig, load_splits

STEP_ONNX = "step.onnx"
GOLDEN_FILE = "golden.npz"


def _versions() -> dict[str, str]:
    packages = ("rnnedge", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy")
    found = {}
    for name in packages:
        try:
            found[name] = version(name)
        except Exception:  # a package installed without metadata is not worth failing an export for
            continue
    found["python"] = platform.python_version()
    return found


def export_bundle(run_dir: Path, out: Path, opset: int = DEFAULT_OPSET) -> Bundle:
    config = RunConfig.load(run_dir)
    try:
        sequence_model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise RnnedgeError(f"{run_dir / MODEL_FILE}: Keras cannot load the model ({exc})") from None
    step = build_step_model(sequence_model, len(config.layers))
    out.mkdir(parents=True, exist_ok=True)
    operators = convert_step_model(step, len(config.features), out / STEP_ONNX, opset)

    inputs = golden_inputs(load_splits(run_dir)["val"], config.window)
    golden = record_golden(step, sequence_model, inputs)
    np.savez_compressed(out / GOLDEN_FILE, **golden)

    manifest = Manifest(
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
        step_input=STEP_INPUT,
        step_output=STEP_OUTPUT,
        states=step.states,
        artifacts=(Artifact(STEP_ONNX, "onnx", "float32", "step"),),
        golden=GoldenSpec(GOLDEN_FILE, int(inputs.shape[0]), int(inputs.shape[1])),
        provenance={
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source_run": str(run_dir.resolve()),
            "source_csv": config.source,
            "parameters": int(sequence_model.count_params()),
            "onnx_opset": opset,
            "onnx_operators": operators,
            "versions": _versions(),
        },
    )
    return write_bundle(out, manifest)
