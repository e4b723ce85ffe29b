"""`rnnedge demo` end to end on the shipped sample, with the embedded amqtt broker (one epoch, to stay quick)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import RNNEDGE

pytestmark = pytest.mark.slow


def test_demo_streams_every_forecast_to_the_embedded_broker(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RNNEDGE, "demo", "--out", str(tmp_path), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    published = int(re.search(r"forecasts published\s+(\d+)", result.stdout).group(1))
    received = int(re.search(r"messages received\s+(\d+)", result.stdout).group(1))
    rows = int(re.search(r"rows streamed\s+(\d+)", result.stdout).group(1))
    assert rows == 4540  # the held-out 20% of the 22,695-row sample
    assert published == rows - 16  # warm-up of the default window 64
    assert received == published
    mae = re.search(r"forecast MAE \(t\+1\)\s+([\d.]+) \(persistence ([\d.]+)", result.stdout)
    assert 0 < float(mae.group(1)) < 5 and float(mae.group(2)) == pytest.approx(0.8227, abs=1e-4)
    png = (tmp_path / "forecast.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
