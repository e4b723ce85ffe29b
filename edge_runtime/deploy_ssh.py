"""`rnnedge deploy BUNDLE --to ssh://user@host[:port]/ROOT` and `rnnedge rollback --to ...`, from a workstation.

One ssh connection per deploy (the system `ssh` binary: the user's keys, agent, known_hosts and ~/.ssh/config
apply). The bundle travels as a tar stream on the connection's stdin to

    REMOTE_RNNEDGE device activate - --root ROOT --json [--config C] [--verify-key K] [--keep N]
                                     [--reload CMD] [--probation S]

on the device, which unpacks it into a private staging directory, verifies sha256, the signature (with the
device's own trusted key) and parity with its own runtimes, swaps `current`, reloads the runtime and, with a
probation, waits for the runtime's confirmation. Everything that decides is on the device; the workstation only
carries the bytes and relays the verdict. Remote exit status: 0 activated, 1 parity failed or probation rolled
back, 2 refused (bad bundle, signature, usage); stdout is one JSON object, stderr the progress lines.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_runtime.errors import BundleError, RnnedgeError

log = logging.getLogger("rnnedge.deploy")

SSH_EXIT_CONNECTION = 255
SHELL_EXIT_NOT_FOUND = 127


class RemoteFailed(RnnedgeError):
    """The device refused or rolled back; carries the device's own exit status (1 or 2)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int | None
    root: str  # the bundle store on the device

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        example = "e.g. ssh://rnnedge@pi4.local/var/lib/rnnedge/bundles"
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket
            hostname = None
        if not hostname or parts.scheme != "ssh":
            raise RnnedgeError(f"--to {url!r}: expected ssh://[user@]host[:port]/path ({example})")
        if not parts.path or parts.path == "/":
            raise RnnedgeError(f"--to {url!r}: give the bundle directory on the device as the path ({example})")
        try:
            port = parts.port
        except ValueError:
            raise RnnedgeError(f"--to {url!r}: the port is not a number") from None
        return cls(parts.username, parts.hostname, port, parts.path)

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}"


@dataclass(frozen=True)
class SshOptions:
    identity: Path | None
    options: tuple[str, ...]  # extra `-o KEY=VALUE`, given first so they win over the defaults below
    remote_rnnedge: str  # the device's rnnedge command, e.g. /opt/rnnedge/bin/rnnedge

    def command(self, target: SshTarget, remote: list[str]) -> list[str]:
        argv = ["ssh"]
        for option in self.options:
            argv += ["-o", option]
        argv += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "StrictHostKeyChecking=accept-new"]
        if self.identity:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if target.port:
            argv += ["-p", str(target.port)]
        if target.user:
            argv += ["-l", target.user]
        # ssh hands the remote shell one string: quote every word of the device command
        return argv + [target.host, "--", shlex.join([*shlex.split(self.remote_rnnedge), *remote])]


def bundle_tar(directory: Path) -> bytes:
    """The bundle's plain files as an uncompressed tar (bundles are tens of kB; the model files barely compress)."""
    from edge_runtime.bundle import MANIFEST_NAME

    if not (directory / MANIFEST_NAME).is_file():
        raise BundleError(f"{directory}: not a bundle directory (no {MANIFEST_NAME})")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(directory.iterdir()):
            if entry.is_file() and not entry.is_symlink() and not entry.name.startswith("."):
                archive.add(entry, arcname=entry.name, recursive=False)
    return buffer.getvalue()


def _run_remote(ssh: SshOptions, target: SshTarget, remote: list[str], upload: bytes | None) -> dict[str, Any]:
    """Run the device command; relay its progress lines live; return its JSON result or raise its verdict."""
    command = ssh.command(target, remote)
    log.debug("running %s", shlex.join(command))
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
    except FileNotFoundError:
        raise RnnedgeError("the 'ssh' client is not installed (apt-get install openssh-client)") from None
    stdout: list[bytes] = []

    def feed() -> None:
        try:
            if upload:
                process.stdin.write(upload)
        except BrokenPipeError:  # the device stopped reading: its stderr says why
            pass
        finally:
            process.stdin.close()

    def drain() -> None:
        stdout.append(process.stdout.read())

    workers = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain, daemon=True)]
    for worker in workers:
        worker.start()
    lines = []
    for raw in process.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        lines.append(line)
        if line and not line.startswith("rnnedge: error: "):
            print(f"{target.host}: {line}", file=sys.stderr, flush=True)
    status = process.wait()
    for worker in workers:
        worker.join()
    if status == 0:
        try:
            return json.loads(b"".join(stdout))
        except ValueError:
            raise RnnedgeError(
                f"{target.label}: the device answered with no result (is rnnedge there current?)"
            ) from None
    errors = [line.removeprefix("rnnedge: error: ") for line in lines if line.startswith("rnnedge: error: ")]
    last = errors[-1] if errors else (lines[-1] if lines else f"exit status {status}")
    if status == SSH_EXIT_CONNECTION:
        raise RnnedgeError(f"ssh to {target.label} failed: {last}")
    if status == SHELL_EXIT_NOT_FOUND:
        raise RnnedgeError(
            f"{target.label}: {ssh.remote_rnnedge} not found on the device (provision it: devices/provision.sh, "
            "or give --remote-rnnedge)"
        )
    raise RemoteFailed(f"{target.label}: {last}", 1 if status == 1 else 2)


def _device_options(target: SshTarget, config: str | None, verify_key: str | None, reload: str | None) -> list[str]:
    remote = ["--root", target.root, "--json"]
    if config:
        remote += ["--config", config]
    if verify_key:
        remote += ["--verify-key", verify_key]
    if reload:
        remote += ["--reload", reload]
    return remote


def deploy(
    bundle_dir: Path,
    target: SshTarget,
    ssh: SshOptions,
    *,
    config: str | None = None,
    verify_key: str | None = None,
    reload: str | None = None,
    probation_s: float = 0.0,
    keep: int | None = None,
) -> dict[str, Any]:
    """Ship a bundle to the device and activate it there; returns the device's JSON result."""
    upload = bundle_tar(bundle_dir)
    remote = ["device", "activate", "-", *_device_options(target, config, verify_key, reload)]
    if probation_s:
        remote += ["--probation", f"{probation_s:g}"]
    if keep is not None:
        remote += ["--keep", str(keep)]
    log.info("uploading %s (%d bytes) to %s:%s", bundle_dir, len(upload), target.label, target.root)
    return _run_remote(ssh, target, remote, upload)


def rollback(
    target: SshTarget,
    ssh: SshOptions,
    *,
    config: str | None = None,
    verify_key: str | None = None,
    reload: str | None = None,
) -> dict[str, Any]:
    """Make the device's previous version current again; returns the device's JSON result."""
    return _run_remote(ssh, target, ["device", "rollback", *_device_options(target, config, verify_key, reload)], None)
