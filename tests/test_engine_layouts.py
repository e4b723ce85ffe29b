"""The engine's two paths (one sample per call on Python floats, whole batches on arrays) agree byte for byte on
bundles other than the univariate test model: several targets of which only some are inputs, a horizon of 3 and
differenced inputs, and a classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_fixtures import sensor_rows, write_sensor_csv

from edge_runtime.backends import open_step_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.engine import EngineSettings, StreamEngine
from edge_runtime.samples import Sample
from export.bundle_export import ExportOptions, export_bundle
from trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow


def engines(tmp_path: Path, options: TrainOptions) -> tuple[StreamEngine, StreamEngine]:
    train(options, tmp_path / "run")
    bundle, report = export_bundle(tmp_path / "run", tmp_path / "bundle", ExportOptions(formats=("onnx",)))
    assert report.passed, report.markdown()
    loaded = load_bundle(bundle.path)
    settings = EngineSettings(drift_window=10, anomaly_overrides={"*": {"threshold": 0.2, "rearm_below": 0.1}})
    return tuple(
        StreamEngine(loaded, open_step_backend(loaded, loaded.manifest.artifact("onnx")), settings) for _ in range(2)
    )


def feed(alone: StreamEngine, batched: StreamEngine, columns: dict[str, list[float]]) -> list[str]:
    """12 streams, shifted copies of the columns, 150 rounds: one sample per call against one call per round."""
    names = list(columns)
    by_one, by_batch = [], []
    for t in range(150):
        batch = [
            Sample(f"s{k}", 60.0 * t, str(t), tuple(columns[n][(t + 17 * k) % 600] * (1 + 0.01 * k) for n in names))
            for k in range(12)
        ]
        for sample in batch:
            by_one += alone.process([sample])[0].texts()
        by_batch += batched.process(batch)[0].texts()
    assert by_batch == by_one
    assert batched.stream_summary() == alone.stream_summary()
    return by_one


def test_several_targets_some_not_inputs_with_a_horizon_and_differencing(tmp_path: Path) -> None:
    csv = write_sensor_csv(tmp_path / "sensors.csv")
    _, temp, load, _ = sensor_rows(600)
    options = TrainOptions(
        csv, ("temp", "load"), ("load",), None, layers=(8,), window=16, horizon=3, epochs=1, quiet=True,
        plots=False, difference=("load",),
    )  # fmt: skip
    alone, batched = engines(tmp_path, options)
    texts = feed(alone, batched, {"load": load.tolist()})
    message = json.loads(texts[-1])
    assert set(message["forecast"]) == {"temp", "load"} and len(message["forecast"]["temp"]) == 3
    assert set(message["observed"]) == {"load"} and message["residual"]["temp"] is None
    assert isinstance(message["residual"]["load"], float) and 0.0 <= message["score"] <= 1.0
    assert alone.counters.forecasts == len(texts) == 12 * (150 - alone.warmup)


def test_a_classifier(tmp_path: Path) -> None:
    csv = write_sensor_csv(tmp_path / "sensors.csv")
    _, temp, load, _ = sensor_rows(600)
    options = TrainOptions(
        csv, (), ("temp", "load"), None, layers=(8,), window=16, epochs=1, quiet=True, plots=False,
        task="classify", label="state",
    )  # fmt: skip
    alone, batched = engines(tmp_path, options)
    texts = feed(alone, batched, {"temp": temp.tolist(), "load": load.tolist()})
    message = json.loads(texts[-1])
    assert set(message["probabilities"]) == {"fault", "normal"} and message["class"] in {"fault", "normal"}
    assert abs(sum(message["probabilities"].values()) - 1.0) < 1e-6
