"""The publisher against brokers that behave in ways mosquitto cannot be made to, so the servers here are minimal
ones written for these tests, speaking just enough MQTT 5 (CONNECT, PUBLISH at QoS 1, PINGREQ, DISCONNECT):

- MQTT 5 acknowledgements that refuse a publish: refused for good (0x87 not authorized) is dropped and counted,
  refused for now (0x97 quota exceeded) stays in the spool and is sent again;
- a server that accepts the TCP connection and never answers CONNECT: with keepalive 0, paho alone would wait
  forever.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge_runtime.mqtt_client import MqttSettings
from edge_runtime.mqtt_publisher import SpooledPublisher
from edge_runtime.spool import Spool

QUOTA_EXCEEDED, NOT_AUTHORIZED = 0x97, 0x87
# a test server's thread that dies must fail its test, not leave it to time out on some later assertion
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


class RefusingBroker:
    """Accepts one client; acknowledges `refuse_once` payloads with 0x97 the first time and `refuse_always`
    payloads with 0x87 every time; records the payloads it accepted, in order."""

    def __init__(self, refuse_once: set[bytes], refuse_always: set[bytes]) -> None:
        self.refuse_once, self.refuse_always = set(refuse_once), refuse_always
        self.accepted: list[bytes] = []
        self.refusals: list[tuple[bytes, int]] = []
        self._listener, self.port = _listen(self._serve)

    def _serve(self, listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection, connection.makefile("rb") as stream:
            while packet := _read_packet(stream):
                kind, body = packet
                if kind == 0x10:  # CONNECT -> CONNACK: session not present, success, no properties
                    connection.sendall(b"\x20\x03\x00\x00\x00")
                elif kind == 0x30:  # PUBLISH, QoS 1 (flags in the low nibble)
                    connection.sendall(self._puback(body))
                elif kind == 0xC0:  # PINGREQ
                    connection.sendall(b"\xd0\x00")
                elif kind == 0xE0:  # DISCONNECT
                    return

    def _puback(self, body: bytes) -> bytes:
        packet_id, payload = _publish_fields(body)
        reason = 0
        if payload in self.refuse_always:
            reason = NOT_AUTHORIZED
        elif payload in self.refuse_once:
            self.refuse_once.discard(payload)
            reason = QUOTA_EXCEEDED
        if reason:
            self.refusals.append((payload, reason))
            return b"\x40\x04" + packet_id + bytes([reason, 0])
        self.accepted.append(payload)
        return b"\x40\x02" + packet_id


def _listen(serve) -> tuple[socket.socket, int]:
    """A loopback listener on a free port, handed to `serve` in a daemon thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    return listener, listener.getsockname()[1]


def _publish_fields(body: bytes) -> tuple[bytes, bytes]:
    """(packet id, payload) of an MQTT 5 QoS 1 PUBLISH body."""
    topic_length = int.from_bytes(body[:2], "big")
    properties_length, used = _varint(body, 4 + topic_length)
    return body[2 + topic_length : 4 + topic_length], body[4 + topic_length + used + properties_length :]


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift, used = 0, 0, 0
    while True:
        byte = data[at + used]
        used += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, used


def _read_packet(stream) -> tuple[int, bytes] | None:
    header = stream.read(1)
    if not header:
        return None
    length, shift = 0, 0
    while True:
        byte = stream.read(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header[0] & 0xF0, stream.read(length)


def pump_until_idle(publisher: SpooledPublisher, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not publisher.idle and time.monotonic() < deadline:
        publisher.pump()
        time.sleep(0.01)


@contextmanager
def publisher_to(port: int, tmp_path: Path, count: int, window: int = 1000) -> Iterator[SpooledPublisher]:
    """An MQTT 5 publisher to the test server on `port`, started, its spool holding forecasts m0..m{count-1};
    closed with its spool afterwards."""
    spool = Spool.open(tmp_path / "spool.db", 1 << 20)
    spool.append_many([("plant/forecast/s", f"m{i}") for i in range(count)])
    settings = MqttSettings(f"mqtt://127.0.0.1:{port}", protocol="5")
    publisher = SpooledPublisher(settings, "unusual", "plant/status", spool, window=window)
    try:
        publisher.start(wait=10)
        yield publisher
    finally:
        publisher.close(drain_timeout=1)
        spool.close()


def test_refused_for_now_is_sent_again_and_refused_for_good_is_dropped(tmp_path: Path) -> None:
    broker = RefusingBroker(refuse_once={b"m2", b"m3", b"online", b"reply"}, refuse_always={b"m4"})
    with publisher_to(broker.port, tmp_path, 6) as publisher:
        assert publisher.connected
        publisher.publish_now("plant/deploy/result", "reply")  # a direct message, as a deploy verdict is sent
        pump_until_idle(publisher)
        assert publisher.spool.stats().messages == 0
        assert publisher.deferred_by_broker == 4 and publisher.rejected_by_broker == 1
        assert publisher.delivered == 6  # five acknowledged, one settled by its refusal for good
    forecasts = [p for p in broker.accepted if p.startswith(b"m")]
    assert sorted(forecasts) == [b"m0", b"m1", b"m2", b"m3", b"m5"]  # m2 and m3 on their second sending
    assert forecasts.index(b"m2") > forecasts.index(b"m5")
    assert b"online" in broker.accepted and b"reply" in broker.accepted  # direct messages are sent again too
    assert sorted(broker.refusals) == [
        (b"m2", QUOTA_EXCEEDED),
        (b"m3", QUOTA_EXCEEDED),
        (b"m4", NOT_AUTHORIZED),
        (b"online", QUOTA_EXCEEDED),
        (b"reply", QUOTA_EXCEEDED),
    ]


def test_a_broker_refusing_everything_once_gets_everything_within_a_small_window(tmp_path: Path) -> None:
    """Refused messages keep their place in the window, so new ones wait in the spool rather than in memory."""
    payloads = [f"m{i}".encode() for i in range(20)]
    broker = RefusingBroker(refuse_once={*payloads, b"online"}, refuse_always=set())
    with publisher_to(broker.port, tmp_path, 20, window=4) as publisher:
        pump_until_idle(publisher, timeout=30)
        assert publisher.spool.stats().messages == 0 and publisher.deferred_by_broker == 21
    assert sorted(p for p in broker.accepted if p.startswith(b"m")) == sorted(payloads)


def test_a_connect_nobody_answers_is_dropped_and_tried_again(tmp_path: Path) -> None:
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def accept_and_say_nothing() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    spool = Spool.open(tmp_path / "spool.db", 1 << 20)
    settings = MqttSettings(f"mqtt://127.0.0.1:{listener.getsockname()[1]}", protocol="5", keepalive=0)
    publisher = SpooledPublisher(settings, "silent", "plant/status", spool)
    publisher.connack_timeout = 0.5
    try:
        publisher.start()
        deadline = time.monotonic() + 30.0
        while len(accepted) < 2 and time.monotonic() < deadline:
            publisher.pump()
            time.sleep(0.01)
        assert len(accepted) >= 2  # the first connection was given up and another one made
        assert publisher.connects == 0 and not publisher.connected
        assert publisher.last_problem == "the broker did not answer the connection within 0.5 s"
    finally:
        publisher.close(drain_timeout=0.1)
        spool.close()
        listener.close()
        for connection in accepted:
            connection.close()


class ShrinkingBroker:
    """Two connections in turn. The first announces Receive Maximum 50, acknowledges nothing and hangs up after
    50 publishes; the second announces 5 and acknowledges whatever arrived once the client pauses, recording the
    most publishes it ever had unacknowledged (a broker restarted with a lower limit)."""

    def __init__(self) -> None:
        self.most_unacknowledged = 0
        self.accepted: list[bytes] = []
        self.first_received = 0
        self._listener, self.port = _listen(self._serve)

    def _serve(self, listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection, connection.makefile("rb") as stream:
            while self.first_received < 50 and (packet := _read_packet(stream)):
                if packet[0] == 0x10:
                    connection.sendall(b"\x20\x06\x00\x00\x03\x21\x00\x32")  # CONNACK, Receive Maximum 50
                elif packet[0] == 0x30:
                    self.first_received += 1
        connection, _ = listener.accept()
        connection.settimeout(0.05)
        pending: list[tuple[bytes, bytes]] = []  # (packet id, payload) not acknowledged yet
        received = b""
        with connection:
            while True:
                packet = _parse_packet(received)
                if packet is None:
                    try:
                        data = connection.recv(65536)
                    except TimeoutError:  # the client waits: acknowledge what it sent
                        connection.sendall(b"".join(b"\x40\x02" + packet_id for packet_id, _ in pending))
                        self.accepted += [payload for _, payload in pending]
                        pending.clear()
                        continue
                    if not data:
                        return
                    received += data
                    continue
                kind, body, used = packet
                received = received[used:]
                if kind == 0xE0:
                    return
                if kind == 0x10:
                    connection.sendall(b"\x20\x06\x00\x00\x03\x21\x00\x05")  # CONNACK, Receive Maximum 5
                elif kind == 0x30:
                    pending.append(_publish_fields(body))
                    self.most_unacknowledged = max(self.most_unacknowledged, len(pending))
                elif kind == 0xC0:
                    connection.sendall(b"\xd0\x00")


def _parse_packet(data: bytes) -> tuple[int, bytes, int] | None:
    """The first whole packet in `data`: (kind, body, bytes used), or None if it has not all arrived."""
    try:
        length, used = _varint(data, 1)
    except IndexError:  # not even the length has arrived
        return None
    end = 1 + used + length
    return (data[0] & 0xF0, data[1 + used : end], end) if len(data) >= end else None


def test_a_broker_back_with_a_lower_receive_maximum_never_gets_more_in_flight(tmp_path: Path) -> None:
    """paho alone re-sends every message in flight right after reconnecting, whatever the new broker accepts; the
    publisher sends them again itself, within the new window."""
    broker = ShrinkingBroker()
    with publisher_to(broker.port, tmp_path, 200) as publisher:
        pump_until_idle(publisher, timeout=30)
        assert publisher.spool.stats().messages == 0
    assert broker.first_received == 50 and publisher.reconnects == 1
    assert broker.most_unacknowledged <= 5
    assert {p for p in broker.accepted if p.startswith(b"m")} == {f"m{i}".encode() for i in range(200)}
