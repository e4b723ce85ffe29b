"""The base install (what goes on a device) works without TensorFlow, and says which extra the rest needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TrainedBundle, write_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "-c", str(REPO / "constraints.txt"), str(REPO)],
        check=True,
        timeout=900,
    )
    return venv


def test_base_install_has_no_training_stack(base_venv: Path) -> None:
    for module in ("tensorflow", "keras", "tf2onnx"):
        probe = subprocess.run([str(base_venv / "bin" / "python"), "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, f"{module} is importable in the base install"


def test_help_lists_every_command(base_venv: Path) -> None:
    result = subprocess.run([str(base_venv / "bin" / "rnnedge"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in (
        "train",
        "export",
        "run",
        "parity",
        "demo",
        "keygen",
        "deploy",
        "rollback",
        "device",
        "bench",
        "eval",
    ):
        assert f"    {command} " in result.stdout


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("train", ["train", "x.csv", "--target", "value", "--out", "r"]),
        ("export", ["export", "r", "--out", "b"]),
        ("eval nab", ["eval", "nab", "--data", "d", "--out", "o"]),
        ("eval etth1", ["eval", "etth1", "--data", "d", "--out", "o"]),
    ],
)
def test_training_commands_name_the_missing_extra(base_venv: Path, name: str, command: list[str]) -> None:
    result = subprocess.run([str(base_venv / "bin" / "rnnedge"), *command], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (
        f"rnnedge: error: 'rnnedge {name}' needs the 'train' extra "
        "(tensorflow, keras, tf2onnx, onnx not installed): pip install 'rnnedge[train]'\n"
    )


def test_run_and_parity_work_in_the_base_install(base_venv: Path, tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    rnnedge = str(base_venv / "bin" / "rnnedge")
    csv = write_rows(tmp_path / "rows.csv", 1200, 100)
    run = subprocess.run(
        [rnnedge, "run", str(tiny_bundle.bundle_dir), "--source", f"csv:{csv}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 100 - 4
    parity = subprocess.run([rnnedge, "parity", str(tiny_bundle.bundle_dir)], capture_output=True, text=True)
    assert parity.returncode == 0, parity.stderr
    assert "parity passed" in parity.stdout
