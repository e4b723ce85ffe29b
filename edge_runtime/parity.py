"""The parity gate: stream the bundle's golden inputs through an artifact and compare with the Keras outputs.

It needs only the base install: the reference outputs travel in the bundle, so a device can run it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.onnx_backend import OnnxStepBackend

FLOAT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class OutputParity:
    output: str
    max_abs_error: float
    worst_sequence: int
    worst_step: int
    first_failing_step: int | None  # first step (any sequence) whose error exceeds the tolerance


@dataclass(frozen=True)
class ParityReport:
    artifact: str
    runtime: str
    tolerance: float
    outputs: tuple[OutputParity, ...]

    @property
    def passed(self) -> bool:
        return all(o.max_abs_error <= self.tolerance for o in self.outputs)

    @property
    def worst(self) -> OutputParity:
        return max(self.outputs, key=lambda o: o.max_abs_error)

    def summary(self) -> str:
        worst = self.worst
        verdict = "passed" if self.passed else "FAILED"
        text = (
            f"parity {verdict}: {self.artifact} on {self.runtime}: largest error {worst.max_abs_error:.3g} "
            f"on output {worst.output} at sequence {worst.worst_sequence} step {worst.worst_step} "
            f"(tolerance {self.tolerance:g})"
        )
        if not self.passed:
            failing = [o for o in self.outputs if o.first_failing_step is not None]
            first = min(failing, key=lambda o: o.first_failing_step)
            text += f"; first exceeded at step {first.first_failing_step} on output {first.output}"
        return text

    def markdown(self) -> str:
        lines = [
            "| artifact | runtime | output | max abs error | at (sequence, step) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for o in self.outputs:
            verdict = "pass" if o.max_abs_error <= self.tolerance else f"FAIL from step {o.first_failing_step}"
            lines.append(
                f"| {self.artifact} | {self.runtime} | {o.output} | {o.max_abs_error:.3g} | "
                f"({o.worst_sequence}, {o.worst_step}) | {verdict} |"
            )
        return "\n".join(lines)


def stream_golden(backend: OnnxStepBackend, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run all golden sequences as one batch, step by step from zero state; outputs as (S, T, width)."""
    sequences, steps, _ = inputs.shape
    states = backend.zero_state(sequences)
    recorded: dict[str, list[np.ndarray]] = {name: [] for name in backend.output_names}
    for t in range(steps):
        forecast, states = backend.step(inputs[:, t, :], states)
        for name, value in zip(backend.output_names, [forecast, *states], strict=True):
            recorded[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in recorded.items()}


def compare(name: str, actual: np.ndarray, expected: np.ndarray, tolerance: float) -> OutputParity:
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max(axis=-1)  # (S, T)
    sequence, step = np.unravel_index(int(np.argmax(error)), error.shape)
    over = np.flatnonzero((error > tolerance).any(axis=0))
    return OutputParity(name, float(error.max()), int(sequence), int(step), int(over[0]) if over.size else None)


def check_float_parity(bundle: Bundle, tolerance: float = FLOAT_TOLERANCE) -> ParityReport:
    """Every output of the ONNX float32 step model, at every golden step, within `tolerance` of Keras."""
    artifact = bundle.manifest.artifact("onnx", "float32")
    backend = OnnxStepBackend(bundle.file(artifact.file), bundle.manifest)
    golden = bundle.golden()
    actual = stream_golden(backend, golden["inputs"])
    outputs = tuple(compare(name, actual[name], golden[name], tolerance) for name in backend.output_names)
    return ParityReport(f"{artifact.file} ({artifact.format}/{artifact.precision})", backend.name, tolerance, outputs)
