"""An emulated Raspberry Pi for CI: 64-bit Raspberry Pi OS userland (Debian bookworm arm64, CPython 3.11) with
the real aarch64 wheels of the base install, run by qemu-user. For correctness and packaging, never for timings.

    python devices/emulated_pi.py build                      # build (or reuse) the sysroot; prints its path
    python devices/emulated_pi.py run [--profile pi-4] -- -m edge_runtime.cli run BUNDLE --source csv:rows.csv

The sysroot is cached under ~/.cache/rnnedge/pi-sysroot-<key> (XDG_CACHE_HOME honoured), keyed by a hash of the
base-install requirements (pyproject.toml's dependencies and the pins in constraints.txt), the Debian packages
and this recipe, so a second run costs nothing. The guest sees this repository on PYTHONPATH, after the aarch64
site-packages. Needs: qemu-user-static, debian-archive-keyring, network access to a Debian mirror and to PyPI.

Recipe and the qemu 7.2 cpuinfo fix: ../shared/notes/MQTT_AND_PI.md. qemu-user shows the guest the host's
/proc/cpuinfo, where onnxruntime's cpuinfo finds no ARM core and segfaults; `-L SYSROOT` makes the guest read
SYSROOT/proc/cpuinfo instead, so a Pi's is written there (and its device-tree model, for profile detection).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout: edge_runtime is importable without installing

from edge_runtime.profiles import DeviceProfile, profile_by_name  # noqa: E402

RECIPE = 1  # bump when the build steps below change
SUITES = ("bookworm", "bookworm-updates")
SECURITY = "bookworm-security"
MIRROR = os.environ.get("RNNEDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("RNNEDGE_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# CPython 3.11 and what onnxruntime's native library links against beyond glibc
DEBS = ("python3.11", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
# manylinux tags of aarch64 wheels (ai-edge-litert is tagged 2_27, onnxruntime 2_27/2_28, numpy 2_17)
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{n}_aarch64" for n in (17, 24, 26, 27, 28, 31, 34, 35, 36)))
CPU_PART = {"cortex-a53": "0xd03", "cortex-a72": "0xd08", "cortex-a76": "0xd0b"}
QEMU = "qemu-aarch64-static"


class EmulationUnavailable(RuntimeError):
    """A component the emulated Pi needs cannot be had here (no network, no mirror)."""


def base_requirements() -> list[str]:
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def cache_key() -> str:
    recipe = {
        "recipe": RECIPE,
        "requirements": base_requirements(),
        "constraints": (REPO / "constraints.txt").read_text(),
        "debs": DEBS,
        "platforms": PLATFORMS,
        "mirrors": [MIRROR, SECURITY_MIRROR],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnedge"


def _run(command: list[str], **kwargs) -> None:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise EmulationUnavailable(f"{' '.join(command[:3])} ... failed ({done.returncode}):\n{tail}")


def _apt_config(work: Path) -> Path:
    """A private apt for arm64 packages: its own sources, lists, cache and an empty dpkg status."""
    etc, state, cache = work / "etc", work / "state", work / "cache"
    for folder in (
        etc / "sources.list.d",
        etc / "preferences.d",
        state / "lists" / "partial",
        cache / "archives" / "partial",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    source = f"deb [arch=arm64 signed-by={KEYRING}]"
    lines = [f"{source} {MIRROR} {suite} main" for suite in SUITES] + [f"{source} {SECURITY_MIRROR} {SECURITY} main"]
    (etc / "sources.list").write_text("\n".join(lines) + "\n")
    conf = work / "apt.conf"
    conf.write_text(
        "\n".join(
            [
                'APT::Architecture "arm64";',
                'APT::Architectures { "arm64"; };',
                f'Dir::Etc::SourceList "{etc / "sources.list"}";',
                f'Dir::Etc::SourceParts "{etc / "sources.list.d"}";',
                f'Dir::Etc::Preferences "{etc / "preferences"}";',
                f'Dir::Etc::PreferencesParts "{etc / "preferences.d"}";',
                f'Dir::State "{state}";',
                f'Dir::State::status "{state / "status"}";',
                f'Dir::Cache "{cache}";',
                'Debug::NoLocking "true";',
            ]
        )
        + "\n"
    )
    return conf


def _build(target: Path) -> None:
    sysroot, site = target / "sysroot", target / "site"
    with tempfile.TemporaryDirectory(prefix="rnnedge-apt-") as scratch:
        env = {**os.environ, "APT_CONFIG": str(_apt_config(Path(scratch))), "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], env=env)
        _run(["apt-get", "install", "--download-only", "-y", "-qq", *DEBS], env=env)
        sysroot.mkdir()
        for deb in sorted((Path(scratch) / "cache" / "archives").glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(sysroot)])
    if not (sysroot / "usr" / "bin" / "python3.11").exists():
        raise EmulationUnavailable("the arm64 packages did not provide usr/bin/python3.11")
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(site),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            *platforms,
            "-c",
            str(REPO / "constraints.txt"),
            *base_requirements(),
        ]
    )


def build(cache: Path | None = None) -> Path:
    """The cached sysroot for the current requirements, built first if missing. Returns its directory."""
    cache = cache or cache_root()
    target = cache / f"pi-sysroot-{cache_key()}"
    if (target / "complete.json").is_file():
        return target
    if shutil.which(QEMU) is None:
        raise FileNotFoundError(f"{QEMU} is not installed: apt-get install -y qemu-user-static")
    if not Path(KEYRING).is_file():
        raise FileNotFoundError(f"{KEYRING} is missing: apt-get install -y debian-archive-keyring")
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
    try:
        _build(work)
        (work / "complete.json").write_text(json.dumps({"requirements": base_requirements(), "debs": DEBS}) + "\n")
        try:
            os.rename(work, target)  # all or nothing: a killed build never looks complete
        except OSError:  # another build won the race: use it
            if not (target / "complete.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _fake_proc(sysroot: Path, profile: DeviceProfile) -> None:
    """The board as the guest sees it: a cpuinfo with the profile's ARM cores, and its device-tree model."""
    part = CPU_PART[profile.qemu_cpu]
    cores = []
    for n in range(4):
        cores.append(
            f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
            f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\n"
            "CPU revision\t: 3\n"
        )
    model = f"{profile.models[0]} Rev 1.0" if profile.models else ""
    board = f"Hardware\t: BCM2835\nModel\t\t: {model}\n" if model else ""
    proc = sysroot / "proc"
    (proc / "device-tree").mkdir(parents=True, exist_ok=True)
    (proc / "cpuinfo").write_text("\n".join(cores) + "\n" + board)
    tree_model = proc / "device-tree" / "model"
    if model:
        tree_model.write_bytes(model.encode() + b"\0")
    else:
        tree_model.unlink(missing_ok=True)


def command(target: Path, arguments: list[str], profile_name: str = "pi-4") -> tuple[list[str], dict[str, str]]:
    """argv and environment that run `python3.11 ARGUMENTS...` on the emulated board."""
    profile = profile_by_name(profile_name)
    if profile.qemu_cpu is None:
        raise ValueError(f"profile {profile_name} is not an ARM board")
    sysroot = target / "sysroot"
    _fake_proc(sysroot, profile)
    env = {**os.environ, "PYTHONPATH": f"{target / 'site'}:{REPO}", "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [QEMU, "-cpu", profile.qemu_cpu, "-L", str(sysroot), str(sysroot / "usr" / "bin" / "python3.11")]
    return argv + arguments, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="cache directory (default: ~/.cache/rnnedge)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("build", help="build (or reuse) the sysroot and print its path")
    run = actions.add_parser("run", help="run python3.11 on the emulated board: run -- ARGS...")
    run.add_argument("--profile", default="pi-4", help="pi-zero-2w, pi-3b-plus, pi-4, pi-5 (default: pi-4)")
    run.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    try:
        target = build(args.cache)
    except (EmulationUnavailable, FileNotFoundError) as exc:
        print(f"emulated_pi: error: {exc}", file=sys.stderr)
        return 2
    if args.action == "build":
        print(target)
        return 0
    arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
    argv, env = command(target, arguments, args.profile)
    return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
