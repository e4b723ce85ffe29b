"""One sensor stream: samples go in one at a time, the recurrent state is carried between calls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.backends import StepBackend, open_step_backend
from edge_runtime.bundle import Bundle
from edge_runtime.scaling import Scaler


class StreamForecaster:
    """O(1) work per sample: one step-model call, whatever the window the model was trained on.

    The model was trained to forecast from its `warmup_steps`-th sample on (earlier outputs were not in the
    loss), so `update` returns None for the first `warmup_steps` samples after a start or a reset.
    """

    def __init__(self, backend: StepBackend, scaler: Scaler, warmup_steps: int) -> None:
        self.backend = backend
        self.scaler = scaler
        self.warmup_steps = warmup_steps
        self.reset()

    @classmethod
    def from_bundle(cls, bundle: Bundle, format: str = "onnx", precision: str = "float32") -> StreamForecaster:
        manifest = bundle.manifest
        backend = open_step_backend(bundle, manifest.artifact(format, precision))
        return cls(backend, Scaler.from_manifest(manifest), manifest.warmup_steps)

    def reset(self) -> None:
        self.states = self.backend.zero_state(1)
        self.samples_seen = 0

    @property
    def warm(self) -> bool:
        return self.samples_seen >= self.warmup_steps

    def update(self, values: Sequence[float]) -> np.ndarray | None:
        """Feed one sample (raw feature values); return the (horizon, targets) forecast once warm."""
        scaled = self.scaler.scale_inputs(np.asarray(values, dtype=np.float64)[None, :])
        output, self.states = self.backend.step(scaled, self.states)
        self.samples_seen += 1
        if self.samples_seen <= self.warmup_steps:
            return None
        return self.scaler.forecast_units(output, scaled)[0]
