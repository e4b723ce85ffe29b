"""Shared fixtures: a real mosquitto broker owned by the test, and a tiny trained bundle built once."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "trainer" / "samples" / "machine_temperature_system_failure.csv"
RNNEDGE = [str(Path(sys.executable).parent / "rnnedge")]  # the installed console script


def data_dir() -> Path:
    """The shared real data (NAB, ETTh1): RNNEDGE_DATA, default ../shared/data beside the repository."""
    return Path(os.environ.get("RNNEDGE_DATA", REPO.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections while the block runs. It stays bound here and never listens: a
    port merely found free could be taken meanwhile, even by the client under test, whose own ephemeral source
    port can equal it (TCP then connects to itself and the client reads its own packets)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI in this process; assert that it failed with exit 2 and one `rnnedge: error:` line; that line."""
    from edge_runtime.cli import main

    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnedge: error: ")
    return lines[0]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        pytest.fail("mosquitto is not installed: run 'make test' (it installs it) or apt-get install mosquitto")
    return found


@dataclass
class Mosquitto:
    """A real broker on a free loopback port; the test owns the process and may stop and restart it."""

    workdir: Path
    port: int
    process: subprocess.Popen | None = None
    persistent: bool = False  # keep sessions and queued messages across a restart (like a production broker)
    extra: tuple[str, ...] = ()  # more config lines, e.g. auth, ACL, TLS
    listener: tuple[str, ...] = ()  # options of this listener (TLS files)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", *self.listener, "log_dest stderr", "max_queued_messages 1000000"]
        # the default log types, and subscriptions, which `subscribed` looks for
        lines += [f"log_type {kind}" for kind in ("error", "warning", "notice", "information", "subscribe")]
        if self.persistent:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        lines += list(self.extra) or ["allow_anonymous true"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not start: {(self.workdir / 'mosquitto.log').read_text()}")

    def subscribed(self, topic_filter: str) -> bool:
        """Has some client subscribed to `topic_filter`? (mosquitto logs `<client> <qos> <filter>`.)"""
        log = (self.workdir / "mosquitto.log").read_text(errors="replace")
        return any(line.endswith(f" {topic_filter}") for line in log.splitlines())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path, free_port())
    broker.start()
    yield broker
    broker.stop()


@dataclass(frozen=True)
class TrainedBundle:
    csv: Path  # the rows the model was trained on (a slice of the shipped sample)
    run_dir: Path
    bundle_dir: Path


def write_rows(path: Path, first: int, count: int) -> Path:
    lines = SAMPLE.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "".join(lines[1 + first : 1 + first + count]))
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    """An LSTM-8 with a 2-step horizon trained for 2 epochs on 1,200 rows, exported: seconds, not minutes."""
    from export.bundle_export import export_bundle
    from trainer.train import TrainOptions, train

    root = tmp_path_factory.mktemp("tiny")
    csv = write_rows(root / "train.csv", 0, 1200)
    options = TrainOptions(
        csv, ("value",), (), None, cell="lstm", layers=(8,), window=16, horizon=2, epochs=2, quiet=True
    )
    train(options, root / "run")
    export_bundle(root / "run", root / "bundle")
    return TrainedBundle(csv, root / "run", root / "bundle")


def copy_bundle(bundle: TrainedBundle, destination: Path) -> Path:
    return Path(shutil.copytree(bundle.bundle_dir, destination))
