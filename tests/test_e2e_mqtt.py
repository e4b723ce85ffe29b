"""CSV rows -> `rnnedge run` (a separate process) -> real mosquitto -> subscriber, checked against Keras."""

from __future__ import annotations

import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import RNNEDGE, Mosquitto, TrainedBundle, closed_port, write_rows
from mqtt_helpers import Recorder

from edge_runtime.bundle import load_bundle
from edge_runtime.csv_source import read_columns
from edge_runtime.scaling import Scaler

pytestmark = pytest.mark.slow


def keras_stream_forecasts(run_dir: Path, bundle_dir: Path, csv: Path) -> np.ndarray:
    """What the trained Keras model itself forecasts after each row, streaming from zero state: (N, H, T)."""
    manifest = load_bundle(bundle_dir).manifest
    scaler = Scaler.from_manifest(manifest)
    inputs = scaler.scale_inputs(read_columns(csv, manifest.features).values)
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    return scaler.forecast_units(model.predict(inputs[None], verbose=0)[0], inputs)


def test_runtime_publishes_one_forecast_per_row_equal_to_keras(
    tiny_bundle: TrainedBundle, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rows = 500
    csv = write_rows(tmp_path / "heldout.csv", 1200, rows)
    recorder = Recorder(mosquitto.port, "plant/#")
    result = subprocess.run(
        [
            *RNNEDGE,
            "run",
            str(tiny_bundle.bundle_dir),
            "--source",
            f"csv:{csv}",
            "--mqtt",
            mosquitto.url,
            "--stream",
            "press-7",
            "--topic-prefix",
            "plant",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    manifest = load_bundle(tiny_bundle.bundle_dir).manifest
    expected_count = rows - manifest.warmup_steps
    recorder.wait_for(expected_count + 2)  # forecasts + "online" + "offline"
    recorder.settle()
    recorder.close()

    forecasts = recorder.json_on("/forecast/press-7")
    assert len(forecasts) == expected_count
    assert [m["seq"] for m in forecasts] == list(range(expected_count))
    statuses = [payload for topic, payload, _ in recorder.messages if topic == "plant/status"]
    assert statuses == [b"online", b"offline"]

    reference = keras_stream_forecasts(tiny_bundle.run_dir, tiny_bundle.bundle_dir, csv)
    received = np.array([m["forecast"]["value"] for m in forecasts])  # (N - warmup, H)
    assert received.shape == (expected_count, manifest.horizon)
    np.testing.assert_allclose(received, reference[manifest.warmup_steps :, :, 0], rtol=0, atol=1e-5)

    timestamps = read_columns(csv, ("value",)).timestamps
    assert [m["ts"] for m in forecasts] == timestamps[manifest.warmup_steps :]
    assert {m["bundle"] for m in forecasts} == {load_bundle(tiny_bundle.bundle_dir).digest}


def test_retained_status_is_offline_after_the_run(tiny_bundle: TrainedBundle, mosquitto: Mosquitto, tmp_path: Path):
    csv = write_rows(tmp_path / "short.csv", 1200, 20)
    subprocess.run(
        [
            *RNNEDGE,
            "run",
            str(tiny_bundle.bundle_dir),
            "--source",
            f"csv:{csv}",
            "--mqtt",
            mosquitto.url,
            "--topic-prefix",
            "plant",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    late = Recorder(mosquitto.port, "plant/status")  # subscribes after the run: sees only the retained message
    late.wait_for(1, timeout=10)
    late.close()
    assert late.messages == [("plant/status", b"offline", True)]


def test_unreachable_broker_keeps_forecasts_in_the_spool_and_says_so(
    tiny_bundle: TrainedBundle, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    csv = write_rows(tmp_path / "short.csv", 1200, 20)
    spool = tmp_path / "spool"
    with closed_port() as port:
        result = subprocess.run(
            [
                *RNNEDGE,
                "run",
                str(tiny_bundle.bundle_dir),
                "--source",
                f"csv:{csv}",
                "--topic-prefix",
                "plant",
                "--mqtt",
                f"mqtt://127.0.0.1:{port}",
                "--spool",
                str(spool),
                "--drain-timeout",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    # 16 forecasts (20 rows - 4 warm-up) and the run's final metrics message
    assert error.startswith("rnnedge: error: 17 messages could not be delivered to mqtt://127.0.0.1:")
    assert "(cannot connect (Connection refused))" in error
    assert "they stay in the spool" in error and "Traceback" not in result.stderr

    # the next start, with the broker there, publishes what the first run could not (and its own forecasts)
    recorder = Recorder(mosquitto.port, "plant/forecast/#")
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,value\n")
    again = subprocess.run(
        [
            *RNNEDGE,
            "run",
            str(tiny_bundle.bundle_dir),
            "--source",
            f"csv:{empty}",
            "--topic-prefix",
            "plant",
            "--mqtt",
            mosquitto.url,
            "--spool",
            str(spool),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    recorder.wait_for(16)
    recorder.settle()
    recorder.close()
    assert [m["seq"] for m in recorder.json_on("/forecast/short")] == list(range(16))
