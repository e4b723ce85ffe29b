"""Sources: CSV replay (fast, paced, backpressure), JSON lines, and MQTT subscriptions through a real mosquitto
(wildcards -> stream ids, bad payloads, overflow, max_streams, broker restarts, auth and TLS)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Mosquitto, closed_port, free_port
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.errors import RnnedgeError
from edge_runtime.mqtt_client import MqttSettings
from edge_runtime.samples import EndOfStream, Rejected, Sample
from edge_runtime.sources import (
    CsvReplaySource,
    Item,
    JsonLinesSource,
    MqttSubscriptionSource,
    ReplayClock,
    SampleQueue,
    Source,
    TopicRoute,
)

ONE = ("value",)
json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["ts", "value", "x"]), children),
    max_leaves=8,
).map(json.dumps)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def collect(source: Source, count: int, timeout: float = 10.0) -> list[Item]:
    items: list[Item] = []
    deadline = time.monotonic() + timeout
    while len(items) < count and time.monotonic() < deadline:
        items += source.take(count - len(items), timeout=0.05)
    return items


def drain(source: Source, timeout: float = 10.0) -> list[Item]:
    """Everything up to and including the end marker."""
    items: list[Item] = []
    deadline = time.monotonic() + timeout
    while not source.finished and time.monotonic() < deadline:
        items += source.take(1000, timeout=0.05)
    assert source.finished, f"no end marker within {timeout} s"
    return items


def write_csv(path: Path, rows: list[str], header: str = "timestamp,value") -> Path:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


# --- the queue --------------------------------------------------------------------------------------------------


def test_queue_offer_drops_the_newest_and_counts() -> None:
    queue = SampleQueue(3)
    samples = [Sample("s", float(i), str(i), (float(i),)) for i in range(5)]
    assert [queue.offer(sample) for sample in samples] == [True, True, True, False, False]
    assert queue.dropped == 2
    assert queue.take(10, timeout=0) == samples[:3]  # the oldest kept, in order
    queue.put_end(EndOfStream("x"))
    assert queue.take(10, timeout=0) == [EndOfStream("x")]


def test_queue_take_waits_then_drains_a_batch() -> None:
    queue = SampleQueue(100)
    started = time.monotonic()
    assert queue.take(10, timeout=0.1) == []
    assert time.monotonic() - started >= 0.09
    items = [Sample("s", float(i), str(i), (1.0,)) for i in range(25)]
    assert queue.put_many(items)
    assert queue.take(10, timeout=1) == items[:10]
    assert queue.take(100, timeout=1) == items[10:]


def test_queue_put_blocks_until_there_is_room_and_gives_up_when_closed() -> None:
    queue = SampleQueue(2)
    items = [Sample("s", float(i), str(i), (1.0,)) for i in range(5)]
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.append(queue.put_many(items)))
    producer.start()
    wait_until(lambda: len(queue) == 2)
    time.sleep(0.05)
    assert len(queue) == 2 and not outcome  # blocked at the capacity
    taken = queue.take(2, timeout=1) + queue.take(2, timeout=1)
    time.sleep(0.05)
    taken += queue.take(2, timeout=1)
    producer.join(1)
    assert taken == items and outcome == [True]
    queue.put_many(items[:2])
    blocked = threading.Thread(target=lambda: outcome.append(queue.put_many(items)))
    blocked.start()
    time.sleep(0.05)
    queue.put_end(EndOfStream("x"))  # the consumer stops: a waiting producer gives up
    blocked.join(1)
    assert outcome == [True, False]
    queue.put_end(EndOfStream("again"))
    assert not queue.offer(items[0])
    assert queue.take(10, timeout=0) == [*items[:2], EndOfStream("x")]  # one end marker, nothing after it


# --- CSV replay -------------------------------------------------------------------------------------------------


def test_csv_replay_streams_every_row_and_names_bad_ones(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "boiler.csv",
        [
            "2024-01-01 00:00:00,1.5",
            "2024-01-01 00:05:00,hot",
            "",
            "2024-01-01 00:10:00,nan",
            "noon,2.0",
            "2024-01-01T00:20:00Z,3.25",
        ],
    )
    source = CsvReplaySource(csv, ONE)
    source.start()
    items = drain(source)
    assert items == [
        Sample("boiler", 1704067200.0, "2024-01-01 00:00:00", (1.5,)),
        Rejected("boiler", "column 'value' holds 'hot', not a number", "boiler.csv line 3"),
        Rejected("boiler", "column 'value' holds 'nan', not a finite number", "boiler.csv line 5"),
        Rejected("boiler", "ts 'noon' is not an ISO-8601 time or epoch seconds/milliseconds", "boiler.csv line 6"),
        Sample("boiler", 1704068400.0, "2024-01-01T00:20:00Z", (3.25,)),
        EndOfStream("csv boiler.csv"),
    ]
    assert source.finished and source.error is None
    assert source.stats() == {"received": 5, "invalid": 3, "dropped": 0, "queued": 0}


def test_csv_replay_multi_feature_columns_in_bundle_order_and_numbered_rows(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "m.csv", ["1.0,2.0,x", "3.0,4.0,y"], header="pressure,temperature,note")
    source = CsvReplaySource(csv, ("temperature", "pressure"), time_column=None, stream="press-7")
    source.start()
    assert drain(source)[:2] == [Sample("press-7", 0.0, "0", (2.0, 1.0)), Sample("press-7", 1.0, "1", (4.0, 3.0))]


def test_csv_bytes_that_are_not_utf8_spoil_only_their_row(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"ts,value\n1,1.0\n2,2\xff\n3,3.0\n")
    source = CsvReplaySource(csv, ONE)
    source.start()
    items = drain(source)
    assert [type(item).__name__ for item in items] == ["Sample", "Rejected", "Sample", "EndOfStream"]
    assert items[1].source == "bad.csv line 3" and "not a number" in items[1].reason
    assert items[2] == Sample("bad", 3.0, "3", (3.0,))


def test_a_row_the_csv_module_cannot_split_ends_the_replay_after_the_good_rows(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "huge.csv", ["1,1.0", "2,2.0", "3," + "9" * 200_000, "4,4.0"])
    source = CsvReplaySource(csv, ONE)
    source.start()
    items = drain(source)
    assert items[:2] == [Sample("huge", 1.0, "1", (1.0,)), Sample("huge", 2.0, "2", (2.0,))]
    assert items[-1] == EndOfStream("csv huge.csv", "csv huge.csv stopped: field larger than field limit (131072)")
    assert source.error == "csv huge.csv stopped: field larger than field limit (131072)"


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        (None, {}, "no such file"),
        ("timestamp,reading\n1,2\n", {}, "no column 'value' (columns: timestamp, reading)"),
        ("timestamp,value\n1,2\n", {"time_column": "time"}, "no column 'time'"),
        ("value\n1\n", {"pace": 1.0, "time_column": "auto"}, "pacing needs timestamps"),
        ("timestamp,value\n1,2\n", {"pace": 0.0}, "pace 0.0 is not a positive number"),
        ("timestamp,value\n1,2\n", {"stream": "a/#"}, "contains an MQTT wildcard"),
    ],
    ids=["missing-file", "missing-column", "missing-time-column", "pace-without-time", "zero-pace", "bad-stream"],
)
def test_csv_problems_fail_at_start_in_one_line(tmp_path: Path, content: str | None, kwargs: dict, message: str):
    csv = tmp_path / "data.csv"
    if content is not None:
        csv.write_text(content)
    with pytest.raises(RnnedgeError) as raised:
        CsvReplaySource(csv, ONE, **kwargs)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_replay_clock_divides_file_time_by_pace() -> None:
    clock = ReplayClock(pace=10.0)
    assert [clock.due(ts) for ts in (100.0, 101.0, 105.0, 103.0, 90.0)] == [0.0, 0.1, 0.5, 0.3, 0.0]


@pytest.mark.parametrize(("pace", "spacing"), [(1.0, 0.05), (10.0, 0.5)])
def test_paced_replay_never_runs_early_and_keeps_time(tmp_path: Path, pace: float, spacing: float) -> None:
    """20 rows `spacing` s apart: each is handed over no earlier than its due time, all in about 0.95 s."""
    rows = [f"{1_700_000_000 + i * spacing:.3f},{i}" for i in range(20)]
    source = CsvReplaySource(write_csv(tmp_path / "paced.csv", rows), ONE, pace=pace)
    source.start()
    arrivals: dict[float, float] = {}
    while not source.finished:
        for item in source.take(100, timeout=0.01):
            if isinstance(item, Sample):
                arrivals[item.values[0]] = time.monotonic()
    assert sorted(arrivals) == [float(i) for i in range(20)]
    for i, arrived in arrivals.items():
        assert arrived - source.started_at >= i * spacing / pace - 0.002, f"row {i} came early"
    assert 0.95 <= arrivals[19.0] - source.started_at < 3.0  # wall clock on a shared machine: generous


def test_stop_interrupts_a_paced_replay(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "slow.csv", ["0,1", "3600,2"])  # the second row is due in an hour
    source = CsvReplaySource(csv, ONE, pace=1.0)
    source.start()
    assert collect(source, 1) == [Sample("slow", 0.0, "0", (1.0,))]
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 1.0
    assert not source._thread.is_alive()
    assert source.take(10, timeout=0) == [EndOfStream("csv slow.csv")] and source.finished


def test_a_slow_consumer_loses_no_replayed_row(tmp_path: Path) -> None:
    count = 600
    csv = write_csv(tmp_path / "many.csv", [f"{i},{i}" for i in range(count)])
    source = CsvReplaySource(csv, ONE, capacity=8)
    source.start()
    wait_until(lambda: len(source.queue) == 8)
    time.sleep(0.1)
    assert len(source.queue) == 8 and not source.finished  # the producer waits at the bound
    values, deepest = [], 0
    while not source.finished:
        deepest = max(deepest, len(source.queue))
        values += [item.values[0] for item in source.take(5, timeout=0.1) if isinstance(item, Sample)]
        time.sleep(0.001)
    assert values == [float(i) for i in range(count)]
    assert deepest <= 8 + 1  # the end marker may go over by one
    assert source.stats()["dropped"] == 0


# --- JSON lines -------------------------------------------------------------------------------------------------


def test_json_lines_from_a_pipe_multiplex_streams(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    lines = [
        b'{"stream": "a", "ts": 1, "value": 1.5}\n',
        b'{"stream": "b", "ts": "2024-01-01T00:00:00Z", "value": 2}\r\n',
        b"\n",
        b"not json\n",
        b'{"ts": 3, "value": 3}\n',
        b'{"stream": "b", "ts": 4, "value": "x"}\n',
        b'{"stream": "a", "ts": 5, "values": [5]}',  # no final newline
    ]

    def writer() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            for line in lines:
                pipe.write(line)
                pipe.flush()
                time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_end, "rb") as pipe:
        source = JsonLinesSource(pipe, ONE, default_stream="main")
        source.start()
        items = drain(source)
    thread.join()
    assert items == [
        Sample("a", 1.0, "1", (1.5,)),
        Sample("b", 1704067200.0, "2024-01-01T00:00:00Z", (2.0,)),
        Rejected("main", "payload 'not json' is neither a number nor JSON", "stdin line 4"),
        Sample("main", 3.0, "3", (3.0,)),
        Rejected("b", "field 'value' is a string ('x'), not a number", "stdin line 6"),
        Sample("a", 5.0, "5", (5.0,)),
        EndOfStream("stdin"),
    ]
    assert source.stats() == {"received": 6, "invalid": 2, "dropped": 0, "queued": 0}


def test_json_lines_over_the_limit_are_rejected_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b'{"value": 1}\n' + b'{"value": ' + b"1" * 300 + b"}\n" + b"2.5\n")
    with path.open("rb") as lines:
        source = JsonLinesSource(lines, ONE, max_bytes=64)
        source.start()
        items = drain(source)
    assert items[1] == Rejected("stdin", "payload too large: a line of 312 bytes, the limit is 64", "stdin line 2")
    assert [item.values for item in items if isinstance(item, Sample)] == [(1.0,), (2.5,)]


# --- MQTT -------------------------------------------------------------------------------------------------------


def publish(port: int, messages: list[tuple[str, bytes | str]], **tls: object) -> None:
    """QoS 1 from a separate client, each acknowledged by the broker before returning (order kept)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    if tls:
        client.username_pw_set(tls["username"], tls["password"])
        client.tls_set(ca_certs=str(tls["ca_file"]))
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def subscribe(url: str, subscriptions: list, protocol: str = "3.1.1", **kwargs: object) -> MqttSubscriptionSource:
    kwargs.setdefault("reconnect_delay", (0.2, 1.0))
    source = MqttSubscriptionSource(MqttSettings(url, protocol=protocol), subscriptions, ONE, **kwargs)
    source.start()
    return source


def test_topic_routes_and_templates() -> None:
    route = TopicRoute("sensors/+/room/+/temperature", "{2}:{1}")
    assert route.stream("sensors/b1/room/7/temperature", route.match("sensors/b1/room/7/temperature")) == "7:b1"
    assert route.match("sensors/b1/room/7/humidity") is None
    assert route.match("sensors/b1/room/7/temperature/x") is None
    tail = TopicRoute("plant/#", "{#}")
    assert tail.stream("plant/line-1/press", tail.match("plant/line-1/press")) == "line-1/press"
    assert tail.match("plant") == [""]  # '#' also matches the parent level
    assert TopicRoute("+/x").match("$SYS/x") is None  # wildcards never match $ topics
    whole = TopicRoute("a/+", None)
    assert whole.stream("a/b", whole.match("a/b")) == "a/b"
    assert TopicRoute("a/+", "dev-{topic}").stream("a/b", ["b"]) == "dev-a/b"


@pytest.mark.parametrize(
    ("topic_filter", "template", "message"),
    [
        ("a/#/b", "", "'#' must be a whole level, the last one"),
        ("a/b+", "", "'+' must be a whole level"),
        ("", "", "not a valid topic filter"),
        ("a/+", "{2}", "{2} but 'a/+' has 1 '+' wildcard(s)"),
        ("a/+", "{#}", "{#} needs a filter ending in '#'"),
        ("a/+", "{name}", "unknown {name}"),
        ("a/+", "{1", "unmatched brace"),
    ],
)
def test_bad_subscriptions_fail_in_one_line(topic_filter: str, template: str, message: str) -> None:
    with pytest.raises(RnnedgeError) as raised:
        TopicRoute(topic_filter, template)
    assert message in str(raised.value)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_subscriptions_map_topics_to_streams_and_reject_bad_payloads(mosquitto: Mosquitto, protocol: str) -> None:
    source = subscribe(
        mosquitto.url,
        [("sensors/+/temperature", "{1}"), ("plant/#", "line-{#}"), ("raw/value", None)],
        protocol,
        max_payload_bytes=256,
    )
    try:
        publish(
            mosquitto.port,
            [
                ("sensors/boiler-1/temperature", '{"ts": 1, "value": 20.5}'),
                ("sensors/boiler-2/temperature", "21"),
                ("plant/a/b", '{"ts": "2024-01-01T00:00:00Z", "value": 3}'),
                ("raw/value", "4.5"),
                ("sensors/boiler-1/temperature", "hot"),
                ("sensors/boiler-1/temperature", '{"ts": 2, "value": NaN}'),
                ("sensors/boiler-2/temperature", "9" * 300),
                ("sensors/boiler-2/temperature", b"\xc3\x28"),
            ],
        )
        items = collect(source, 8)
    finally:
        source.stop()
    topic = "sensors/boiler-1/temperature"
    assert items[:4] == [
        Sample("boiler-1", 1.0, "1", (20.5,)),
        Sample("boiler-2", items[1].ts, items[1].ts_text, (21.0,)),
        Sample("line-a/b", 1704067200.0, "2024-01-01T00:00:00Z", (3.0,)),
        Sample("raw/value", items[3].ts, items[3].ts_text, (4.5,)),
    ]
    assert abs(items[1].ts - time.time()) < 30  # no ts in the payload: the time it was received
    assert items[4:] == [
        Rejected("boiler-1", "payload 'hot' is neither a number nor JSON", topic),
        Rejected("boiler-1", "field 'value' is nan: NaN and infinities are refused", topic),
        Rejected("boiler-2", "payload too large: 300 bytes, the limit is 256", "sensors/boiler-2/temperature"),
        Rejected("boiler-2", "payload is not UTF-8 text", "sensors/boiler-2/temperature"),
    ]
    stats = source.stats()
    assert (stats["received"], stats["invalid"], stats["dropped"], stats["streams"]) == (8, 4, 0, 4)
    assert source.take(10, timeout=0) == [EndOfStream(source.name)]


def test_random_payloads_through_the_broker_never_stop_the_good_stream(mosquitto: Mosquitto) -> None:
    source = subscribe(mosquitto.url, [("good/+", "{1}"), ("junk/#", "")], max_payload_bytes=128)
    sent = 0

    @settings(max_examples=15, deadline=None)
    @given(junk=st.lists(st.binary(max_size=200) | json_documents.map(str.encode), min_size=1, max_size=12))
    def run(junk: list[bytes]) -> None:
        nonlocal sent
        messages = []
        for payload in junk:
            messages += [("good/s", f'{{"ts": {sent}, "value": {sent}}}'), ("junk/x", payload)]
            sent += 1
        publish(mosquitto.port, messages)
        items = collect(source, len(messages))
        assert len(items) == len(messages)
        good = [item for item in items if item.stream == "s"]
        assert good == [Sample("s", float(v), str(v), (float(v),)) for v in range(sent - len(junk), sent)]
        for item in items:
            assert isinstance(item, Sample | Rejected)

    try:
        run()
    finally:
        source.stop()
    assert sent >= 15 and source.stats()["dropped"] == 0 and source.errors == 0


def test_max_streams_refuses_new_streams_and_counts(mosquitto: Mosquitto) -> None:
    source = subscribe(mosquitto.url, [("s/+", "{1}")], max_streams=2)
    try:
        publish(mosquitto.port, [("s/a", "1"), ("s/b", "2"), ("s/c", "3"), ("s/a", "4"), ("s/c", "5")])
        items = collect(source, 5)
    finally:
        source.stop()
    assert [(type(item).__name__, item.stream) for item in items] == [
        ("Sample", "a"),
        ("Sample", "b"),
        ("Rejected", "c"),
        ("Sample", "a"),
        ("Rejected", "c"),
    ]
    assert items[2].reason == "max_streams=2 reached: new stream 'c' refused"
    assert source.stats()["streams_refused"] == 2


def test_overflow_drops_the_newest_and_counts(mosquitto: Mosquitto) -> None:
    source = subscribe(mosquitto.url, [("fast/#", "")], capacity=5)
    try:
        publish(mosquitto.port, [("fast/x", str(i)) for i in range(50)])
        deadline = time.monotonic() + 10
        while source.received < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        items = source.take(100, timeout=0)
    finally:
        source.stop()
    assert [item.values[0] for item in items] == [0.0, 1.0, 2.0, 3.0, 4.0]  # the oldest five kept
    assert source.stats()["dropped"] == 45


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_source_reconnects_and_resubscribes_after_broker_restarts(mosquitto: Mosquitto, protocol: str) -> None:
    source = subscribe(mosquitto.url, [("r/+", "{1}")], protocol)
    try:
        values = []
        for restart in range(2):
            publish(mosquitto.port, [("r/a", str(restart * 10 + i)) for i in range(3)])
            values += [item.values[0] for item in collect(source, 3)]
            mosquitto.stop()  # persistence off: the restarted broker has forgotten the subscription
            deadline = time.monotonic() + 10
            while source.wait_ready(0) and time.monotonic() < deadline:
                time.sleep(0.02)
            mosquitto.start()
            assert source.wait_ready(15), "did not reconnect and resubscribe"
        publish(mosquitto.port, [("r/a", str(20 + i)) for i in range(3)])
        values += [item.values[0] for item in collect(source, 3)]
    finally:
        source.stop()
    assert values == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 20.0, 21.0, 22.0]
    assert source.reconnects == 2 and source.stats()["subscriber_reconnects"] == 2


def test_unreachable_broker_is_one_line_at_start() -> None:
    with (
        closed_port() as port,
        pytest.raises(RnnedgeError, match=rf"cannot reach MQTT broker mqtt://127.0.0.1:{port}: Connection refused"),
    ):
        subscribe(f"mqtt://127.0.0.1:{port}", [("a/b", "")])


# --- auth and TLS -----------------------------------------------------------------------------------------------

PASSWORD = "s3cret-Pa55"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """mosquitto with TLS (a CA and a server certificate for 127.0.0.1 made here) and a password file."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=ca", cwd=tmp_path)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "1", "-extfile", "san.ext", cwd=tmp_path,
    )  # fmt: skip
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "edge", PASSWORD], check=True)
    listener = tuple(f"{key} {tmp_path / name}" for key, name in (("cafile", "ca.pem"), ("certfile", "server.pem"),
                                                                  ("keyfile", "server.key")))  # fmt: skip
    extra = ("allow_anonymous false", f"password_file {tmp_path / 'passwd'}")
    broker = Mosquitto(tmp_path, free_port(), listener=listener, extra=extra)
    broker.start()
    yield broker, tmp_path / "ca.pem"
    broker.stop()


def test_wrong_password_is_refused_without_showing_it(tls_broker, caplog) -> None:
    broker, ca = tls_broker
    caplog.set_level(logging.DEBUG)
    for username, password in (("edge", f"wrong-{PASSWORD}"), (None, None)):
        settings = MqttSettings(f"mqtts://127.0.0.1:{broker.port}", username=username, password=password, ca_file=ca)
        with pytest.raises(RnnedgeError) as raised:
            MqttSubscriptionSource(settings, [("a/#", "")], ONE, connect_timeout=5).start()
        assert (
            str(raised.value) == f"MQTT broker mqtts://127.0.0.1:{broker.port} refused the connection: Not authorized"
        )
    assert PASSWORD not in caplog.text


def test_tls_with_the_ca_receives_and_without_it_is_refused(tls_broker, caplog) -> None:
    broker, ca = tls_broker
    caplog.set_level(logging.DEBUG)
    url = f"mqtts://edge:{PASSWORD}@127.0.0.1:{broker.port}"
    source = MqttSubscriptionSource(MqttSettings(url, ca_file=ca), [("secure/+", "{1}")], ONE)
    source.start()
    try:
        secure = {"username": "edge", "password": PASSWORD, "ca_file": ca}
        publish(broker.port, [("secure/vault", '{"ts": 7, "value": 1.25}')], **secure)
        assert collect(source, 1) == [Sample("vault", 7.0, "7", (1.25,))]
    finally:
        source.stop()
    untrusted = MqttSubscriptionSource(MqttSettings(url), [("a/#", "")], ONE)
    with pytest.raises(RnnedgeError, match="CERTIFICATE_VERIFY_FAILED") as raised:
        untrusted.start()
    assert str(raised.value).startswith(f"TLS with MQTT broker mqtts://127.0.0.1:{broker.port} failed: ")
    assert PASSWORD not in str(raised.value) and PASSWORD not in caplog.text
    assert PASSWORD not in repr(source.settings) and PASSWORD not in source.name


def test_a_bad_url_never_shows_the_password() -> None:
    with pytest.raises(RnnedgeError) as raised:
        MqttSubscriptionSource(MqttSettings(f"mqtt://edge:{PASSWORD}@host:port"), [("a", "")], ONE)
    assert PASSWORD not in str(raised.value) and "invalid port" in str(raised.value)
