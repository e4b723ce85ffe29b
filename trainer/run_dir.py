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
        for key in ("features", "targets", "layers", "split_rows"):
            doc[key] = tuple(doc[key])
        return cls(**doc)


def save_splits(run_dir: Path, splits: dict[str, np.ndarray]) -> None:
    """Scaled model inputs of each split: golden vectors and (later) quantization calibration come from here."""
    np.savez_compressed(run_dir / SPLITS_FILE, **splits)


def load_splits(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / SPLITS_FILE, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
