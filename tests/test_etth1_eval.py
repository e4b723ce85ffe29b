"""`rnnedge eval etth1` at tiny size: the protocol's windowing pinned by the published persistence scores, the
closed-form linear reference, and the trained model scored both per window and streamed through the runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import data_dir

from edge_runtime.errors import InputError
from trainer.evaluation.cli import add_eval_commands

pytestmark = pytest.mark.slow


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rnnedge")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def etth1_dir() -> Path:
    path = data_dir() / "ett"
    if not (path / "ETTh1.csv").is_file():
        pytest.skip(f"ETTh1 not found at {path} (set RNNEDGE_DATA to the shared data directory)")
    return path


def test_one_tiny_model_at_horizon_24(tmp_path: Path) -> None:
    argv = ["eval", "etth1", "--data", str(etth1_dir()), "--out", str(tmp_path), "--horizons", "24"]
    assert cli(*argv, "--seeds", "0", "--units", "4", "--epochs", "1", "--quiet") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (horizon,) = summary["horizons"]
    run = horizon["chosen_by_validation"]
    assert run["horizon"] == 24 and run["windows"] == 2880 - 24 + 1
    # the published persistence figures, to their 4 decimals: the windowing is right
    assert run["persistence"]["mse"] == pytest.approx(0.0343, abs=5e-5)
    assert run["persistence"]["mae"] == pytest.approx(0.1394, abs=5e-5)
    assert run["linear_reference"]["mse"] == pytest.approx(0.0264, abs=2e-4)
    persistence = run["persistence"]["mse"]
    for kind in ("protocol", "device"):  # differenced input, relative output: even one epoch is near persistence
        assert 0.5 * persistence < run[kind]["mse"] < 2 * persistence
    assert run["onnx_step_bytes"] > 0 and run["parameters"] > 0
    markdown = (tmp_path / "summary.md").read_text()
    assert "| 24 | 0 |" in markdown and "DLinear 0.056 / 0.18" in markdown


def test_a_file_that_is_not_etth1_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "ETTh1.csv"
    wrong.write_text("date,HUFL\n2016-07-01 00:00:00,5.8\n")
    with pytest.raises(InputError, match="no OT column"):
        cli("eval", "etth1", "--data", str(tmp_path), "--out", str(tmp_path / "out"))
    with pytest.raises(InputError, match="no such file"):
        cli("eval", "etth1", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out"))
