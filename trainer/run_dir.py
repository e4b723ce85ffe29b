"""The run directory: what the trainer leaves for the exporter (model, data facts, splits, metrics)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_runtime.bundle import ColumnScale
from edge_runtime.errors import RnnedgeError

MODEL_FILE = "model.keras"
CONFIG_FILE = "run.json"
METRICS_FILE = "metrics.json"
SPLITS_FILE = "splits.npz"


@dataclass(frozen=True)
class RunConfig:
    source: str
    time_column: str | None
    features: tuple[str, ...]
    targets: tuple[str, ...]
    relative_to_last: bool
    scaler: dict[str, ColumnScale]
    cell: str
    layers: tuple[int, ...]
    window: int
    horizon: int
    warmup_steps: int
    seed: int
    split_rows: tuple[int, int, int]  # rows in train, validation, test
    # Added after schema 1 of the skeleton; defaults keep older run directories loadable.
    task: str = "forecast"  # "forecast", or "classify": the head gives class probabilities at every step
    label: str | None = None  # classification: the label column
    classes: tuple[str, ...] = ()  # classification: class names by output index (sigmoid head: P(classes[1]))
    scaler_kind: str = "zscore"  # "zscore" (mean, std) or "minmax" (min, max - min): both apply (x - mean) / std
    differenced: tuple[str, ...] = ()  # features fed as the change of their scaled value since the last sample
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    interval_seconds: float | None = None  # the sampling interval the model was trained on (None: no time column)
    resampled: bool = False  # True: the training data was resampled to interval_seconds
    max_gap_rows: int = 0  # longer gaps split the series: a device should reset its state after one

    def save(self, run_dir: Path) -> None:
        doc = asdict(self)
        (run_dir / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, run_dir: Path) -> RunConfig:
        path = run_dir / CONFIG_FILE
        if not (run_dir / MODEL_FILE).is_file() or not path.is_file():
            raise RnnedgeError(
                f"{run_dir}: not a run directory (expected {MODEL_FILE} and {CONFIG_FILE} from 'rnnedge train')"
            )
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["scaler"] = {name: ColumnScale(**s) for name, s in doc["scaler"].items()}
        for key in ("features", "targets", "layers", "split_rows", "classes", "differenced"):
            if key in doc:
                doc[key] = tuple(doc[key])
        return cls(**doc)


def save_splits(run_dir: Path, splits: dict[str, np.ndarray]) -> None:
    """Model inputs of each split (scaled, differenced where configured), the gap-free pieces concatenated.

    Golden vectors and (later) quantization calibration come from here. `<split>_starts` holds the row where
    each piece begins: a stream over these rows must reset its state there.
    """
    np.savez_compressed(run_dir / SPLITS_FILE, **splits)


def load_splits(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / SPLITS_FILE, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
