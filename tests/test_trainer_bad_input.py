"""Bad training input and impossible options: one line naming the problem, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import one_line_error
from trainer_fixtures import write_sensor_csv


def train_args(csv: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(csv), "--window", "16", "--epochs", "1", "--quiet", "--out", str(out), *extra]


MINUTES = "".join(f"2024-01-01 00:{i:02d}:00,{i % 7},{i % 3}\n" for i in range(60))


@pytest.mark.parametrize(
    ("content", "extra", "expected"),
    [
        (
            "timestamp,temp\n2024-01-01 00:00:00,1.5\n",
            (),
            "window 16 + horizon 1 needs 17 consecutive rows, but the data has 1 row",
        ),
        ("timestamp,temp\n" + "2024-01-01 00:00:00,\n" * 30, (), "column 'temp' has no values (every cell is empty)"),
        (
            "timestamp,temp\n2024-01-01 00:00:00,warm\n2024-01-01 00:01:00,cold\n",
            (),
            "line 2: column 'temp' holds 'warm', not a number",
        ),
        (
            "timestamp,temp,load\n" + MINUTES,
            ("--target", "pressure"),
            "no column 'pressure' (columns: timestamp, temp, load)",
        ),
        (
            "timestamp,temp,load\n" + MINUTES,
            ("--features", "temp,vibration"),
            "no column 'vibration' (columns: timestamp, temp, load)",
        ),
        (
            "timestamp,temp\n2024-01-01 00:00:00,1\n01/01/2024 00:01,2\n",
            (),
            "line 3: timestamp '01/01/2024 00:01' is not an ISO-8601 time like '2024-01-31 12:00:00'",
        ),
        ("timestamp,temp\n2024-01-01 00:00:00,1\n,2\n", (), "line 3: the timestamp ('timestamp') is empty"),
        (
            "timestamp,temp,load\n" + MINUTES,
            ("--window", "64"),
            "window 64 + horizon 1 needs 65 consecutive rows, but the data has 60",
        ),
        ("timestamp,temp,load\n" + MINUTES, ("--horizon", "50"), "window 16 + horizon 50 needs 66 consecutive rows"),
        (
            "timestamp,temp,load\n" + MINUTES,
            (),
            "60 rows are too few for window 16 + horizon 1: the 70/10/20 split needs at least 17 rows in each part",
        ),
        (
            "timestamp,temp\n" + "".join(f"2024-01-01 00:{i:02d}:00,7.5\n" for i in range(60)),
            (),
            "column 'temp' is constant",
        ),
    ],
    ids=[
        "one-row",
        "all-empty-target",
        "non-numeric-target",
        "unknown-target",
        "unknown-feature",
        "unparseable-timestamp",
        "empty-timestamp",
        "window-longer-than-data",
        "horizon-longer-than-data",
        "split-too-small",
        "constant-target",
    ],
)
def test_train_refuses_bad_data(content: str, extra: tuple[str, ...], expected: str, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text(content)
    argv = train_args(csv, tmp_path / "run", *extra)
    if "--target" not in extra:
        argv += ["--target", "temp"]
    assert expected in one_line_error(capsys, argv)
    assert not (tmp_path / "run").exists()


def test_gaps_that_leave_no_long_enough_stretch_are_named(tmp_path: Path, capsys) -> None:
    # 400 rows with a missing row every 12: each gap-free stretch is 11 rows, shorter than window + horizon
    csv = write_sensor_csv(tmp_path / "holes.csv", rows=400, drop_rows=tuple(range(0, 400, 12)))
    line = one_line_error(capsys, train_args(csv, tmp_path / "run", "--target", "temp", "--max-gap", "0"))
    assert (
        "no gap-free stretch of the training split holds the 17 rows window 16 + horizon 1 needs (longest: 11)" in line
    )
    assert "--max-gap" in line


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--bidirectional",), "layer 'rnn_0' (Bidirectional) cannot stream: a bidirectional layer also reads"),
        (("--units", "8", "8", "8", "8"), "--units takes 1 to 3 positive layer sizes, got [8, 8, 8, 8]"),
        (("--scaler", "robust"), "unknown scaler 'robust' (supported: zscore, minmax)"),
        (("--split", "0.8,0.3,0.1"), "--split needs three positive fractions that add up to 1"),
        (("--split", "most,some"), "--split 'most,some' is not three fractions"),
        (("--dropout", "1.5"), "dropout rates must be in [0, 1)"),
        (("--stride", "-2"), "--stride must be at least 1 row, got -2"),
        (("--learning-rate", "0"), "--learning-rate must be above 0, got 0.0"),
        (("--resample", "5 fortnights"), "interval '5 fortnights' is not understood"),
        (("--difference", "humidity"), "--difference names humidity, which are not inputs (temp)"),
        (("--time-column", "state"), "line 2: timestamp 'normal' is not"),
        (("--task", "classify"), "--task classify needs --label COLUMN"),
        (("--task", "regress"), "unknown task 'regress' (supported: forecast, classify)"),
        (
            ("--task", "classify", "--label", "state", "--features", "temp", "--positive", "broken"),
            "--positive 'broken' is not a class (classes: fault, normal)",
        ),
        (
            ("--task", "classify", "--label", "load", "--features", "temp"),
            "label column 'load' holds 297 distinct values: a class label has at most 50",
        ),
    ],
    ids=[
        "bidirectional",
        "four-layers",
        "scaler",
        "split-sum",
        "split-text",
        "dropout",
        "stride",
        "learning-rate",
        "resample",
        "difference",
        "bad-time-column",
        "classify-no-label",
        "task",
        "positive-not-a-class",
        "label-not-classes",
    ],
)
def test_train_refuses_impossible_options(extra: tuple[str, ...], expected: str, tmp_path: Path, capsys) -> None:
    csv = write_sensor_csv(tmp_path / "ok.csv", rows=300)
    line = one_line_error(capsys, train_args(csv, tmp_path / "run", "--target", "temp", *extra))
    assert expected in line


def test_label_with_a_single_class_is_refused(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "calm.csv"
    csv.write_text("timestamp,temp,state\n" + "".join(f"2024-01-01 00:{i:02d}:00,{i},ok\n" for i in range(60)))
    line = one_line_error(capsys, train_args(csv, tmp_path / "run", "--task", "classify", "--label", "state"))
    assert "label column 'state' holds 1 class(es): classification needs two or more" in line


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--mqtt", "http://x"], "broker URL 'http://x' is not of the form mqtt://HOST[:PORT]"),
        (["--mqtt", "mqtt://127.0.0.1:0"], "broker URL 'mqtt://127.0.0.1:0' has an invalid port (expected 1-65535)"),
        (["--mqtt", "mqtt://127.0.0.1:CLOSED"], "cannot reach the broker mqtt://127.0.0.1:CLOSED: Connection refused"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    ],
    ids=["scheme", "port-0", "unreachable", "epochs"],
)
def test_demo_checks_its_arguments_before_training(extra: list[str], expected: str, tmp_path: Path, capsys) -> None:
    from conftest import closed_port

    with closed_port() as port:
        extra = [a.replace("CLOSED", str(port)) for a in extra]
        line = one_line_error(capsys, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "1", *extra])
    assert expected.replace("CLOSED", str(port)) in line
    assert not (tmp_path / "demo").exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "missing.csv", "--target", "x", "--out", "d"], "missing.csv: no such file"),
        (["train", "data.csv", "--target", "nope", "--out", "d"], "data.csv: no column 'nope' (columns: t, value)"),
        (["train", "data.csv", "--target", "value", "--out", "data.csv"], "--out data.csv exists and is not a dir"),
        (["train", "data.csv", "--target", "value", "--out", "bundle"], "--out bundle is a bundle (it holds manifest"),
        (["sweep", "data.csv", "--target", "value", "--out", "data.csv"], "--out data.csv exists and is not a dir"),
        (["sweep", "missing.csv", "--target", "x", "--out", "d"], "missing.csv: no such file"),
        (["sweep", "data.csv", "--target", "value", "--cells", "lstm", "foo", "--out", "d"], "unknown cell 'foo'"),
        (["eval", "nab", "--data", "nab", "--out", "d", "--units", "0"], "--units 0: must be at least 1"),
        (["eval", "etth1", "--data", "ett", "--out", "d", "--horizons", "0"], "--horizons 0: must be at least 1"),
        (["export", "d", "--out", "b"], "d: not a run directory"),
        (["export", "d", "--out", "b", "--opset", "30"], "ONNX opset 30 is not supported (supported: 11-18)"),
        (["export", "d", "--out", "b", "--sign", "no.key"], "no.key: no such key file"),
        (["export", "d", "--out", "b", "--sign", "fleet.pub"], "fleet.pub: is a public key; signing needs"),
        (["export", "d", "--out", "b", "--sign", "data.csv"], "data.csv: not an unencrypted PEM private key"),
        (["export", "d", "--out", "b", "--formats", "tflit"], "unknown format 'tflit'"),
        (["export", "d", "--out", "b", "--sign", "bundle"], "bundle is a directory, not a key file"),
        (["train", "data.csv", "--target", "value", "--out", "data.csv/run"], "data.csv is a file, not a directory"),
        (["sweep", "data.csv", "--target", "value", "--out", "data.csv/s"], "data.csv is a file, not a directory"),
    ],
    ids=[
        "train-missing-csv",
        "train-missing-column",
        "train-out-is-a-file",
        "train-out-is-a-bundle",
        "sweep-out-is-a-file",
        "sweep-missing-csv",
        "sweep-bad-cell",
        "eval-nab-units",
        "eval-etth1-horizon",
        "export-no-run-dir",
        "export-opset",
        "export-missing-key",
        "export-public-key",
        "export-key-not-a-key",
        "export-format",
        "export-key-is-a-directory",
        "train-out-below-a-file",
        "sweep-out-below-a-file",
    ],
)
def test_a_user_error_is_the_only_line_on_stderr(argv: list[str], expected: str, tmp_path: Path) -> None:
    """In a fresh process: the mistake is found before TensorFlow is imported, so none of its notices precede it."""
    import subprocess

    from conftest import RNNEDGE

    from edge_runtime.signing import generate_keypair

    (tmp_path / "data.csv").write_text("t,value\n" + "".join(f"2024-01-01 00:{i:02d}:00,{i}\n" for i in range(60)))
    generate_keypair(tmp_path / "fleet")
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    result = subprocess.run([*RNNEDGE, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rnnedge: error: ") and expected in lines[0]
    assert not (tmp_path / "d").exists()
    assert [p.name for p in (tmp_path / "bundle").iterdir()] == ["manifest.json"]


def test_a_tensorflow_log_level_the_user_set_is_kept() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    code = "import os, trainer; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout == "0\n"
