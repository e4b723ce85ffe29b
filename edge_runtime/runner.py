"""`rnnedge run`: replay a source through a bundle's step model and publish one message per forecast.

Topic layout (see README): `{prefix}/status` holds a retained `online`/`offline`; each forecast goes to
`{prefix}/forecast/{stream}` as JSON, QoS 1. Without a broker URL the messages are written to stdout as JSON lines.
"""

from __future__ import annotations

import itertools
import json
import socket
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.csv_source import CsvRow, iter_rows
from edge_runtime.errors import RnnedgeError
from edge_runtime.forecaster import StreamForecaster
from edge_runtime.mqtt_publisher import MqttPublisher


class Sink(Protocol):
    def publish_json(self, topic: str, message: dict[str, Any]) -> None: ...


class JsonLinesSink:
    """Writes `{"topic": ..., "message": ...}` lines: the same messages as MQTT, for pipes and debugging."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def publish_json(self, topic: str, message: dict[str, Any]) -> None:
        self.stream.write(json.dumps({"topic": topic, "message": message}, separators=(",", ":")) + "\n")


@dataclass
class RunStats:
    rows: int = 0
    skipped: int = 0
    forecasts: int = 0
    step_ns: list[int] = field(default_factory=list)
    skip_reasons: list[str] = field(default_factory=list)

    @property
    def median_step_us(self) -> float:
        return statistics.median(self.step_ns) / 1000 if self.step_ns else float("nan")


def default_device_id() -> str:
    return socket.gethostname() or "device"


def parse_source(spec: str) -> Path:
    """`csv:PATH` -> PATH (the one source kind of this version)."""
    kind, _, location = spec.partition(":")
    if kind != "csv" or not location:
        raise RnnedgeError(f"source {spec!r} is not supported (supported: csv:PATH)")
    return Path(location)


def forecast_message(bundle: Bundle, stream: str, seq: int, row: CsvRow, forecast: np.ndarray) -> dict[str, Any]:
    """One forecast: for each target, the next `horizon` values after `ts`, in sensor units."""
    manifest = bundle.manifest
    observed = dict(zip(manifest.features, row.values or (), strict=True))
    return {
        "stream": stream,
        "seq": seq,
        "ts": row.timestamp,
        "observed": {name: observed[name] for name in manifest.targets if name in observed},
        "forecast": {name: [float(v) for v in forecast[:, j]] for j, name in enumerate(manifest.targets)},
        "bundle": bundle.digest,
    }


def stream_rows(
    forecaster: StreamForecaster, bundle: Bundle, rows: Iterable[CsvRow], sink: Sink, topic: str, stream: str
) -> RunStats:
    """Feed rows one at a time; publish each forecast with a per-stream sequence number starting at 0."""
    stats = RunStats()
    seq = 0
    for row in rows:
        stats.rows += 1
        if row.values is None:
            stats.skipped += 1
            if len(stats.skip_reasons) < 5:
                stats.skip_reasons.append(f"line {row.line}: {row.problem}")
            continue
        started = time.perf_counter_ns()
        forecast = forecaster.update(row.values)
        stats.step_ns.append(time.perf_counter_ns() - started)
        if forecast is None:
            continue
        sink.publish_json(topic, forecast_message(bundle, stream, seq, row, forecast))
        seq += 1
        stats.forecasts += 1
    return stats


def run(
    bundle: Bundle,
    source: str,
    mqtt_url: str | None,
    stream: str | None = None,
    topic_prefix: str | None = None,
    time_column: str | None = None,
    out: TextIO | None = None,
    format: str = "onnx",
    precision: str = "float32",
) -> RunStats:
    """Stream a CSV through the bundle to MQTT (or stdout); return what happened."""
    path = parse_source(source)
    stream = stream or path.stem
    prefix = topic_prefix or f"rnnedge/{default_device_id()}"
    column = time_column or bundle.manifest.time_column or "auto"
    rows = iter_rows(path, bundle.manifest.features, column)
    first = next(rows, None)  # opens the file and checks its columns before connecting anywhere
    replay = rows if first is None else itertools.chain([first], rows)
    topic = f"{prefix}/forecast/{stream}"
    forecaster = StreamForecaster.from_bundle(bundle, format, precision)
    if mqtt_url is None:
        return stream_rows(forecaster, bundle, replay, JsonLinesSink(out or sys.stdout), topic, stream)
    publisher = MqttPublisher(mqtt_url, f"rnnedge-{stream}-{default_device_id()}", f"{prefix}/status")
    try:
        stats = stream_rows(forecaster, bundle, replay, publisher, topic, stream)
    finally:
        missing = publisher.close()
    if missing:
        raise RnnedgeError(f"{missing} messages were not acknowledged by {publisher.address}")
    return stats
