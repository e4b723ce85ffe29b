"""Deploys over MQTT through a real mosquitto: the runtime's listener (a real SpooledPublisher and a real bundle
store) and the workstation's `deploy_over_mqtt`; signed, unsigned, tampered and malformed commands."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Mosquitto, TrainedBundle, closed_port, one_line_error
from mqtt_helpers import Recorder
from test_devices_common import bundle_variant
from test_devices_store import parity_breaking_copy

from edge_runtime.activation import BundleStore
from edge_runtime.backends import open_step_backend
from edge_runtime.bundle import Bundle, load_bundle, write_bundle
from edge_runtime.deploy_ssh import RemoteFailed, bundle_tar
from edge_runtime.errors import RnnedgeError
from edge_runtime.mqtt_client import MqttSettings
from edge_runtime.mqtt_deploy import (
    MAX_COMMAND_BYTES,
    MAX_PENDING,
    DeployListener,
    deploy_over_mqtt,
    pack_command,
    split_target,
)
from edge_runtime.mqtt_publisher import SpooledPublisher
from edge_runtime.signing import generate_keypair
from edge_runtime.spool import Spool

PREFIX = "plant/pi4"


@dataclass(frozen=True)
class Fleet:
    public_key: Path
    running: Bundle  # what every device runs before a test deploys
    signed: Bundle  # a new version, signed by the fleet key
    unsigned: Bundle
    other_key: Bundle  # signed, by a key the device does not trust
    edited: Path  # signed, then its manifest edited
    corrupted: Path  # signed, then a model file changed
    parity_broken: Path  # signed, but its golden outputs disagree with its model


@pytest.fixture(scope="module")
def fleet(tiny_bundle: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root = tmp_path_factory.mktemp("fleet")
    private, public = generate_keypair(root / "fleet")
    other, _ = generate_keypair(root / "other")
    source = tiny_bundle.bundle_dir
    edited = bundle_variant(source, root / "edited", "edited", private)
    write_bundle(edited.path, replace(edited.manifest, warmup_steps=1))
    corrupted = bundle_variant(source, root / "corrupted", "corrupted", private).path
    model = corrupted / "step.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    parity_breaking_copy(source, root / "parity", private)
    return Fleet(
        public,
        bundle_variant(source, root / "running", "running", private),
        bundle_variant(source, root / "signed", "signed", private),
        bundle_variant(source, root / "unsigned", "unsigned"),
        bundle_variant(source, root / "other", "other", other),
        edited.path,
        corrupted,
        root / "parity",
    )


class Runtime:
    """The runtime's part in a swap: load the new version with the configured artifact, or fail."""

    def __init__(self, key: Path | None, precision: str) -> None:
        self.key = key
        self.precision = precision
        self.running: list[str] = []  # digests switched to

    def switch(self, path: Path) -> None:
        bundle = load_bundle(path, self.key)
        open_step_backend(bundle, bundle.manifest.artifact("onnx", self.precision))
        self.running.append(bundle.digest)


@dataclass
class Device:
    store: BundleStore
    runtime: Runtime
    listener: DeployListener
    publisher: SpooledPublisher
    results: Recorder
    switched: list[Path]  # what poll() returned

    def current(self) -> str:
        return os.readlink(self.store.root / "current")

    def poll_until(self, done, timeout: float = 60.0) -> None:
        """The runtime's main loop, as far as deploys are concerned."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.publisher.pump()  # the network I/O: receives the command, sends the result
            if (path := self.listener.poll()) is not None:
                self.switched.append(path)
            time.sleep(0.01)
        if (path := self.listener.poll()) is not None:
            self.switched.append(path)

    def deploy(self, bundle_dir: Path, broker: str, timeout: float = 60.0) -> dict:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(deploy_over_mqtt, bundle_dir, broker, PREFIX, timeout)
            self.poll_until(future.done, timeout + 5)
            return future.result()

    def published(self) -> list[dict]:
        return self.results.json_on("/deploy/result")


@contextmanager
def make_device(
    broker: Mosquitto, root: Path, fleet: Fleet, key: Path | None, precision: str = "float32"
) -> Iterator[Device]:
    store = BundleStore(root / "bundles", key, keep=3)
    store.activate(fleet.running.path)
    spool = Spool.open(root / "device.spool", 1 << 20)
    publisher = SpooledPublisher(MqttSettings(broker.url), "device-pi4", f"{PREFIX}/status", spool)
    runtime = Runtime(key, precision)
    listener = DeployListener(
        store,
        publisher.publish_now,
        PREFIX,
        runtime.switch,
    )
    publisher.subscriptions[listener.topic] = listener.on_message
    results = Recorder(broker.port, f"{PREFIX}/deploy/result")
    try:
        publisher.start(wait=10)
        assert publisher.connected
        yield Device(store, runtime, listener, publisher, results, [])
    finally:
        listener.close()
        results.close()
        publisher.close(drain_timeout=1)
        spool.close()


@pytest.fixture
def device(mosquitto: Mosquitto, tmp_path: Path, fleet: Fleet) -> Iterator[Device]:
    with make_device(mosquitto, tmp_path, fleet, fleet.public_key) as device:
        yield device


def test_a_signed_bundle_is_activated_and_the_runtime_switches_to_it(
    device: Device, fleet: Fleet, mosquitto: Mosquitto
) -> None:
    result = device.deploy(fleet.signed.path, mosquitto.url)
    assert result["ok"] is True and result["changed"] is True and result["exit_code"] == 0
    assert result["digest"] == fleet.signed.digest and result["previous"] == fleet.running.digest
    assert result["request"] == hashlib.sha256(pack_command(fleet.signed.path)).hexdigest()
    assert "parity passed" in result["parity"] and result["reason"] is None
    assert device.current() == fleet.signed.digest[:12]
    assert device.runtime.running == [fleet.signed.digest]
    assert device.switched == [device.store.root / fleet.signed.digest[:12]]
    device.results.wait_for(1, timeout=10)
    assert device.published() == [result]

    again = device.deploy(fleet.signed.path, mosquitto.url)  # the same bundle again: nothing to switch
    assert again["ok"] is True and again["changed"] is False
    assert device.runtime.running == [fleet.signed.digest] and len(device.switched) == 1
    assert [v.digest for v in device.store.status().versions] == [fleet.running.digest, fleet.signed.digest]


@pytest.mark.parametrize(
    ("case", "reason", "exit_code"),
    [
        ("unsigned", r"the bundle is not signed \(manifest\.sig missing\) and a key is required", 2),
        ("other_key", r"signed by key [0-9a-f]+, not by the trusted key", 2),
        ("edited", r"the signature does not match manifest\.json \(tampered after signing\)", 2),
        ("corrupted", r"file step\.onnx is corrupted", 2),
        ("parity_broken", r"parity gate on this device: parity FAILED", 1),
    ],
)
def test_a_refused_bundle_is_reported_and_the_running_model_is_untouched(
    device: Device, fleet: Fleet, mosquitto: Mosquitto, case: str, reason: str, exit_code: int
) -> None:
    bad = getattr(fleet, case)
    with pytest.raises(RemoteFailed, match=f"^{PREFIX}: .*{reason}") as refused:
        device.deploy(bad if isinstance(bad, Path) else bad.path, mosquitto.url)
    assert refused.value.exit_code == exit_code
    device.results.wait_for(1, timeout=10)
    [published] = device.published()
    assert published["ok"] is False and published["exit_code"] == exit_code and published["digest"] is None
    assert f"{PREFIX}: {published['reason']}" == str(refused.value)
    assert device.current() == fleet.running.digest[:12]
    assert [v.digest for v in device.store.status().versions] == [fleet.running.digest]
    assert device.runtime.running == [] and device.switched == []
    assert sorted(p.name for p in device.store.root.iterdir() if p.name.startswith(".staging-")) == []


def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (MAX_COMMAND_BYTES + 1024), mtime=0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not a bundle at all", r"^the upload is not a readable tar stream"),
        (gzip.compress(b"hello", mtime=0), r"^the upload is not a readable tar stream"),
        ("truncated gzip", r"^the command is not a readable gzip stream"),
        (b"", r"^the upload is not a readable tar stream \(empty file\)"),
        ("bomb", r"^the command unpacks to more than the 8 MiB limit of a deploy command: refused$"),
        (b"\0" * (MAX_COMMAND_BYTES + 1), r"^the command is 8388609 bytes, over the 8 MiB limit"),
    ],
    ids=["text", "gzip-text", "truncated-gzip", "empty", "gzip-bomb", "too-large"],
)
def test_a_command_that_is_not_a_bundle_is_refused(
    device: Device, fleet: Fleet, mosquitto: Mosquitto, payload: bytes | str, reason: str
) -> None:
    if payload == "truncated gzip":
        payload = pack_command(fleet.signed.path)[:-100]
    elif payload == "bomb":
        payload = gzip_bomb()
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-sender")
    sender.connect("127.0.0.1", mosquitto.port)
    sender.loop_start()
    sender.publish(device.listener.topic, payload, qos=1).wait_for_publish(10)
    device.poll_until(lambda: device.published(), timeout=30)
    sender.disconnect()
    sender.loop_stop()
    [published] = device.published()
    assert published["ok"] is False and published["exit_code"] == 2
    assert published["request"] == hashlib.sha256(payload).hexdigest()
    assert re.search(reason, published["reason"]), published["reason"]
    assert device.current() == fleet.running.digest[:12] and device.runtime.running == []


def test_a_plain_tar_is_accepted_too(device: Device, fleet: Fleet) -> None:
    device.listener.on_message(bundle_tar(fleet.signed.path))
    device.poll_until(lambda: device.published(), timeout=30)
    [published] = device.published()
    assert published["ok"] is True and published["digest"] == fleet.signed.digest
    assert device.runtime.running == [fleet.signed.digest]


def test_a_bundle_the_runtime_cannot_run_is_rolled_back(mosquitto: Mosquitto, tmp_path: Path, fleet: Fleet) -> None:
    """The runtime is configured for int8-static, which the new bundle lacks: the store goes back to what runs."""
    with make_device(mosquitto, tmp_path, fleet, fleet.public_key, precision="int8-static") as device:
        version = fleet.signed.digest[:12]
        with pytest.raises(RemoteFailed) as failed:
            device.deploy(fleet.signed.path, mosquitto.url)
        assert re.fullmatch(
            rf"{PREFIX}: the runtime cannot run {version}: the bundle has no step model in onnx/int8-static "
            rf"\(it has: [^)]+\); rolled back to {fleet.running.digest[:12]}",
            str(failed.value),
        ), str(failed.value)
        device.results.wait_for(1, timeout=10)
        [published] = device.published()
        assert published["ok"] is False and published["digest"] == fleet.signed.digest
        assert published["previous"] == fleet.running.digest
        assert device.current() == fleet.running.digest[:12]
        assert [v.digest for v in device.store.status().versions] == [fleet.running.digest]
        assert device.switched == []


def test_without_a_trusted_key_every_deploy_over_mqtt_is_refused(
    mosquitto: Mosquitto, tmp_path: Path, fleet: Fleet
) -> None:
    with make_device(mosquitto, tmp_path, fleet, None) as device:
        with pytest.raises(RemoteFailed, match="this device trusts no signing key .verify_key in its config."):
            device.deploy(fleet.signed.path, mosquitto.url)
        assert device.current() == fleet.running.digest[:12] and device.runtime.running == []


def test_commands_beyond_the_queue_are_refused_not_buffered(device: Device, fleet: Fleet) -> None:
    payload = pack_command(fleet.signed.path)
    sent = MAX_PENDING + 3
    for _ in range(sent):  # faster than any activation: the worker holds one, the queue MAX_PENDING
        device.listener.on_message(payload)
    device.poll_until(lambda: len(device.published()) == sent, timeout=60)
    published = device.published()
    assert len(published) == sent
    busy = [p for p in published if not p["ok"]]
    assert 2 <= len(busy) <= 3 and all("deploy commands are already waiting" in p["reason"] for p in busy)
    assert [p["changed"] for p in published if p["ok"]][0] is True
    assert device.runtime.running == [fleet.signed.digest]


def test_the_deployer_fails_fast_for_an_offline_device(mosquitto: Mosquitto, fleet: Fleet) -> None:
    status = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="old-device")
    status.connect("127.0.0.1", mosquitto.port)
    status.loop_start()
    status.publish(f"{PREFIX}/status", "offline", qos=1, retain=True).wait_for_publish(10)
    status.disconnect()
    status.loop_stop()
    started = time.monotonic()
    with pytest.raises(RnnedgeError, match=f"^{PREFIX} is offline .* nothing was sent$"):
        deploy_over_mqtt(fleet.signed.path, mosquitto.url, PREFIX, timeout=30)
    assert time.monotonic() - started < 25  # it did not wait for the timeout


def test_the_deployer_says_why_nothing_answered(mosquitto: Mosquitto, fleet: Fleet) -> None:
    with pytest.raises(RnnedgeError, match=r"within 0\.5 s: no runtime has published nobody/here/status there"):
        deploy_over_mqtt(fleet.signed.path, mosquitto.url, "nobody/here", timeout=0.5)
    with (
        closed_port() as port,
        pytest.raises(RnnedgeError, match=rf"^cannot connect to MQTT broker mqtt://127\.0\.0\.1:{port}: "),
    ):
        deploy_over_mqtt(fleet.signed.path, f"mqtt://127.0.0.1:{port}", PREFIX, timeout=5)


def test_a_port_that_accepts_but_never_answers_mqtt_is_not_blamed_on_subscriptions(fleet: Fleet) -> None:
    with socket.socket() as silent:  # the kernel completes the TCP handshake; nothing reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RnnedgeError) as refused:
            deploy_over_mqtt(fleet.signed.path, f"mqtt://127.0.0.1:{port}", PREFIX, timeout=1)
    assert str(refused.value) == (
        f"cannot connect to MQTT broker mqtt://127.0.0.1:{port}: no MQTT answer to the connection within 1 s "
        "(is a broker listening there, or is a proxy or firewall in between?)"
    )
    assert time.monotonic() - started < 10


def test_a_server_that_hangs_up_before_answering_is_named(fleet: Fleet) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(30)  # never hang the test if the client does not connect
        port = server.getsockname()[1]

        def hang_up() -> None:
            connection, _ = server.accept()
            connection.recv(1024)  # the client's CONNECT
            connection.close()

        with ThreadPoolExecutor(1) as pool:
            server_side = pool.submit(hang_up)
            with pytest.raises(
                RnnedgeError,
                match=rf"^cannot connect to MQTT broker mqtt://127\.0\.0\.1:{port}: "
                r"the connection closed before it answered \(",
            ):
                deploy_over_mqtt(fleet.signed.path, f"mqtt://127.0.0.1:{port}", PREFIX, timeout=5)
            server_side.result(timeout=30)  # the server did receive the CONNECT and hang up


def test_deploy_targets() -> None:
    assert split_target("mqtt://broker.lan/rnnedge/pi4") == ("mqtt://broker.lan", "rnnedge/pi4")
    assert split_target("mqtts://edge:s3cret@broker:8883/plant/pi4/") == (
        "mqtts://edge:s3cret@broker:8883",
        "plant/pi4",
    )
    with pytest.raises(RnnedgeError, match=r"give the device's topic prefix as the path") as missing:
        split_target("mqtt://edge:s3cret@broker:1883")
    assert "s3cret" not in str(missing.value)
    with pytest.raises(RnnedgeError, match="no wildcards"):
        split_target("mqtt://broker/rnnedge/+")
    with pytest.raises(RnnedgeError, match="is not of the form mqtt://HOST"):
        split_target("http://broker/rnnedge/pi4")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["deploy", "BUNDLE", "--to", "mqtt://127.0.0.1:1/plant", "--timeout", "0"], "--timeout must be above 0"),
        (["deploy", "BUNDLE", "--to", "mqtt://127.0.0.1:1/plant", "--timeout=-1"], "got -1"),
        (["deploy", "BUNDLE", "--to", "mqtt://127.0.0.1:1/plant", "--timeout", "nan"], "got nan"),
        (["deploy", "BUNDLE", "--to", "mqtt://127.0.0.1:1/plant", "--timeout", "1e300"], "at most 604800 seconds"),
        (["deploy", "BUNDLE", "--to", "ssh://pi@127.0.0.1:1/r", "--probation", "nan"], "--probation must be >= 0"),
        (["device", "activate", "BUNDLE", "--root", "ROOT", "--probation=-3"], "(0: no probation)"),
    ],
    ids=["timeout-0", "negative-timeout", "nan-timeout", "huge-timeout", "nan-probation", "negative-probation"],
)
def test_waits_that_are_not_a_positive_number_of_seconds_are_refused_first(
    fleet: Fleet, tmp_path: Path, capsys, argv: list[str], expected: str
) -> None:
    """Before any connection (port 1 refuses; a refused connection would be a different error) or store."""
    argv = [a.replace("BUNDLE", str(fleet.signed.path)).replace("ROOT", str(tmp_path / "store")) for a in argv]
    line = one_line_error(capsys, argv)
    assert expected in line
    if "activate" in argv:  # the one case that names a store
        assert not (tmp_path / "store").exists()


def test_the_result_message_is_json_with_the_documented_fields(device: Device, fleet: Fleet) -> None:
    device.listener.on_message(b"junk")
    device.poll_until(lambda: device.published(), timeout=30)
    raw = device.results.messages[0][1]
    assert set(json.loads(raw)) == {
        "ok",
        "request",
        "digest",
        "version",
        "changed",
        "previous",
        "parity",
        "reason",
        "exit_code",
    }
    assert device.results.messages[0][2] is False  # not retained


@pytest.mark.slow
def test_the_real_runtime_switches_on_a_deploy_and_confirms_after_the_new_versions_first_forecast(
    mosquitto: Mosquitto, tmp_path: Path, fleet: Fleet
) -> None:
    """`rnnedge run` from a bundle store takes a deploy over MQTT and forecasts with the new version, numbering
    carried on. The new version is confirmed only once it has made a forecast itself: an idle source must not
    confirm it on the strength of the old version's forecasts."""
    from test_runtime_mqtt import good_samples, publish, start_mqtt_source_run, wait_until

    store = BundleStore(tmp_path / "bundles", fleet.public_key, keep=3)
    store.activate(fleet.running.path)
    confirmed = store.root / "confirmed"
    recorder = Recorder(mosquitto.port, f"{PREFIX}/#")
    runtime = start_mqtt_source_run(
        store.root / "current", mosquitto, tmp_path / "spool",
        "--verify-key", str(fleet.public_key), "--topic-prefix", PREFIX, "--metrics-interval", "1",
    )  # fmt: skip
    try:
        publish(mosquitto.port, good_samples(0, 20))
        assert wait_until(lambda: confirmed.exists() and confirmed.read_text() == fleet.running.digest + "\n", 20)
        result = deploy_over_mqtt(fleet.signed.path, mosquitto.url, PREFIX, 60)
        assert result["ok"] is True and result["changed"] is True
        turns = len(recorder.json_on("/metrics"))
        # three metrics messages later the runtime's loop has turned many times with no sample coming in
        assert wait_until(lambda: len(recorder.json_on("/metrics")) >= turns + 3, 20)
        assert confirmed.read_text() == fleet.running.digest + "\n"
        publish(mosquitto.port, good_samples(20, 20))
        assert wait_until(lambda: confirmed.read_text() == fleet.signed.digest + "\n", 20)
        recorder.settle(0.5)
    finally:
        runtime.terminate()
        _, stderr = runtime.communicate(timeout=30)
        recorder.close()
    assert runtime.returncode == 0, stderr
    forecasts = recorder.json_on("/forecast/wave")
    by_bundle = {
        digest: [m["seq"] for m in forecasts if m["bundle"] == digest] for digest in {m["bundle"] for m in forecasts}
    }
    warmup = fleet.running.manifest.warmup_steps
    old, new = by_bundle[fleet.running.digest], by_bundle[fleet.signed.digest]
    assert old == list(range(20 - warmup))  # the new version warms up again, and numbering carries on
    assert new == list(range(len(old), len(old) + 20 - warmup))
