"""Calibration data for int8: the (sample, state) pairs the float model really visits while streaming.

Quantizing with zero states, or a short sample, clips the ranges the states reach in service (see
docs/BENCHMARKS.md); so the float ONNX step model streams the whole training split, and every step's feeds are kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edge_runtime.backends import StepBackend
from export.step_model import STEP_INPUT


def visited_feeds(backend: StepBackend, state_inputs: list[str], inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Stream (rows, F) scaled inputs from zero state; return every step's feeds, each stacked as (rows, width)."""
    states = backend.zero_state(1)
    recorded: dict[str, list[np.ndarray]] = {name: [] for name in [STEP_INPUT, *state_inputs]}
    for row in inputs.astype(np.float32):
        x = row[None, :]
        recorded[STEP_INPUT].append(x[0])
        for name, state in zip(state_inputs, states, strict=True):
            recorded[name].append(state[0])
        _, states = backend.step(x, states)
    return {name: np.stack(values) for name, values in recorded.items()}


def batches(feeds: dict[str, np.ndarray], size: int) -> Iterator[dict[str, np.ndarray]]:
    rows = len(next(iter(feeds.values())))
    for start in range(0, rows, size):
        yield {name: values[start : start + size] for name, values in feeds.items()}


class VisitedStatesReader:
    """onnxruntime's CalibrationDataReader protocol over the visited feeds, in batches."""

    def __init__(self, feeds: dict[str, np.ndarray], batch: int = 512) -> None:
        self._batches = batches(feeds, batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._batches
