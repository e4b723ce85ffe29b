"""Input side throughput: microseconds per parsed payload, and per sample through each source to the engine's
`take`, each next to its raw baseline measured in the same run (so the ratios show where the time goes):
- payload parsing (`parse_payload`) per payload form, against `json.loads` alone;
- CSV replay as fast as possible, against reading the same rows with `csv_source.iter_rows` alone;
- JSON lines, against `parse_json_line` on the same lines without the thread and queue;
- MQTT subscriptions: a publisher process sends QoS 1 messages through mosquitto on loopback; the
  `MqttSubscriptionSource` (consumer draining in the main thread) against a bare paho subscriber that only
  counts. Wall rate and the subscriber process's CPU time per message are both reported (2 shared cores: the
  broker and the publisher compete with the subscriber, so CPU per message is the steadier figure).
Run: `.venv/bin/python benchmarks/sources_throughput.py` (about a minute; needs mosquitto for the MQTT part).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_runtime.csv_source import iter_rows
from edge_runtime.mqtt_client import MqttSettings
from edge_runtime.payloads import parse_json_line, parse_payload
from edge_runtime.samples import Sample
from edge_runtime.sources import CsvReplaySource, JsonLinesSource, MqttSubscriptionSource, Source

ONE = ("value",)
FOUR = ("temperature", "pressure", "humidity", "vibration")
PAYLOADS = {
    '{"ts": <epoch s>, "value": ..}': (b'{"ts": 1714564800.5, "value": 23.5}', ONE),
    '{"ts": <epoch ms>, "value": ..}': (b'{"ts": 1714564800500, "value": 23.5}', ONE),
    '{"ts": "<ISO-8601>", "value": ..}': (b'{"ts": "2024-05-01T12:00:00.5Z", "value": 23.5}', ONE),
    "plain number (ts = received)": (b"23.5", ONE),
    "4 named features + ts": (
        b'{"ts": 1714564800, "temperature": 20.1, "pressure": 1013.2, "humidity": 41.0, "vibration": 0.02}',
        FOUR,
    ),
    "rejected (string value)": (b'{"ts": 1714564800, "value": "hot"}', ONE),
}
PUBLISHER = """
import sys, paho.mqtt.client as mqtt
port, count = int(sys.argv[1]), int(sys.argv[2])
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.connect("127.0.0.1", port)
client.loop_start()
infos = [client.publish(f"bench/s{i % 100}/value", b'{"ts": %d, "value": 23.5}' % (1714564800 + i), qos=1)
         for i in range(count)]
for info in infos:
    info.wait_for_publish(60)
client.disconnect()
client.loop_stop()
"""


def per_call_us(function, number: int, repeat: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def parsing(repeat: int) -> list[dict]:
    results = []
    for name, (payload, features) in PAYLOADS.items():
        us = per_call_us(lambda p=payload, f=features: parse_payload(p, "s", f, 4096, 1714564800.0), 100_000, repeat)
        raw = per_call_us(lambda p=payload: json.loads(p.decode()), 100_000, repeat)
        results.append({"payload": name, "parse_us": round(us, 2), "json_loads_us": round(raw, 2)})
    return results


def drain(source: Source, expected: int) -> float:
    """Start the source, take batches of 1024 until its end marker; seconds from start to the end."""
    started = time.perf_counter()
    source.start()
    got = 0
    while not source.finished:
        got += sum(1 for item in source.take(1024, timeout=1.0) if type(item) is Sample)
    elapsed = time.perf_counter() - started
    assert got == expected, (got, expected)
    return elapsed


def csv_replay(directory: Path, rows: int, repeat: int) -> dict:
    path = directory / "replay.csv"
    with path.open("w") as out:
        out.write("timestamp,value\n")
        for i in range(rows):
            out.write(f"2024-05-01 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d},{20 + (i % 97) / 10}\n")
    raw = min(timeit.repeat(lambda: sum(1 for _ in iter_rows(path, ONE)), number=1, repeat=repeat))
    source = min(drain(CsvReplaySource(path, ONE), rows) for _ in range(repeat))
    return {"rows": rows, "source_us": round(source / rows * 1e6, 2), "iter_rows_us": round(raw / rows * 1e6, 2)}


def json_lines(directory: Path, lines: int, repeat: int) -> dict:
    path = directory / "lines.jsonl"
    body = b"".join(b'{"stream": "s%d", "ts": %d, "value": 23.5}\n' % (i % 100, 1714564800 + i) for i in range(lines))
    path.write_bytes(body)
    split = body.splitlines()

    def parse_only() -> None:
        for line in split:
            parse_json_line(line, "stdin", ONE, 4096, 0.0)

    raw = min(timeit.repeat(parse_only, number=1, repeat=repeat))
    best = float("inf")
    for _ in range(repeat):
        with path.open("rb") as handle:
            best = min(best, drain(JsonLinesSource(handle, ONE), lines))
    return {"lines": lines, "source_us": round(best / lines * 1e6, 2), "parse_only_us": round(raw / lines * 1e6, 2)}


def start_broker(directory: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = directory / "mosquitto.conf"
    # mosquitto queues at most 1000 QoS 1 messages per subscriber by default and silently drops the rest: a
    # subscriber slower than the publisher would be measured on fewer messages. Unbounded here.
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "log_dest none",
        "max_queued_messages 0",
    ]
    conf.write_text("\n".join(lines + (["user root"] if os.geteuid() == 0 else [])) + "\n")
    broker = subprocess.Popen([binary, "-c", str(conf)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker, port
        except OSError:
            if time.monotonic() > deadline or broker.poll() is not None:
                raise RuntimeError("mosquitto did not start") from None
            time.sleep(0.02)


def publish(port: int, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(count)])


def receive_raw(port: int, count: int) -> tuple[float, float]:
    """A bare paho subscriber that counts: (wall s, process CPU s) from the first to the last message."""
    done = threading.Event()
    subscribed = threading.Event()
    marks: list[float] = []
    seen = [0]

    def on_message(client, userdata, message) -> None:
        if not seen[0]:
            marks.extend((time.perf_counter(), time.process_time()))
        seen[0] += 1
        if seen[0] == count:
            marks.extend((time.perf_counter(), time.process_time()))
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("bench/#", qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    publisher = publish(port, count)
    done.wait(120)
    publisher.wait(60)
    client.disconnect()
    client.loop_stop()
    return marks[2] - marks[0], marks[3] - marks[1]


def receive_source(port: int, count: int, work_s: float) -> tuple[float, float, dict]:
    """The source with the engine's loop: `take` up to 1024, then `work_s` of (simulated) engine work."""
    source = MqttSubscriptionSource(MqttSettings(f"mqtt://127.0.0.1:{port}"), [("bench/+/value", "{1}")], ONE)
    source.start()
    publisher = publish(port, count)
    got = 0
    first = None
    deadline = time.monotonic() + 120
    while got + source.queue.dropped < count and time.monotonic() < deadline:
        batch = source.take(1024, timeout=0.1)
        if batch and first is None:
            first = (time.perf_counter(), time.process_time())
        got += len(batch)
        if work_s:
            time.sleep(work_s)
    wall, cpu = time.perf_counter() - first[0], time.process_time() - first[1]
    publisher.wait(60)
    stats = source.stats()
    source.stop()
    return wall, cpu, stats


def callback_us(repeat: int) -> float:
    """The source's work per message in paho's network thread (route, parse, stream limit, queue), no broker."""
    source = MqttSubscriptionSource(
        MqttSettings("mqtt://127.0.0.1:1"), [("bench/+/value", "{1}")], ONE, capacity=10_000_000
    )
    messages = []
    for i in range(100):
        message = mqtt.MQTTMessage(topic=f"bench/s{i}/value".encode())
        message.payload = b'{"ts": %d, "value": 23.5}' % (1714564800 + i)
        messages.append(message)
    calls = 100_000

    def deliver() -> None:
        for i in range(calls):
            source._on_message(None, None, messages[i % 100])
        source.queue.take(calls, timeout=0)

    return min(timeit.repeat(deliver, number=1, repeat=repeat)) / calls * 1e6


def mqtt_figures(directory: Path, messages: int, repeat: int) -> dict | None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        return None
    broker, port = start_broker(directory)
    try:
        raw = min((receive_raw(port, messages) for _ in range(repeat)), key=lambda r: r[1])
        idle = min((receive_source(port, messages, 0.0) for _ in range(repeat)), key=lambda r: r[1])
        busy = min((receive_source(port, messages, 0.001) for _ in range(repeat)), key=lambda r: r[1])
    finally:
        broker.terminate()
        broker.wait(10)
    return {
        "messages": messages,
        "callback_us": round(callback_us(repeat), 2),
        "raw_msgs_per_s": round(messages / raw[0]),
        "raw_cpu_us": round(raw[1] / messages * 1e6, 2),
        "source_msgs_per_s": round(messages / idle[0]),
        "source_cpu_us": round(idle[1] / messages * 1e6, 2),
        "busy_source_msgs_per_s": round(messages / busy[0]),
        "busy_source_cpu_us": round(busy[1] / messages * 1e6, 2),
        "source_dropped": idle[2]["dropped"] + busy[2]["dropped"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="CSV rows and JSON lines (default 200000)")
    parser.add_argument("--messages", type=int, default=20_000, help="MQTT messages per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is reported (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    print(f"# input side throughput ({platform.machine()}, Python {platform.python_version()}, best of {args.repeat})")
    figures: dict = {"parsing": parsing(args.repeat)}
    print("\n| payload | parse_payload us | json.loads alone us |\n|---|---:|---:|")
    for row in figures["parsing"]:
        print(f"| `{row['payload']}` | {row['parse_us']} | {row['json_loads_us']} |")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        figures["csv"] = csv_replay(directory, args.rows, args.repeat)
        figures["json_lines"] = json_lines(directory, args.rows, args.repeat)
        figures["mqtt"] = mqtt_figures(directory, args.messages, args.repeat)
    csv, lines, broker = figures["csv"], figures["json_lines"], figures["mqtt"]
    print("\n| source | us per sample to `take` | baseline in the same run |\n|---|---:|---|")
    print(f"| CSV replay, pace=None ({csv['rows']} rows) | {csv['source_us']} |", end="")
    print(f" iter_rows alone {csv['iter_rows_us']} us |")
    print(
        f"| JSON lines ({lines['lines']} lines, 100 streams) | {lines['source_us']} |"
        f" parse_json_line alone {lines['parse_only_us']} us |"
    )
    if broker is None:
        print("| MQTT | skipped: mosquitto not installed | |")
    else:
        raw = f"bare paho subscriber {broker['raw_cpu_us']} CPU us, {broker['raw_msgs_per_s']:,} msg/s"
        print(
            f"| MQTT QoS 1 via mosquitto ({broker['messages']} msgs, 100 topics), idle consumer woken per message |"
            f" {broker['source_cpu_us']} CPU, {broker['source_msgs_per_s']:,} msg/s | {raw} |"
        )
        print(
            f"| the same, consumer busy 1 ms per `take` (batches form) | {broker['busy_source_cpu_us']} CPU,"
            f" {broker['busy_source_msgs_per_s']:,} msg/s | dropped by the queue: {broker['source_dropped']} |"
        )
        print(f"| MQTT: the source's callback alone (no broker) | {broker['callback_us']} | |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
