"""Device profiles and their detection (a 32-bit OS is refused with the reason), the provisioning script and the
systemd units."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_devices_common import rnnedge

from edge_runtime.config import build_config, load_config
from edge_runtime.errors import RnnedgeError
from edge_runtime.profiles import PROFILES, HostFacts, detect_profile, read_host

DEVICES = REPO / "devices"
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI3_32BIT_CPUINFO = PI4_CPUINFO.replace("Raspberry Pi 4 Model B Rev 1.4", "Raspberry Pi 3 Model B Plus Rev 1.3")


@pytest.mark.parametrize(
    ("machine", "device_tree", "cpuinfo", "expected"),
    [
        ("aarch64", "Raspberry Pi 4 Model B Rev 1.4\x00", "", "pi-4"),
        ("aarch64", "", PI4_CPUINFO, "pi-4"),  # no device tree exposed (a container): the cpuinfo Model line
        ("aarch64", "Raspberry Pi 5 Model B Rev 1.0\x00", "", "pi-5"),
        ("aarch64", "Raspberry Pi 3 Model B Plus Rev 1.3\x00", "", "pi-3b-plus"),
        ("aarch64", "Raspberry Pi Zero 2 W Rev 1.0\x00", "", "pi-zero-2w"),
        ("aarch64", "Raspberry Pi Compute Module 4 Rev 1.1\x00", "", "pi-4"),
        ("aarch64", "Pine64 RockPro64 v2.1\x00", "", "generic-aarch64"),
        ("arm64", "", "", "generic-aarch64"),
        ("x86_64", "", "", "generic-x86_64"),
    ],
)
def test_profiles_are_detected_from_what_the_machine_says(
    machine: str, device_tree: str, cpuinfo: str, expected: str
) -> None:
    assert detect_profile(HostFacts.from_text(machine, 64, device_tree, cpuinfo)).name == expected


@pytest.mark.parametrize(
    ("machine", "bits", "cpuinfo", "message"),
    [
        (
            "armv7l",
            32,
            PI3_32BIT_CPUINFO,
            "32-bit OS (armv7l) (Raspberry Pi 3 Model B Plus Rev 1.3): onnxruntime publishes no wheel for 32-bit ARM",
        ),
        ("armv6l", 32, "", "32-bit OS (armv6l): onnxruntime publishes no wheel for 32-bit ARM"),
        ("i686", 32, "", "32-bit OS (i686): onnxruntime publishes no wheel for 32-bit x86"),
        # 32-bit Raspberry Pi OS on a Pi 4 runs a 64-bit kernel: uname says aarch64, the interpreter is 32-bit
        (
            "aarch64",
            32,
            PI4_CPUINFO,
            "32-bit userland on a 64-bit kernel (aarch64, 32-bit Python) (Raspberry Pi 4 "
            "Model B Rev 1.4): onnxruntime publishes no wheel for 32-bit ARM or x86",
        ),
    ],
)
def test_a_32_bit_os_is_refused_with_the_reason(machine: str, bits: int, cpuinfo: str, message: str) -> None:
    with pytest.raises(RnnedgeError) as refused:
        detect_profile(HostFacts.from_text(machine, bits, "", cpuinfo))
    assert str(refused.value).startswith(message)
    assert "install a 64-bit OS (on a Raspberry Pi: Raspberry Pi OS Lite 64-bit, bookworm)" in str(refused.value)


def test_every_profile_names_a_runnable_setup() -> None:
    names = [p.name for p in PROFILES]
    assert len(set(names)) == len(names)
    readme = (DEVICES / "README.md").read_text()
    for profile in PROFILES:
        assert profile.backend in ("onnxruntime", "litert", "numpy") and profile.threads >= 1
        assert f"`{profile.name}`" in readme, f"devices/README.md does not describe {profile.name}"
        # the profile's settings are valid runtime settings
        build_config(
            {}, {"bundle": Path("b"), "backend": profile.backend, "precision": profile.precision, "path": Path("x.csv")}
        )


def test_device_profile_command_on_this_machine(tmp_path: Path) -> None:
    result = rnnedge(tmp_path, "device", "profile", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["profile"]["name"] == detect_profile(read_host()).name
    assert answer["host"]["machine"] == platform.machine()


# --- provisioning ----------------------------------------------------------------------------------------------


def test_the_provisioned_config_is_a_valid_runtime_config(tmp_path: Path) -> None:
    printed = subprocess.run(
        [
            "bash",
            str(DEVICES / "provision.sh"),
            "--print-config",
            "--broker",
            "mqtts://broker.lan:8883",
            "--fleet-key",
            "fleet.pub",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    config = tmp_path / "device.toml"
    config.write_text(printed.stdout)
    values = load_config(config)
    assert values["bundle"] == Path("/var/lib/rnnedge/bundles/current")
    assert values["verify_key"] == Path("/etc/rnnedge/fleet.pub")
    assert values["mqtt"].url == "mqtts://broker.lan:8883"
    assert values["spool_path"] == Path("/var/lib/rnnedge/spool.sqlite")
    assert build_config(values, {}).source == "mqtt"


def fake_machine(tmp_path: Path, machine: str, long_bit: str, dpkg_arch: str) -> dict[str, str]:
    """PATH entries that make uname/getconf/dpkg describe another machine: the only way to show the script a
    32-bit Raspberry Pi here. The script's own checks run unchanged."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name, answer in (("uname", machine), ("getconf", long_bit), ("dpkg", dpkg_arch)):
        (bin_dir / name).write_text(f"#!/bin/sh\necho {answer}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize(
    ("machine", "long_bit", "arch", "message"),
    [
        ("armv7l", "32", "armhf", "32-bit OS (armv7l): onnxruntime publishes no wheel for 32-bit ARM or x86"),
        ("aarch64", "32", "armhf", "32-bit userland on a 64-bit kernel (aarch64, LONG_BIT 32)"),
        ("aarch64", "64", "armhf", "32-bit userland on a 64-bit kernel (aarch64, armhf packages)"),
    ],
)
def test_provisioning_refuses_a_32_bit_os_before_touching_anything(
    tmp_path: Path, machine: str, long_bit: str, arch: str, message: str
) -> None:
    result = subprocess.run(
        ["bash", str(DEVICES / "provision.sh"), "--version", "0.1.0"],
        capture_output=True,
        text=True,
        env=fake_machine(tmp_path, machine, long_bit, arch),
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"provision: error: {message}")
    assert "Raspberry Pi OS Lite 64-bit, bookworm" in result.stderr
    assert result.stdout == ""  # refused before any step


def test_provisioning_script_parses_and_rejects_unknown_options() -> None:
    assert subprocess.run(["bash", "-n", str(DEVICES / "provision.sh")]).returncode == 0
    result = subprocess.run(["bash", str(DEVICES / "provision.sh"), "--wheeel", "x"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option --wheeel" in result.stderr


@pytest.mark.parametrize("unit", ["rnnedge.service", "rnnedge-probation.service", "rnnedge-probation.timer"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    # verify also checks that ExecStart binaries exist: point them at this venv's rnnedge for the check
    rnnedge_binary = str(Path(sys.executable).parent / "rnnedge")
    for name in ("rnnedge.service", "rnnedge-probation.service", "rnnedge-probation.timer"):
        text = (DEVICES / name).read_text().replace("/opt/rnnedge/bin/rnnedge", rnnedge_binary)
        (tmp_path / name).write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True)
    problems = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_the_runtime_unit_is_hardened() -> None:
    unit = (DEVICES / "rnnedge.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["User"] == "rnnedge" and settings["Restart"] == "on-failure"
    assert settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "true"
    assert settings["StateDirectory"] == "rnnedge rnnedge/bundles"
    assert settings["ExecStart"] == "/opt/rnnedge/bin/rnnedge run --config /etc/rnnedge/device.toml"
    assert settings["ExecReload"].startswith("/bin/kill -s HUP")
    assert settings["ExecStartPre"].startswith("-/opt/rnnedge/bin/rnnedge device check")
