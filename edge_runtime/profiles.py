"""Device profiles: which board this is, and how the edge runtime should run on it.

A profile is picked from what the machine says about itself: `/proc/device-tree/model` (Raspberry Pi firmware),
the `Model` line of `/proc/cpuinfo`, `platform.machine()` and the interpreter's own pointer size. The table lives
here, in the package, so it ships with the base install and reaches the device; devices/README.md explains it.

A 32-bit OS is refused with the reason: onnxruntime publishes no wheel for 32-bit ARM (armv7l, armv6l) or 32-bit
x86. That includes a 32-bit userland on a 64-bit kernel (Raspberry Pi OS 32-bit on a Pi 4 reports `aarch64` from
uname), which only the interpreter's pointer size reveals.
"""

from __future__ import annotations

import platform
import struct
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import RnnedgeError

INSTALL_PI = (
    "flash Raspberry Pi OS Lite (64-bit, bookworm); then as root: devices/provision.sh --wheel rnnedge-*.whl "
    "(or --version X.Y.Z from PyPI)"
)
INSTALL_GENERIC = "a 64-bit Debian/Ubuntu with python3 >= 3.11 and python3-venv; then devices/provision.sh"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    title: str
    machine: str  # platform.machine() of the 64-bit OS
    models: tuple[str, ...]  # prefixes of the firmware's model string this profile covers
    cpu: str
    qemu_cpu: str | None  # the `qemu-aarch64 -cpu` that emulates this core (correctness only, never timings)
    ram_mb: int  # smallest RAM of the board family
    backend: str  # `backend` for device.toml
    threads: int  # intra-op threads: at these model sizes per-call overhead dominates, one thread is fastest
    precision: str
    install: str
    notes: str = ""


PROFILES: tuple[DeviceProfile, ...] = (
    DeviceProfile(
        name="pi-zero-2w",
        title="Raspberry Pi Zero 2 W",
        machine="aarch64",
        models=("Raspberry Pi Zero 2 W",),
        cpu="4x Cortex-A53 1.0 GHz",
        qemu_cpu="cortex-a53",
        ram_mb=512,
        backend="onnxruntime",
        threads=1,
        precision="float32",
        install=INSTALL_PI,
        notes="512 MB RAM: run one runtime process (it multiplexes streams); keep spool.max_bytes small on the SD card",
    ),
    DeviceProfile(
        name="pi-3b-plus",
        title="Raspberry Pi 3 Model B+ (also 3B, 3A+)",
        machine="aarch64",
        models=("Raspberry Pi 3 Model",),
        cpu="4x Cortex-A53 1.4 GHz",
        qemu_cpu="cortex-a53",
        ram_mb=512,
        backend="onnxruntime",
        threads=1,
        precision="float32",
        install=INSTALL_PI,
        notes="3A+ has 512 MB, 3B/3B+ 1 GB",
    ),
    DeviceProfile(
        name="pi-4",
        title="Raspberry Pi 4 Model B (also 400, Compute Module 4)",
        machine="aarch64",
        models=("Raspberry Pi 4 Model B", "Raspberry Pi 400", "Raspberry Pi Compute Module 4"),
        cpu="4x Cortex-A72 1.5-1.8 GHz",
        qemu_cpu="cortex-a72",
        ram_mb=1024,
        backend="onnxruntime",
        threads=1,
        precision="float32",
        install=INSTALL_PI,
    ),
    DeviceProfile(
        name="pi-5",
        title="Raspberry Pi 5 (also 500, Compute Module 5)",
        machine="aarch64",
        models=("Raspberry Pi 5", "Raspberry Pi 500", "Raspberry Pi Compute Module 5"),
        cpu="4x Cortex-A76 2.4 GHz",
        qemu_cpu="cortex-a76",
        ram_mb=1024,
        backend="onnxruntime",
        threads=1,
        precision="float32",
        install=INSTALL_PI,
        notes="ARMv8.2 dot-product instructions: int8 may pay off here; measure with 'rnnedge bench'",
    ),
    DeviceProfile(
        name="generic-aarch64",
        title="64-bit ARM Linux (other boards, ARM servers)",
        machine="aarch64",
        models=(),
        cpu="any ARMv8-A",
        qemu_cpu="cortex-a72",
        ram_mb=512,
        backend="onnxruntime",
        threads=1,
        precision="float32",
        install=INSTALL_GENERIC,
    ),
    DeviceProfile(
        name="generic-x86_64",
        title="64-bit x86 Linux (gateways, industrial PCs, servers)",
        machine="x86_64",
        models=(),
        cpu="any x86-64",
        qemu_cpu=None,
        ram_mb=512,
        backend="onnxruntime",
        threads=1,
        precision="float32",
        install=INSTALL_GENERIC,
    ),
)

_MACHINE_ALIASES = {"arm64": "aarch64", "amd64": "x86_64"}
_32_BIT_MACHINES = {"armv6l": "ARM", "armv7l": "ARM", "armv8l": "ARM", "armhf": "ARM", "arm": "ARM"}
_32_BIT_MACHINES |= {name: "x86" for name in ("i386", "i486", "i586", "i686", "x86")}


@dataclass(frozen=True)
class HostFacts:
    """What the machine says about itself; `read_host()` gathers the real ones."""

    machine: str
    pointer_bits: int
    model: str = ""  # /proc/device-tree/model, else the `Model` line of /proc/cpuinfo

    @classmethod
    def from_text(cls, machine: str, pointer_bits: int, device_tree_model: str = "", cpuinfo: str = "") -> HostFacts:
        model = device_tree_model.strip("\x00 \n")
        if not model:
            for line in cpuinfo.splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model":
                    model = value.strip()
                    break
        return cls(machine.strip(), pointer_bits, model)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def read_host() -> HostFacts:
    return HostFacts.from_text(
        platform.machine(), 8 * struct.calcsize("P"), _read("/proc/device-tree/model"), _read("/proc/cpuinfo")
    )


def profile_by_name(name: str) -> DeviceProfile:
    for profile in PROFILES:
        if profile.name == name:
            return profile
    raise RnnedgeError(f"unknown device profile {name!r} (known: {', '.join(p.name for p in PROFILES)})")


def detect_profile(host: HostFacts) -> DeviceProfile:
    """The profile for this machine, or a one-line refusal naming why the edge runtime cannot run on it."""
    machine = _MACHINE_ALIASES.get(host.machine.lower(), host.machine.lower())
    family = _32_BIT_MACHINES.get(machine)
    where = f" ({host.model})" if host.model else ""
    if family:
        raise RnnedgeError(
            f"32-bit OS ({host.machine}){where}: onnxruntime publishes no wheel for 32-bit {family}, so the edge "
            "runtime cannot run here; install a 64-bit OS (on a Raspberry Pi: Raspberry Pi OS Lite 64-bit, bookworm)"
        )
    if host.pointer_bits != 64:
        raise RnnedgeError(
            f"32-bit userland on a 64-bit kernel ({host.machine}, {host.pointer_bits}-bit Python){where}: "
            "onnxruntime publishes no wheel for 32-bit ARM or x86; install a 64-bit OS "
            "(on a Raspberry Pi: Raspberry Pi OS Lite 64-bit, bookworm)"
        )
    for profile in PROFILES:
        if profile.machine == machine and any(host.model.startswith(prefix) for prefix in profile.models):
            return profile
    for profile in PROFILES:
        if profile.machine == machine and not profile.models:
            return profile
    raise RnnedgeError(
        f"unsupported machine {host.machine!r}{where}: the edge runtime runs on 64-bit Linux, aarch64 or x86_64"
    )
