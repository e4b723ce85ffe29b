"""The device config file: a value of the wrong shape or type is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.cli import main
from edge_runtime.config import build_config, load_config

SUBSCRIPTION = 'each source.subscriptions entry is { topic = "...", stream = "..." }, '


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("drift = 5", "[drift] must be a table, got 5"),
        ('anomaly = "x"', "[anomaly] must be a table, got 'x'"),
        ("[anomaly]\nstreams = 5", "[anomaly] streams must be a table, got 5"),
        ("[anomaly.streams]\nm1 = 5", "[anomaly.streams.m1] must be a table, got 5"),
        ('[anomaly]\nthreshold = "0.5"', "anomaly.threshold: expected a number, got '0.5'"),
        ("[anomaly]\nthreshold = true", "anomaly.threshold: expected a number, got True"),
        ("[anomaly.streams.m1]\nthreshold = [1]", "anomaly.streams.m1.threshold: expected a number, got [1]"),
        ('[drift]\npsi = "0.2"', "drift.psi: expected a number, got '0.2'"),
        ("[drift]\nwindow = { a = 1 }", "drift.window: expected an integer, got {'a': 1}"),
        ('source = "csv"', "[source] must be a table, got 'csv'"),
        ('[source]\nsubscriptions = [{ topic = "a", stream = 1 }]', SUBSCRIPTION + "got {'topic': 'a', 'stream': 1}"),
        ('[source]\npace = "fast"', "source.pace: expected a number, got 'fast'"),
        ("bundle = 5", "bundle: expected a path (string), got 5"),
        ("[runtime]\nmax_streams = 1.0", "runtime.max_streams: expected an integer, got 1.0"),
        ('[home_assistant]\nenabled = "yes"', "home_assistant.enabled: expected true or false, got 'yes'"),
    ],
)
def test_a_value_of_the_wrong_shape_names_file_and_key(tmp_path: Path, capsys, toml: str, expected: str) -> None:
    config = tmp_path / "device.toml"
    config.write_text(toml + "\n")
    status = main(["run", "--config", str(config)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert lines == [f"rnnedge: error: {config}: {expected}"]


def test_a_gap_factor_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "device.toml"
    config.write_text('bundle = "b"\n[source]\nkind = "stdin"\n[runtime]\ngap_factor = nan\n')
    with pytest.raises(Exception, match="gap_factor must be above 1, got nan"):
        build_config(load_config(config), {})


def test_numeric_anomaly_and_drift_tables_still_load(tmp_path: Path) -> None:
    config = tmp_path / "device.toml"
    config.write_text(
        'bundle = "b"\n[source]\nkind = "stdin"\n[anomaly]\nthreshold = 0.5\nrearm_below = 0.3\n'
        "[anomaly.streams.m1]\nthreshold = 0.7\n[drift]\nwindow = 500\npsi = 0.25\n"
    )
    settings = build_config(load_config(config), {})
    assert settings.anomaly_overrides() == {
        "m1": {"threshold": 0.7, "rearm_below": 0.3},
        "*": {"threshold": 0.5, "rearm_below": 0.3},
    }
    assert (settings.drift_window, settings.drift_limits) == (500, {"psi": 0.25})


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ('url = "mqtt://h:0"', "broker URL 'mqtt://h:0' has an invalid port (expected 1-65535)"),
        ('url = "mqtt://h"\nkeepalive = -1', "MQTT keepalive (mqtt.keepalive) must be 0-65535 seconds, got -1"),
        ('url = "mqtt://h"\nkeepalive = 70000', "MQTT keepalive (mqtt.keepalive) must be 0-65535 seconds, got 70000"),
        ('url = "mqtt://h"\nprotocol = "4"', "MQTT protocol '4' is not supported (supported: 3.1.1, 5)"),
    ],
    ids=["port-0", "negative-keepalive", "keepalive-beyond-16-bits", "protocol"],
)
def test_broker_settings_are_checked_before_the_bundle_is_loaded(
    tmp_path: Path, capsys, mqtt: str, expected: str
) -> None:
    config = tmp_path / "device.toml"
    config.write_text(f'bundle = "missing"\n[source]\nkind = "stdin"\n[mqtt]\n{mqtt}\n')
    assert main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err == f"rnnedge: error: {expected}\n"
