"""An emulated Raspberry Pi 4 (qemu-aarch64 -cpu cortex-a72, Debian bookworm arm64, CPython 3.11, the real aarch64
wheels of the base install) streams a bundle to a real broker; its forecasts must equal the x86 run's within
1e-5. The sysroot is built once and cached (devices/emulated_pi.py). Correctness only: nothing here is timed."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import REPO, RNNEDGE, Mosquitto, TrainedBundle, write_rows
from mqtt_helpers import Recorder
from test_devices_common import rnnedge_command

from edge_runtime.bundle import load_bundle

pytestmark = pytest.mark.slow
ROWS = 100


def _load_emulated_pi() -> ModuleType:
    spec = importlib.util.spec_from_file_location("emulated_pi", REPO / "devices" / "emulated_pi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


emulated_pi = _load_emulated_pi()


@pytest.fixture(scope="module")
def pi() -> Path:
    if shutil.which(emulated_pi.QEMU) is None:
        pytest.fail("qemu-user-static is not installed: run 'make test' (it installs it) or apt-get install it")
    started = time.monotonic()
    try:
        target = emulated_pi.build()
    except emulated_pi.EmulationUnavailable as exc:  # no route to a Debian mirror or to PyPI: cannot be had here
        pytest.skip(f"cannot build the emulated Pi (network?): {exc}")
    print(f"emulated Pi sysroot ready in {time.monotonic() - started:.1f} s: {target}")
    return target


def on_pi(pi: Path, arguments: list[str], profile: str = "pi-4", timeout: float = 300) -> subprocess.CompletedProcess:
    argv, env = emulated_pi.command(pi, arguments, profile)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_emulated_pi_publishes_the_forecasts_of_the_x86_run(
    pi: Path, tiny_bundle: TrainedBundle, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    csv = write_rows(tmp_path / "rows.csv", 1200, ROWS)
    bundle = str(tiny_bundle.bundle_dir)
    x86 = subprocess.run([*RNNEDGE, "run", bundle, "--source", f"csv:{csv}"], capture_output=True, text=True)
    assert x86.returncode == 0, x86.stderr
    expected = {m["message"]["seq"]: m["message"] for m in map(json.loads, x86.stdout.splitlines())}

    recorder = Recorder(mosquitto.port, "rnnedge/pi4/forecast/#")
    try:
        started = time.monotonic()
        arm = on_pi(
            pi,
            [
                "-m",
                "edge_runtime.cli",
                "run",
                bundle,
                "--source",
                f"csv:{csv}",
                "--mqtt",
                mosquitto.url,
                "--device-id",
                "pi4",
                "--spool",
                str(tmp_path / "pi.spool"),
                "--metrics-interval",
                "3600",
            ],
        )
        print(f"emulated Pi run of {ROWS} rows: {time.monotonic() - started:.1f} s")
        assert arm.returncode == 0, arm.stderr
        recorder.wait_for(len(expected))
        recorder.settle()
        published = {m["seq"]: m for m in recorder.json_on("/forecast/rows")}
    finally:
        recorder.close()
    warmup = load_bundle(bundle).manifest.warmup_steps
    assert len(expected) == ROWS - warmup
    assert sorted(published) == sorted(expected)
    worst = 0.0
    for seq, message in expected.items():
        ours, theirs = published[seq], message
        assert (ours["ts"], ours["observed"]) == (theirs["ts"], theirs["observed"])
        worst = max(worst, float(np.max(np.abs(np.subtract(ours["forecast"]["value"], theirs["forecast"]["value"])))))
    print(f"largest forecast difference aarch64 vs x86: {worst:.3g}")
    assert worst <= 1e-5, f"largest forecast difference aarch64 vs x86: {worst:.3g}"


def test_the_emulated_pi_detects_its_profile_and_verifies_bundles_itself(
    pi: Path, tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    wrapper = rnnedge_command(tmp_path)[0]  # run by the guest's python3.11: its shebang is not used
    profile = on_pi(pi, [wrapper, "device", "profile", "--json"], profile="pi-5")
    assert profile.returncode == 0, profile.stderr
    answer = json.loads(profile.stdout)
    assert (answer["profile"]["name"], answer["host"]["machine"]) == ("pi-5", "aarch64")
    assert answer["host"]["model"].startswith("Raspberry Pi 5")

    root = tmp_path / "bundles"
    activated = on_pi(pi, [wrapper, "device", "activate", str(tiny_bundle.bundle_dir), "--root", str(root), "--json"])
    assert activated.returncode == 0, activated.stderr
    parity = json.loads(activated.stdout)["version"]["parity"]
    # the device's own runtimes: ONNX Runtime and numpy on aarch64; LiteRT is not in the base install
    assert parity.startswith("parity passed: 3 artifact/runtime pairs") and "(1 skipped" in parity
    assert load_bundle(root / "current").digest == load_bundle(tiny_bundle.bundle_dir).digest
