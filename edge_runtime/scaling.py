"""Turning raw sensor values into model inputs and model outputs back into forecasts in sensor units.

The trainer uses the same functions to build its targets, so the device and the trainer agree by construction.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.bundle import ColumnScale, Manifest


class Scaler:
    """z-score for inputs; forecasts are optionally offsets from the last observed target (`relative_to_last`)."""

    def __init__(
        self,
        features: tuple[str, ...],
        targets: tuple[str, ...],
        scales: dict[str, ColumnScale],
        relative_to_last: bool,
        horizon: int,
        differenced: tuple[str, ...] = (),
    ) -> None:
        self.feature_mean = np.array([scales[c].mean for c in features], dtype=np.float64)
        self.feature_std = np.array([scales[c].std for c in features], dtype=np.float64)
        self.target_mean = np.array([scales[c].mean for c in targets], dtype=np.float64)
        self.target_std = np.array([scales[c].std for c in targets], dtype=np.float64)
        self.relative_to_last = relative_to_last
        self.horizon = horizon
        self.target_columns = [features.index(c) for c in targets] if relative_to_last else []
        self.diff_columns = [features.index(c) for c in differenced]

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Scaler:
        return cls(
            manifest.features,
            manifest.targets,
            manifest.scaler,
            manifest.relative_to_last,
            manifest.horizon,
            manifest.differenced,
        )

    def scale_inputs(self, values: np.ndarray) -> np.ndarray:
        """(..., F) raw values -> (..., F) float32 model inputs."""
        return ((values - self.feature_mean) / self.feature_std).astype(np.float32)

    def model_targets(self, scaled_inputs: np.ndarray, future_targets: np.ndarray) -> np.ndarray:
        """Training targets for (..., H, T) raw future target values seen after (..., F) scaled inputs."""
        scaled = (future_targets - self.target_mean) / self.target_std
        if self.relative_to_last:
            scaled = scaled - scaled_inputs[..., None, self.target_columns]
        return scaled.reshape(*scaled.shape[:-2], -1).astype(np.float32)

    def forecast_units(self, model_output: np.ndarray, scaled_inputs: np.ndarray) -> np.ndarray:
        """(..., H*T) model output after (..., F) scaled inputs -> (..., H, T) forecast in sensor units."""
        out = model_output.astype(np.float64).reshape(*model_output.shape[:-1], self.horizon, -1)
        if self.relative_to_last:
            out = out + scaled_inputs[..., None, self.target_columns].astype(np.float64)
        return out * self.target_std + self.target_mean


def model_inputs(scaled: np.ndarray, diff_columns: list[int]) -> np.ndarray:
    """Scaled samples (rows, F) of one stream -> what the model reads: differenced columns become the change
    since the previous sample. The first row has no previous sample: its change is 0, as on a device after a
    reset. The trainer builds its windows with this, and the runtime streams the same rule one sample at a time."""
    if not diff_columns:
        return scaled
    out = scaled.copy()
    out[1:, diff_columns] = scaled[1:, diff_columns] - scaled[:-1, diff_columns]
    out[:1, diff_columns] = 0.0
    return out
