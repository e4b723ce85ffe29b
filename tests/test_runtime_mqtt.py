"""The runtime against a real mosquitto: broker restarts, SIGKILL, SIGTERM, auth, TLS, ACL, and random payloads."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import RNNEDGE, Mosquitto, TrainedBundle, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import Recorder

from edge_runtime.activation import BundleStore
from edge_runtime.spool import Spool

pytestmark = pytest.mark.slow
WARMUP = 4  # the tiny bundle: window 16 // 4


def synthetic_csv(path: Path, rows: int) -> Path:
    """One row per second, a slow wave with noise around the tiny model's training range."""
    lines = ["timestamp,value"]
    for i in range(rows):
        lines.append(f"{1_700_000_000 + i},{80 + 5 * math.sin(i / 50) + 0.3 * math.sin(i * 1.7):.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_args(bundle: Path, *extra: str) -> list[str]:
    return [*RNNEDGE, "run", str(bundle), "--topic-prefix", "plant", "--metrics-interval", "1", *extra]


def forecast_seqs(recorder: Recorder, boot: int | None = None) -> list[int]:
    messages = recorder.json_on("/forecast/wave")
    return [m["seq"] for m in messages if boot is None or m["boot"] == boot]


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


STREAMED = 20_000
EXPECTED = STREAMED - WARMUP


def stream_while(
    tiny_bundle: TrainedBundle, tmp_path: Path, broker: Mosquitto, recorder_port: int, mqtt_args: tuple, disturb
) -> Recorder:
    """Replay 20,000 rows at 2,500/s through `rnnedge run` (broker options `mqtt_args`) while `disturb(broker)`
    runs; the run must end well, and the recorder (a durable session on `recorder_port`) must then hold every
    forecast. Returns the recorder, closed."""
    recorder = Recorder(recorder_port, "plant/#", durable=True)
    csv = synthetic_csv(tmp_path / "wave.csv", STREAMED)
    runtime = subprocess.Popen(
        run_args(
            tiny_bundle.bundle_dir,
            *("--source", f"csv:{csv}", "--pace", "2500", *mqtt_args),
            *("--spool", str(tmp_path / "spool"), "--drain-timeout", "60"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: forecast_seqs(recorder), 30)  # connected and forecasting: now disturb it
        disturb(broker)
        _, stderr = runtime.communicate(timeout=180)
        assert runtime.returncode == 0, stderr
        assert wait_until(lambda: len(set(forecast_seqs(recorder))) >= EXPECTED, 60)
        recorder.settle()
    finally:
        runtime.kill()
        recorder.close()
        broker.process.send_signal(signal.SIGCONT)  # a frozen broker must run again to stop
        broker.stop()
    seqs = forecast_seqs(recorder)
    assert sorted(set(seqs)) == list(range(EXPECTED))  # after deduplication: every forecast, none missing
    assert len(seqs) >= EXPECTED  # duplicates are allowed (QoS 1), losses are not
    return recorder


def reconnects(recorder: Recorder) -> int:
    """The runtime's reconnection count, from the last of its metrics messages (the totals of the run)."""
    return max(m["mqtt"]["reconnects"] for m in recorder.json_on("/metrics"))


def restart_three_times(broker: Mosquitto) -> None:
    for _ in range(3):
        time.sleep(1.5)
        broker.stop()
        time.sleep(0.5)
        broker.start()


def persistent_broker(tmp_path: Path, **options) -> Mosquitto:
    broker = Mosquitto(tmp_path / "broker", free_port(), persistent=True, **options)
    broker.workdir.mkdir()
    broker.start()
    return broker


def test_three_broker_restarts_in_a_20000_sample_stream_lose_nothing(
    tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    broker = persistent_broker(tmp_path)
    recorder = stream_while(tiny_bundle, tmp_path, broker, broker.port, ("--mqtt", broker.url), restart_three_times)
    assert reconnects(recorder) >= 3


def test_three_restarts_of_a_tls_broker_speaking_mqtt5_lose_nothing(
    tiny_bundle: TrainedBundle, tmp_path: Path, secured
) -> None:
    """The same over TLS with MQTT 5: the reconnection's TLS handshake runs in the connecting thread, and reads
    must also drain what TLS already decrypted (select does not see it). The recorder uses the plain listener,
    the first one, which `start` waits for; the runtime retries until the TLS one is up."""
    tls_port = free_port()
    tls = (f"listener {tls_port} 127.0.0.1", f"cafile {secured['ca']}", f"certfile {secured['cert']}")
    broker = persistent_broker(tmp_path, extra=("allow_anonymous true", *tls, f"keyfile {secured['key']}"))
    config = config_file(tmp_path, f"mqtts://127.0.0.1:{tls_port}", ca_file=str(secured["ca"]), protocol="5")
    recorder = stream_while(tiny_bundle, tmp_path, broker, broker.port, ("--config", str(config)), restart_three_times)
    assert reconnects(recorder) >= 3


def test_a_frozen_broker_is_noticed_by_keepalive_and_nothing_is_lost(
    tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    """The broker stops answering without closing the connection (SIGSTOP: the kernel still accepts connections for
    it): the keepalive, kept by the runtime's own loop, must notice, reconnect and deliver everything."""
    broker = persistent_broker(tmp_path)
    config = tmp_path / "device.toml"
    config.write_text(f'[mqtt]\nurl = "{broker.url}"\nkeepalive = 2\n')

    def freeze(broker: Mosquitto) -> None:
        time.sleep(2.0)
        broker.process.send_signal(signal.SIGSTOP)
        time.sleep(7.0)
        broker.process.send_signal(signal.SIGCONT)

    recorder = stream_while(tiny_bundle, tmp_path, broker, broker.port, ("--config", str(config)), freeze)
    # the freeze was noticed (the runtime's own metrics said so); everything arrived, so it connected again (the
    # replay ends during the freeze: the run's last metrics message, its totals, is made while disconnected)
    assert any(m["mqtt"]["connected"] is False for m in recorder.json_on("/metrics"))


@pytest.mark.parametrize("transport", ["mqtt-3.1.1", "mqtts-5"])
def test_sigkill_mid_stream_then_restart_delivers_the_spooled_forecasts(
    tiny_bundle: TrainedBundle, tmp_path: Path, secured, transport: str
) -> None:
    if transport == "mqtts-5":  # the runtime on a TLS listener with MQTT 5; the recorder on the plain one
        tls_port = free_port()
        tls = (f"listener {tls_port} 127.0.0.1", f"cafile {secured['ca']}", f"certfile {secured['cert']}")
        broker = persistent_broker(tmp_path, extra=("allow_anonymous true", *tls, f"keyfile {secured['key']}"))
        url = f"mqtts://127.0.0.1:{tls_port}"
        config = config_file(tmp_path, url, ca_file=str(secured["ca"]), protocol="5")
        connection = ("--config", str(config))
    else:
        broker = persistent_broker(tmp_path)
        connection = ("--mqtt", broker.url)
    recorder = Recorder(broker.port, "plant/forecast/#", durable=True)
    csv = synthetic_csv(tmp_path / "wave.csv", 6_000)
    spool_path = tmp_path / "spool"
    first = subprocess.Popen(
        run_args(
            tiny_bundle.bundle_dir,
            "--source",
            f"csv:{csv}",
            "--pace",
            "1000",
            *connection,
            "--spool",
            str(spool_path),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: len(forecast_seqs(recorder)) > 100, 30)
        broker.stop()  # from now on forecasts can only go to the spool
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with Spool.open(spool_path, 64 * 1024 * 1024) as spool:
            stranded = spool.stats().messages
        assert stranded > 100
        broker.start()
        empty = tmp_path / "empty.csv"
        empty.write_text("timestamp,value\n")
        second = subprocess.run(
            run_args(tiny_bundle.bundle_dir, "--source", f"csv:{empty}", *connection, "--spool", str(spool_path)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 0, second.stderr
        with Spool.open(spool_path, 64 * 1024 * 1024) as spool:
            assert spool.stats().messages == 0
        boots = {m["boot"] for m in recorder.json_on("/forecast/wave")}
        assert len(boots) == 1
        # the durable recorder reconnects by itself and gets what the broker queued for it meanwhile
        assert wait_until(lambda: len(set(forecast_seqs(recorder))) >= stranded, 30)
        recorder.settle(1.0)
    finally:
        first.kill()
        recorder.close()
        broker.stop()
    seqs = sorted(set(forecast_seqs(recorder)))
    assert seqs == list(range(len(seqs)))  # what the killed run made arrived, with no gap
    assert len(seqs) >= stranded


def publish(port: int, messages: list[tuple[str, str | bytes]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"producer-{os.getpid()}-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def start_mqtt_source_run(bundle: Path, broker: Mosquitto, spool: Path, *extra: str) -> subprocess.Popen:
    """`rnnedge run` reading `in/<stream>/value` from `broker`, returned once the broker has its subscription:
    samples published before it would be lost."""
    runtime = subprocess.Popen(
        [*RNNEDGE, "run", str(bundle), "--source", "mqtt:in/+/value={1}", "--mqtt", broker.url, "--spool", str(spool),
         *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    if not wait_until(lambda: broker.subscribed("in/+/value") or runtime.poll() is not None, 20) or runtime.poll():
        runtime.kill()
        raise AssertionError(f"the runtime did not subscribe: {runtime.communicate()[1]}")
    return runtime


def good_samples(start: int, count: int) -> list[tuple[str, str]]:
    return [
        ("in/wave/value", json.dumps({"ts": 1_700_000_000 + i, "value": 80 + 5 * math.sin(i / 50)}))
        for i in range(start, start + count)
    ]


def test_mqtt_source_survives_random_payloads_and_sigterm_publishes_offline(
    tiny_bundle: TrainedBundle, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    recorder = Recorder(mosquitto.port, "plant/#")
    runtime = start_mqtt_source_run(
        tiny_bundle.bundle_dir, mosquitto, tmp_path / "spool", "--topic-prefix", "plant", "--max-streams", "50"
    )
    try:
        assert wait_until(
            lambda: (
                ("plant/status", b"online", True) in recorder.messages
                or any(t == "plant/status" and p == b"online" for t, p, _ in recorder.messages)
            ),
            20,
        )
        publish(mosquitto.port, good_samples(0, 100))
        assert wait_until(lambda: len(forecast_seqs(recorder)) >= 100 - WARMUP, 20)

        junk = st.one_of(
            st.binary(max_size=300),
            st.text(max_size=200).map(str.encode),
            st.recursive(
                st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                max_leaves=10,
            ).map(lambda value: json.dumps(value).encode()),
            st.fixed_dictionaries({"ts": st.text(max_size=30), "value": st.floats()}).map(
                lambda d: json.dumps(d).encode()
            ),
        )
        sent = []

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(payload=junk, topic=st.sampled_from(["in/junk/value", "in/other/value", "in/third/value"]))
        def throw(payload: bytes, topic: str) -> None:
            sent.append((topic, payload))

        throw()
        publish(mosquitto.port, sent)
        publish(mosquitto.port, good_samples(100, 100))
        assert wait_until(lambda: max(forecast_seqs(recorder), default=-1) >= 200 - WARMUP - 1, 30)
        assert runtime.poll() is None, runtime.stderr.read()

        runtime.send_signal(signal.SIGTERM)
        _, stderr = runtime.communicate(timeout=60)
        assert runtime.returncode == 0, stderr
        assert wait_until(lambda: any(t == "plant/status" and p == b"offline" for t, p, _ in recorder.messages), 10)
        recorder.settle()
    finally:
        runtime.kill()
        recorder.close()
    seqs = forecast_seqs(recorder)
    assert sorted(set(seqs)) == list(range(len(set(seqs))))
    assert len(set(seqs)) == 200 - WARMUP  # every good sample of the good stream was forecast
    metrics = recorder.json_on("/metrics")
    assert metrics and metrics[-1]["refused_total"] > 0
    assert metrics[-1]["streams"]["wave"]["drift"] is not None
    assert "refused sample" in stderr


@pytest.fixture
def secured(tmp_path: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, a password file and an ACL, made with the real tools."""
    d = tmp_path / "pki"
    d.mkdir()

    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, cwd=d)

    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    run("mosquitto_passwd", "-c", "-b", str(d / "passwords"), "edge", "s3cret-pass")
    (d / "acl").write_text("user edge\ntopic readwrite plant/#\n")
    (d / "strict-acl").write_text("user edge\ntopic write plant/status\ntopic write plant/metrics\n")
    return {
        "dir": d,
        "ca": d / "ca.pem",
        "cert": d / "server.pem",
        "key": d / "server.key",
        "passwords": d / "passwords",
        "acl": d / "acl",
        "strict-acl": d / "strict-acl",
    }


def auth_broker(tmp_path: Path, secured: dict[str, Path], tls: bool, acl: str = "acl") -> Mosquitto:
    listener = (f"cafile {secured['ca']}", f"certfile {secured['cert']}", f"keyfile {secured['key']}") if tls else ()
    extra = ("allow_anonymous false", f"password_file {secured['passwords']}", f"acl_file {secured[acl]}")
    broker = Mosquitto(tmp_path / ("tls" if tls else "plain"), free_port(), extra=extra, listener=listener)
    broker.workdir.mkdir()
    broker.start()
    return broker


def config_file(tmp_path: Path, url: str, **mqtt_keys: str) -> Path:
    lines = ["[mqtt]", f'url = "{url}"', *(f'{key} = "{value}"' for key, value in mqtt_keys.items())]
    path = tmp_path / f"device-{time.time_ns()}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_secured(
    tiny_bundle: TrainedBundle, tmp_path: Path, config: Path, *extra: str, bundle: Path | None = None
) -> subprocess.CompletedProcess:
    csv = synthetic_csv(tmp_path / "wave.csv", 30)
    return subprocess.run(
        run_args(
            bundle or tiny_bundle.bundle_dir,
            "--config",
            str(config),
            "--source",
            f"csv:{csv}",
            "--drain-timeout",
            "3",
            "--spool",
            str(tmp_path / f"spool-{time.time_ns()}"),
            *extra,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_wrong_password_is_refused_and_never_shown(tiny_bundle: TrainedBundle, tmp_path: Path, secured) -> None:
    broker = auth_broker(tmp_path, secured, tls=False)
    try:
        (tmp_path / "wrong").write_text("not-the-password\n")
        result = run_secured(
            tiny_bundle,
            tmp_path,
            config_file(tmp_path, broker.url, username="edge", password_file=str(tmp_path / "wrong")),
        )
        assert result.returncode == 2
        assert "the broker refused the connection: Not authorized" in result.stderr
        assert "not-the-password" not in result.stderr
    finally:
        broker.stop()


def test_tls_needs_the_ca_and_works_with_it(tiny_bundle: TrainedBundle, tmp_path: Path, secured) -> None:
    broker = auth_broker(tmp_path, secured, tls=True)
    url = f"mqtts://127.0.0.1:{broker.port}"
    (tmp_path / "right").write_text("s3cret-pass\n")
    try:
        no_ca = run_secured(
            tiny_bundle, tmp_path, config_file(tmp_path, url, username="edge", password_file=str(tmp_path / "right"))
        )
        assert no_ca.returncode == 2
        assert "TLS certificate verification failed" in no_ca.stderr
        with_ca = run_secured(
            tiny_bundle,
            tmp_path,
            config_file(
                tmp_path, url, username="edge", password_file=str(tmp_path / "right"), ca_file=str(secured["ca"])
            ),
        )
        assert with_ca.returncode == 0, with_ca.stderr
        assert "26 forecasts" in with_ca.stderr
        assert "s3cret-pass" not in no_ca.stderr + with_ca.stderr
    finally:
        broker.stop()


def test_acl_denied_publishes_are_counted_and_reported_with_mqtt5(
    tiny_bundle: TrainedBundle, tmp_path: Path, secured
) -> None:
    broker = auth_broker(tmp_path, secured, tls=False, acl="strict-acl")
    (tmp_path / "right").write_text("s3cret-pass\n")
    store = BundleStore(tmp_path / "bundles", None, keep=3)  # run from a store: probation applies
    store.activate(tiny_bundle.bundle_dir)
    try:
        config = config_file(tmp_path, broker.url, username="edge", password_file=str(tmp_path / "right"), protocol="5")
        # paced, so that the loop turns while the broker answers (refusals, metrics acknowledged)
        result = run_secured(tiny_bundle, tmp_path, config, "--pace", "15", bundle=store.root / "current")
        assert result.returncode == 0, result.stderr
        # the ACL lets the status and metrics through and denies every forecast topic
        assert "the broker refused 26 publishes (check its ACL)" in result.stderr
        # so no forecast was published: the bundle is not confirmed (metrics went through, they do not count;
        # test_deploy_mqtt's end-to-end test is the counterpart where forecasts go through and confirm)
        assert not (store.root / "confirmed").exists()
    finally:
        broker.stop()
