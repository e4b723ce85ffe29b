"""Spool throughput: append + read for publishing + ack per message, by batch size, and disk use per message.

Each message goes through what the runtime does with it: `append_many` (one committed transaction per batch),
`pending` (the publisher reads it back), and `mark_acked` once per message (as paho's on_publish reports each
PUBACK), with the acks persisted by the next batch's transaction.
Run: `.venv/bin/python benchmarks/spool_throughput.py` (about a minute).
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from edge_runtime.forecasts import ForecastLayout, Forecasts
from edge_runtime.spool import Spool

TOPIC = "rnnedge/raspberrypi/forecast/machine_temperature"
# A real forecast message (one target, horizon 2), written by the runtime's own serialiser: 322 bytes.
_FORECAST = Forecasts(ForecastLayout(1_795_315_000, "3f2a9c1b" * 8, ("value",), ("value",)))
_FORECAST.add(
    "machine_temperature", 123456, "2014-02-11T04:35:00", [85.21], [[85.13421630859375, 85.08712768554688]],
    [0.07578369140624716], 0.3124, False,
)  # fmt: skip
PAYLOAD = _FORECAST.texts()[0].encode()


def cycle_rate(directory: Path, batch: int, messages: int, fsync_interval: float) -> float:
    """Messages per second through append -> pending -> ack, `batch` messages per append transaction."""
    spool = Spool.open(directory / f"cycle-{batch}-{fsync_interval}.db", 64 * 2**20, fsync_interval)
    cursor = 0
    started = time.perf_counter()
    for _ in range(messages // batch):
        spool.append_many([(TOPIC, PAYLOAD)] * batch)
        for message in spool.pending(after=cursor, limit=batch):
            cursor = message.id
            spool.mark_acked((message.id,))
    spool.flush()
    elapsed = time.perf_counter() - started
    depth = spool.stats().messages
    spool.close()
    assert depth == 0, depth
    return messages / elapsed


def disk_use(directory: Path, messages: int) -> tuple[float, float]:
    """Bytes on disk per 1,000 unacknowledged messages (database + WAL), and their ratio to the accounted bytes."""
    path = directory / "backlog.db"
    spool = Spool.open(path, 2**30)
    for _ in range(messages // 100):
        spool.append_many([(TOPIC, PAYLOAD)] * 100)
    accounted = spool.stats().bytes
    spool.close()
    on_disk = sum(p.stat().st_size for p in directory.glob("backlog.db*"))
    return on_disk / (messages / 1000), on_disk / accounted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="messages per measurement (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is reported (default 3)")
    args = parser.parse_args()
    versions = f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    print(f"# spool throughput ({platform.machine()}, {versions})")
    print(f"message: {len(TOPIC)} B topic + {len(PAYLOAD)} B payload; best of {args.repeat} runs\n")
    print("| batch | fsync | messages | append+pending+ack msg/s |")
    print("|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for fsync_interval, label in ((1.0, "every 1 s (default)"), (0.0, "every commit")):
            for batch in (1, 10, 100):
                count = args.messages if fsync_interval else min(args.messages, 5_000 * batch)
                rate = max(cycle_rate(directory, batch, count, fsync_interval) for _ in range(args.repeat))
                print(f"| {batch} | {label} | {count} | {rate:,.0f} |")
        per_thousand, ratio = disk_use(directory, 10_000)
    print(f"\ndisk: {per_thousand / 1024:.0f} KiB per 1,000 pending messages ({ratio:.2f}x the accounted bytes)")


if __name__ == "__main__":
    main()
