"""Choosing an inference backend for a bundle artifact. Every backend has the same small contract:

`output_names`, `zero_state(batch) -> states`, `step(x (B, F) float32, states) -> (forecast (B, H*T), states)`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge_runtime.bundle import Artifact, Bundle
from edge_runtime.errors import RnnedgeError

RUNTIME_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert", "numpy": "numpy"}


class StepBackend(Protocol):
    name: str
    output_names: list[str]

    def zero_state(self, batch: int) -> list[np.ndarray]: ...

    def step(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]: ...


def runtime_missing(format: str) -> str | None:
    """Why this machine cannot run the format, or None if it can."""
    if format == "tflite":
        from edge_runtime.litert_backend import litert_available

        if not litert_available():
            return "LiteRT is not installed (pip install ai-edge-litert)"
    return None


def open_step_backend(bundle: Bundle, artifact: Artifact, threads: int = 1) -> StepBackend:
    path = bundle.file(artifact.file)
    if artifact.kind != "step":
        raise RnnedgeError(f"{artifact.file} is a {artifact.kind} model, not a streaming step model")
    missing = runtime_missing(artifact.format)
    if missing:
        raise RnnedgeError(f"cannot run {artifact.file}: {missing}")
    if artifact.format == "onnx":
        from edge_runtime.onnx_backend import OnnxStepBackend

        return OnnxStepBackend(path, bundle.manifest, threads)
    if artifact.format == "tflite":
        from edge_runtime.litert_backend import LiteRtStepBackend

        return LiteRtStepBackend(path, bundle.manifest, threads)
    if artifact.format == "numpy":
        from edge_runtime.numpy_backend import NumpyStepBackend

        return NumpyStepBackend(path, bundle.manifest)
    raise RnnedgeError(f"unknown artifact format {artifact.format!r} (supported: onnx, tflite, numpy)")
