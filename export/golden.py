"""Golden vectors: real held-out inputs and what Keras computed for them, kept in the bundle.

Two short sequences carry every output at every step (states too) for the element-wise float32 check; one
longer sequence carries the forecasts and the actual future values for the task-level int8 check.
"""

from __future__ import annotations

import keras
import numpy as np

from edge_runtime.errors import RnnedgeError
from export.step_model import STEP_INPUT, STEP_OUTPUT, StepModel

SEQUENCES = 2
TASK_STEPS = 2048


def golden_inputs(scaled_inputs: np.ndarray, window: int) -> np.ndarray:
    """Two sequences of held-out (validation) inputs, each twice the training window where the data allows."""
    steps = min(2 * window, len(scaled_inputs) // SEQUENCES)
    starts = [0, len(scaled_inputs) - steps]
    return np.stack([scaled_inputs[s : s + steps] for s in starts]).astype(np.float32)


def future_values(targets: np.ndarray, horizon: int) -> np.ndarray:
    """(N, H, T): the target values of rows t+1 .. t+H after each row t, NaN past the end."""
    rows = len(targets)
    padded = np.concatenate([targets, np.full((horizon, targets.shape[1]), np.nan)])
    return np.stack([padded[k + 1 : k + 1 + rows] for k in range(horizon)], axis=1)


def record_golden(
    step: StepModel,
    sequence_model: keras.Model,
    inputs: np.ndarray,
    task_inputs: np.ndarray,
    task_targets: np.ndarray | None,
    horizon: int,
) -> dict[str, np.ndarray]:
    """Stream `inputs` (S, T, F) through the Keras step model from zero state and keep every output."""
    sequences, steps, _ = inputs.shape
    states = {s.input: np.zeros((sequences, s.size), np.float32) for s in step.states}
    recorded: dict[str, list[np.ndarray]] = {name: [] for name in step.output_names}
    for t in range(steps):
        result = step.model({STEP_INPUT: inputs[:, t], **states}, training=False)
        result = {name: np.asarray(value) for name, value in result.items()}
        for name in step.output_names:
            recorded[name].append(result[name])
        states = {s.input: result[s.output] for s in step.states}
    golden = {name: np.stack(values, axis=1).astype(np.float32) for name, values in recorded.items()}
    # The step model shares the trained layers' variables; it must reproduce the trained model exactly.
    window_output = np.asarray(sequence_model(inputs, training=False))
    drift = float(np.abs(window_output - golden[STEP_OUTPUT]).max())
    if drift > 1e-5:
        raise RnnedgeError(f"the streaming step model differs from the trained model by {drift:.3g}")
    task = task_inputs[None].astype(np.float32)
    recorded_task = {
        "task_inputs": task,
        "task_forecast": sequence_model.predict(task, verbose=0).astype(np.float32),
    }
    if task_targets is not None:  # forecasting: what really followed each row (classifiers have no future)
        recorded_task["task_future"] = future_values(task_targets, horizon)[None]
    return {"inputs": inputs, **golden, **recorded_task}
