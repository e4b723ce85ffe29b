"""`rnnedge deploy` / `rnnedge rollback` over a real ssh connection: a Debian sshd started by the test on a loopback
port with host and user keys made at test time. The "device" is this machine: its rnnedge runs the device side."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, TrainedBundle, closed_port, free_port
from test_devices_common import bundle_variant, rnnedge, rnnedge_command

from edge_runtime.bundle import load_bundle
from edge_runtime.signing import generate_keypair

SSHD = "/usr/sbin/sshd"
USER = pwd.getpwuid(os.getuid()).pw_name  # the device login is this user: the test's sshd lets it in by key


@dataclass(frozen=True)
class Sshd:
    port: int
    identity: Path
    known_hosts: Path

    def url(self, root: Path) -> str:
        return f"ssh://{USER}@127.0.0.1:{self.port}{root}"

    def options(self) -> list[str]:
        return ["--identity", str(self.identity), "-o", f"UserKnownHostsFile={self.known_hosts}"]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not (Path(SSHD).exists() and shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.fail(
            "openssh-server is not installed: run 'make test' (it installs it) or apt-get install openssh-server"
        )
    workdir = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name)], check=True)
    shutil.copy(workdir / "user_key.pub", workdir / "authorized_keys")
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {workdir / 'host_key'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                f"PidFile {workdir / 'sshd.pid'}",
                "StrictModes no",  # the temp directory's permissions are not a login's home
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "LogLevel VERBOSE",
                # the provisioned service user is let in by the key provision.sh installed, and by nothing else
                "Match User rnnedge",
                "    AuthorizedKeysFile .ssh/authorized_keys",
            ]
        )
        + "\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory (made by its service)
    log = (workdir / "sshd.log").open("ab")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(workdir / 'sshd.log').read_text()}") from None
            time.sleep(0.05)
    yield Sshd(port, workdir / "user_key", workdir / "known_hosts")
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def device(tmp_path: Path) -> dict[str, Path]:
    """A device layout: its trusted key and config (bundle = ROOT/current, verify_key), and its bundle root."""
    device = tmp_path / "device"
    device.mkdir()
    fleet_private, fleet_public = generate_keypair(tmp_path / "fleet")
    shutil.copy(fleet_public, device / "fleet.pub")
    (device / "device.toml").write_text('bundle = "bundles/current"\nverify_key = "fleet.pub"\n')
    return {"root": device / "bundles", "config": device / "device.toml", "signing_key": fleet_private}


def deploy(tmp_path: Path, sshd: Sshd, device: dict[str, Path], bundle: Path, *extra: str):
    reloads = tmp_path / "reloads.log"
    reload = shlex.join(["sh", "-c", f"readlink {device['root']}/current >> {reloads}"])  # harmless, and tells
    return rnnedge(  # which version the runtime would have loaded
        tmp_path,
        "deploy",
        str(bundle),
        "--to",
        sshd.url(device["root"]),
        *sshd.options(),
        "--remote-rnnedge",
        rnnedge_command(tmp_path)[0],
        "--device-config",
        str(device["config"]),
        "--reload",
        reload,
        *extra,
    )


def reloads(tmp_path: Path) -> list[str]:
    path = tmp_path / "reloads.log"
    return path.read_text().split() if path.exists() else []


def current(device: dict[str, Path]) -> str:
    return load_bundle(device["root"] / "current", device["root"].parent / "fleet.pub").digest[:12]


def test_deploy_verifies_on_the_device_activates_and_rolls_back(
    sshd: Sshd, device: dict[str, Path], tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    key = device["signing_key"]
    first = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "first", "first", key)
    second = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "second", "second", key)

    started = time.monotonic()
    result = deploy(tmp_path, sshd, device, first.path, "--json")
    deploy_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["version"]["digest"] == first.digest and answer["changed"] and answer["reloaded"]
    assert "parity passed" in answer["version"]["parity"]
    assert "127.0.0.1: verified sha256 and signature of 5 files" in result.stderr  # the device's own progress
    assert current(device) == first.digest[:12]

    result = deploy(tmp_path, sshd, device, second.path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"deployed {second.digest[:12]} to ")
    assert f"(previous: {first.digest[:12]})" in result.stdout
    assert current(device) == second.digest[:12]
    assert os.readlink(device["root"] / "previous") == first.digest[:12]

    rollback = rnnedge(
        tmp_path,
        "rollback",
        "--to",
        sshd.url(device["root"]),
        *sshd.options(),
        "--remote-rnnedge",
        rnnedge_command(tmp_path)[0],
        "--device-config",
        str(device["config"]),
        "--reload",
        shlex.join(["sh", "-c", f"readlink {device['root']}/current >> {tmp_path / 'reloads.log'}"]),
    )
    assert rollback.returncode == 0, rollback.stderr
    assert rollback.stdout.strip().endswith(f"to {first.digest[:12]} (removed {second.digest[:12]})")
    assert current(device) == first.digest[:12]
    assert reloads(tmp_path) == [first.digest[:12], second.digest[:12], first.digest[:12]]
    print(f"first deploy over ssh: {deploy_seconds:.2f} s")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "the bundle is not signed (manifest.sig missing) and a key is required"),
        ("tampered", "file step.onnx is corrupted"),
    ],
)
def test_the_device_refuses_unsigned_and_tampered_bundles(
    sshd: Sshd, device: dict[str, Path], tiny_bundle: TrainedBundle, tmp_path: Path, case: str, reason: str
) -> None:
    good = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "good", "good", device["signing_key"])
    assert deploy(tmp_path, sshd, device, good.path).returncode == 0
    if case == "unsigned":
        bad = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "bad", "bad").path
    else:
        bad = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "bad", "bad", device["signing_key"]).path
        (bad / "step.onnx").write_bytes((bad / "step.onnx").read_bytes() + b"\0")
    result = deploy(tmp_path, sshd, device, bad)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("rnnedge: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"rnnedge: error: {USER}@127.0.0.1: "), result.stderr
    assert reason in errors[0], result.stderr
    assert current(device) == good.digest[:12]
    assert reloads(tmp_path) == [good.digest[:12]]  # the runtime was never disturbed
    assert sorted(p.name for p in device["root"].iterdir() if p.name.startswith(".staging")) == []


def test_deploy_errors_are_one_line(
    sshd: Sshd, device: dict[str, Path], tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    with closed_port() as port:
        closed = f"ssh://{USER}@127.0.0.1:{port}{device['root']}"
        result = rnnedge(tmp_path, "deploy", str(tiny_bundle.bundle_dir), "--to", closed, *sshd.options())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"rnnedge: error: ssh to {USER}@127.0.0.1 failed: ")
    assert "Connection refused" in result.stderr

    missing = rnnedge(
        tmp_path,
        "deploy",
        str(tiny_bundle.bundle_dir),
        "--to",
        sshd.url(device["root"]),
        *sshd.options(),
        "--remote-rnnedge",
        "/nonexistent/rnnedge",
    )
    assert missing.returncode == 2
    assert "/nonexistent/rnnedge not found on the device" in missing.stderr

    for url, message in [
        ("pi.local:/var/lib", "expected ssh://[user@]host[:port]/path"),
        ("ssh://pi.local", "give the bundle directory on the device as the path"),
        ("ssh://pi.local:port/x", "the port is not a number"),
    ]:
        bad = rnnedge(tmp_path, "deploy", str(tiny_bundle.bundle_dir), "--to", url)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


# --- a device provisioned by devices/provision.sh ------------------------------------------------------------------

INSTALLED = (Path("/opt/rnnedge"), Path("/etc/rnnedge"), Path("/var/lib/rnnedge"))


def wheel_with_device_commands(tmp_path: Path) -> Path:
    """A wheel of this repository. Until edge_runtime/cli.py registers the device commands itself, the copy that
    is built registers them the way the lead's one-line change will."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(REPO, copy, ignore=ignore)
    cli = copy / "edge_runtime" / "cli.py"
    if "add_device_commands" not in cli.read_text():
        cli.write_text(
            cli.read_text().replace(
                "    _add_runtime_commands(commands)\n",
                "    _add_runtime_commands(commands)\n    from edge_runtime.device_cli import add_device_commands\n\n"
                "    add_device_commands(commands)\n",
            )
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(copy), "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next((tmp_path / "wheel").glob("rnnedge-*.whl"))


@pytest.mark.slow
def test_a_provisioned_device_takes_deploys_as_its_service_user(
    sshd: Sshd, tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("provision.sh creates a system user and /opt, /etc, /var/lib entries: it needs root")
    try:
        pwd.getpwnam("rnnedge")
        pytest.skip("this machine has a real rnnedge user: not touching it")
    except KeyError:
        pass
    if any(path.exists() for path in INSTALLED):
        pytest.skip("this machine has a real rnnedge installation: not touching it")
    fleet_private, fleet_public = generate_keypair(tmp_path / "fleet")
    wheel = wheel_with_device_commands(tmp_path)
    try:
        provision = subprocess.run(
            [
                "bash",
                str(REPO / "devices" / "provision.sh"),
                "--wheel",
                str(wheel),
                "--fleet-key",
                str(fleet_public),
                "--deploy-key",
                f"{sshd.identity}.pub",
                "--no-systemd",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert provision.returncode == 0, provision.stderr
        assert "provision: created system user rnnedge" in provision.stdout
        assert "generic-x86_64" in provision.stdout or "generic-aarch64" in provision.stdout
        tensorflow = subprocess.run(["/opt/rnnedge/bin/python", "-c", "import tensorflow"], capture_output=True)
        assert tensorflow.returncode != 0  # the base install only

        url = f"ssh://rnnedge@127.0.0.1:{sshd.port}/var/lib/rnnedge/bundles"
        signed = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "signed", "signed", fleet_private)
        deployed = rnnedge(tmp_path, "deploy", str(signed.path), "--to", url, *sshd.options(), "--json")
        assert deployed.returncode == 0, deployed.stderr
        assert "verified sha256 and signature" in deployed.stderr  # the device's own config names the key
        current = Path("/var/lib/rnnedge/bundles/current")
        assert load_bundle(current, fleet_public).digest == signed.digest
        assert pwd.getpwuid(current.resolve().stat().st_uid).pw_name == "rnnedge"

        unsigned = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "unsigned", "unsigned")
        refused = rnnedge(tmp_path, "deploy", str(unsigned.path), "--to", url, *sshd.options())
        assert refused.returncode == 2 and "the upload: the bundle is not signed" in refused.stderr
        assert load_bundle(current, fleet_public).digest == signed.digest
    finally:
        subprocess.run(["userdel", "rnnedge"], capture_output=True)
        for path in INSTALLED:
            shutil.rmtree(path, ignore_errors=True)
        Path("/etc/sudoers.d/rnnedge").unlink(missing_ok=True)
