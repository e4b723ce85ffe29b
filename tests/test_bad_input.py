"""Bad input gives one line naming the problem and a non-zero exit, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import RNNEDGE, TrainedBundle, copy_bundle, write_rows

from edge_runtime.cli import main


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnedge: error: ")
    return lines[0]


def train_args(csv: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(csv),
        "--target",
        "value",
        "--window",
        "16",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("timestamp,value\n", "no data rows (only a header)"),
        ("timestamp,reading\n2024-01-01,1.0\n", "no column 'value' (columns: timestamp, reading)"),
        (
            "timestamp,value\n2024-01-01,1.0\n2024-01-02,hot\n",
            "line 3: column 'value' holds 'hot', not a number",
        ),
        (
            "timestamp,value\n2024-01-01,1.0\n2024-01-02,nan\n",
            "line 3: column 'value' holds 'nan', not a finite",
        ),
        (
            "timestamp,value\n" + "".join(f"2024-01-01 00:{i:02d},{i}\n" for i in range(60)),
            "60 rows are too few",
        ),
    ],
    ids=["empty", "header-only", "missing-column", "non-numeric", "nan", "too-few-rows"],
)
def test_train_rejects_bad_csv(content: str, expected: str, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text(content)
    assert expected in one_line_error(capsys, train_args(csv, tmp_path))
    assert not (tmp_path / "run").exists()


def test_train_rejects_constant_column(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "flat.csv"
    csv.write_text("timestamp,value\n" + "".join(f"t{i},5.0\n" for i in range(400)))
    assert "column 'value' is constant on the training split" in one_line_error(capsys, train_args(csv, tmp_path))


def test_train_rejects_unknown_cell(tmp_path: Path, capsys) -> None:
    csv = write_rows(tmp_path / "ok.csv", 0, 400)
    line = one_line_error(capsys, train_args(csv, tmp_path, "--cell", "transformer"))
    assert "unknown cell 'transformer' (supported: simplernn, lstm, gru)" in line


def test_train_cli_process_prints_no_traceback(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("timestamp,reading\n2024-01-01,1.0\n")
    result = subprocess.run([*RNNEDGE, *train_args(csv, tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"rnnedge: error: {csv}: no column 'value' (columns: timestamp, reading)"
    )


def test_export_rejects_a_directory_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    line = one_line_error(capsys, ["export", str(tmp_path), "--out", str(tmp_path / "bundle")])
    assert "not a run directory" in line


def run_args(bundle: Path, csv: Path) -> list[str]:
    return ["run", str(bundle), "--source", f"csv:{csv}"]


def test_run_rejects_bundle_with_missing_file(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    (bundle / "step.onnx").unlink()
    csv = write_rows(tmp_path / "rows.csv", 1200, 30)
    assert "file step.onnx listed in the manifest is missing" in one_line_error(capsys, run_args(bundle, csv))


def test_run_rejects_corrupted_bundle_file(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    data = bytearray((bundle / "step.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "step.onnx").write_bytes(bytes(data))
    csv = write_rows(tmp_path / "rows.csv", 1200, 30)
    line = one_line_error(capsys, run_args(bundle, csv))
    assert "file step.onnx is corrupted (sha256" in line


def test_run_rejects_damaged_manifest(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    (bundle / "manifest.json").write_text('{"schema": "rnnedge.bundle", "schema_version": 1}')
    csv = write_rows(tmp_path / "rows.csv", 1200, 30)
    assert "manifest.json: missing field 'model'" in one_line_error(capsys, run_args(bundle, csv))


def test_run_rejects_csv_without_the_model_columns(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "other.csv"
    csv.write_text("timestamp,pressure\n2024-01-01,1.0\n")
    assert "no column 'value' (columns: timestamp, pressure)" in one_line_error(
        capsys, run_args(tiny_bundle.bundle_dir, csv)
    )


def test_run_skips_bad_rows_and_keeps_streaming(tiny_bundle: TrainedBundle, tmp_path: Path, capsys, caplog) -> None:
    good = write_rows(tmp_path / "good.csv", 1200, 30).read_text().splitlines()
    bad = good[:10] + ["2014-01-01 00:00:00,broken", "2014-01-01 00:05:00,inf"] + good[10:]
    csv = tmp_path / "mixed.csv"
    csv.write_text("\n".join(bad) + "\n")
    assert main(run_args(tiny_bundle.bundle_dir, csv)) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 30 - 4  # every good row after warm-up still forecast
    assert "streamed 30 samples (2 refused), 26 forecasts" in captured.err
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused sample")]
    assert len(refusals) == 2
    assert "line 11" in refusals[0] and "'broken'" in refusals[0]


def test_run_rejects_unknown_source_kind(tiny_bundle: TrainedBundle, capsys) -> None:
    line = one_line_error(capsys, ["run", str(tiny_bundle.bundle_dir), "--source", "serial:/dev/ttyUSB0"])
    assert (
        "source 'serial:/dev/ttyUSB0' is not supported (supported: csv:PATH, stdin, mqtt:TOPIC_FILTER[=STREAM])" in line
    )


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (["csv:"], "source 'csv:': the csv source needs a file: --source csv:PATH"),
        (["mqtt:"], "source 'mqtt:': the mqtt source needs a topic filter: --source mqtt:FILTER[=STREAM]"),
        (["stdin:x"], "source 'stdin:x': the stdin source takes nothing after it: --source stdin"),
        (["csv:a.csv", "stdin"], "--source 'csv:a.csv' and --source 'stdin' cannot be combined: one run reads one"),
        (["mqtt:a/#", "csv:a.csv"], "--source 'mqtt:a/#' and --source 'csv:a.csv' cannot be combined"),
        (["csv:a.csv", "csv:b.csv"], "--source 'csv:a.csv' and --source 'csv:b.csv' cannot be combined"),
    ],
    ids=["csv-without-path", "mqtt-without-filter", "stdin-with-argument", "csv-and-stdin", "mqtt-and-csv", "two-csv"],
)
def test_run_refuses_an_incomplete_source_or_sources_that_do_not_combine(
    tmp_path: Path, capsys, sources: list[str], expected: str
) -> None:
    argv = ["run", str(tmp_path / "bundle")]
    for source in sources:
        argv += ["--source", source]
    assert expected in one_line_error(capsys, argv)


def test_several_mqtt_subscriptions_still_combine() -> None:
    from edge_runtime.config import Subscription, parse_sources

    assert parse_sources(["mqtt:a/+={1}", "mqtt:b"]) == {
        "source": "mqtt",
        "subscriptions": (Subscription("a/+", "{1}"), Subscription("b", "")),
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--formats", "onnx,coreml"], "unknown format 'coreml' (supported: onnx, tflite, numpy)"),
        (["--precision", "float16"], "unknown precision 'float16' (supported: float32, int8, int8-static)"),
        (["--opset", "19"], "ONNX opset 19 is not supported (supported: 11-18)"),
    ],
    ids=["format", "precision", "opset"],
)
def test_export_rejects_unsupported_choices(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, options: list[str], expected: str
) -> None:
    line = one_line_error(capsys, ["export", str(tiny_bundle.run_dir), "--out", str(tmp_path / "b"), *options])
    assert expected in line


def test_export_refuses_a_layer_that_cannot_stream(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    import keras

    run = Path(shutil.copytree(tiny_bundle.run_dir, tmp_path / "run"))
    inputs = keras.Input((None, 1))
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="rnn_0")(inputs)
    keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden)).save(run / "model.keras")
    line = one_line_error(capsys, ["export", str(run), "--out", str(tmp_path / "b")])
    assert "layer 'rnn_0' (Bidirectional) cannot stream" in line
    assert "depends on samples that have not arrived yet" in line


def test_export_refuses_to_overwrite_a_directory_that_is_not_a_bundle(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    line = one_line_error(capsys, ["export", str(tiny_bundle.run_dir), "--out", str(tmp_path)])
    assert "exists and is not a bundle" in line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_export_leaves_the_earlier_bundle_whole(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    from edge_runtime.bundle import load_bundle

    earlier = copy_bundle(tiny_bundle, tmp_path / "bundle")
    digest = load_bundle(earlier).digest
    run = Path(shutil.copytree(tiny_bundle.run_dir, tmp_path / "run"))
    (run / "splits.npz").unlink()
    line = one_line_error(capsys, ["export", str(run), "--out", str(earlier)])
    assert "splits.npz" in line
    assert load_bundle(earlier).digest == digest  # every file still there and matching its sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "run"]  # no staging directory left behind


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["keygen", "no/such/dir/fleet"], "no/such/dir/fleet.key: No such file or directory"),
        (["run", "BUNDLE", "--source", "csv:ROWS", "--mqtt", "mqtt://u:secret@[::1"], "is not of the form"),
        (["run", "BUNDLE", "--source", "csv:ROWS", "--topic-prefix", "plant/+/x", "--mqtt", "mqtt://h"], "plain MQTT"),
        (["run", "BUNDLE", "--source", "csv:ROWS", "--metrics-interval", "-1"], "metrics_interval must be"),
        (["run", "BUNDLE", "--source", "csv:ROWS", "--mqtt", "mqtt://u:secret@h:0"], "invalid port (expected 1-65535)"),
        (["run", "BUNDLE", "--source", "csv:ROWS", "--mqtt", "mqtts://h:65536"], "invalid port (expected 1-65535)"),
        (["deploy", "BUNDLE", "--to", "mqtt://127.0.0.1:1/plant/#"], "no wildcards, ? or #"),
        (["deploy", "BUNDLE", "--to", "ssh://[::1/x"], "expected ssh://"),
    ],
    ids=[
        "unwritable-key",
        "ipv6-url",
        "wildcard-prefix",
        "negative-interval",
        "port-0",
        "port-too-large",
        "hash-in-deploy-prefix",
        "ssh-ipv6",
    ],
)
def test_mistakes_in_paths_urls_and_settings_are_one_line(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, argv: list[str], expected: str
) -> None:
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    argv = [a.replace("BUNDLE", str(tiny_bundle.bundle_dir)).replace("ROWS", str(rows)) for a in argv]
    if argv[0] == "keygen":
        argv[1] = str(tmp_path / argv[1])
    line = one_line_error(capsys, argv)
    assert expected in line
    assert "secret" not in line


@pytest.mark.parametrize(
    ("url", "port"), [("mqtt://h", 1883), ("mqtts://h", 8883), ("mqtt://h:1", 1), ("mqtt://h:65535", 65535)]
)
def test_a_broker_url_without_a_port_takes_the_default_and_ports_1_to_65535_are_kept(url: str, port: int) -> None:
    from edge_runtime.mqtt_client import BrokerAddress

    assert BrokerAddress.parse(url).port == port


def test_a_bundle_whose_scaler_divides_by_zero_is_refused(tiny_bundle: TrainedBundle, tmp_path: Path, capsys) -> None:
    import json

    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["data"]["scaler"]["columns"]["value"]["std"] = 0.0
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rows = write_rows(tmp_path / "rows.csv", 1200, 30)
    line = one_line_error(capsys, ["run", str(bundle), "--source", f"csv:{rows}"])
    assert "scaler of 'value'" in line and "std above 0" in line
