"""ONNX Runtime inference of a streaming step model: one sample (per stream) in, forecast and new state out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_runtime.bundle import BundleError, Manifest, check_widths


class OnnxStepBackend:
    """Runs the step model; states are passed explicitly so the caller owns them (one per stream)."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, manifest: Manifest, threads: int = 1) -> None:
        options = ort.SessionOptions()
        # One thread and no spinning: at these model sizes per-call overhead dominates and a spinning
        # thread pool doubles CPU per step (see docs/BENCHMARKS.md).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise BundleError(f"{model_path}: ONNX Runtime cannot load the model ({exc})") from None
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        wanted_in = {manifest.step_input} | {s.input for s in manifest.states}
        wanted_out = {manifest.step_output} | {s.output for s in manifest.states}
        if wanted_in != inputs or not wanted_out <= outputs:
            raise BundleError(
                f"{model_path}: model inputs/outputs {sorted(inputs)} -> {sorted(outputs)} do not match the "
                f"manifest {sorted(wanted_in)} -> {sorted(wanted_out)}"
            )
        check_widths(
            model_path,
            manifest,
            {i.name: _fixed(i.shape[-1]) if i.shape else None for i in self.session.get_inputs()},
            {o.name: _fixed(o.shape[-1]) if o.shape else None for o in self.session.get_outputs()},
        )
        self.input_name = manifest.step_input
        self.state_inputs = [s.input for s in manifest.states]
        self.state_sizes = [s.size for s in manifest.states]
        self.output_names = [manifest.step_output] + [s.output for s in manifest.states]

    def zero_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, size), dtype=np.float32) for size in self.state_sizes]

    def step(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """x: (B, F) float32 scaled inputs; returns the (B, H*T) model output and the new states."""
        feeds = {self.input_name: x}
        feeds.update(zip(self.state_inputs, states, strict=True))
        forecast, *new_states = self.session.run(self.output_names, feeds)
        return forecast, new_states


def _fixed(dimension: int | str | None) -> int | None:
    """A dimension ONNX fixes to a number, else None (a symbolic or unknown size)."""
    return dimension if isinstance(dimension, int) else None
