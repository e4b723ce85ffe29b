"""The durable outbox: what was appended survives restarts and SIGKILL until acknowledged, within a byte bound."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.errors import RnnedgeError
from edge_runtime.spool import Spool, SpooledMessage, SpoolStats


def run_child(code: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh Python process: a real restart, not a reopened object."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def everything(spool: Spool) -> list[SpooledMessage]:
    return spool.pending(after=0, limit=10**9)


def size_of(messages: list[SpooledMessage]) -> int:
    return sum(len(m.topic.encode()) + len(m.payload) for m in messages)


@pytest.mark.parametrize("fsync_interval", [1.0, 0.0], ids=["fsync-every-second", "fsync-every-commit"])
def test_messages_survive_a_process_restart_until_acked(tmp_path: Path, fsync_interval: float) -> None:
    path = tmp_path / "spool" / "outbox.db"  # the directory is created
    run_child(
        """
        import sys
        from edge_runtime.spool import Spool
        spool = Spool.open(sys.argv[1], 1_000_000, float(sys.argv[2]))
        assert spool.append("plant/forecast/a", '{"seq":0}') == 1
        ids = spool.append_many([("plant/forecast/b", b"\\x00\\xff"), ("plant/forecast/a", '{"seq":1}')])
        assert list(ids) == [2, 3]
        assert spool.append("plant/metrics", "m", retain=True) == 4
        assert list(spool.append_many([("plant/forecast/a", '{"seq":2}'), ("plant/forecast/b", "b1")])) == [5, 6]
        spool.mark_acked([5, 2])
        spool.close()
        """,
        path,
        fsync_interval,
    )
    with Spool.open(path, 1_000_000, fsync_interval) as spool:
        assert spool.recovery is None
        assert everything(spool) == [
            SpooledMessage(1, "plant/forecast/a", b'{"seq":0}', False),
            SpooledMessage(3, "plant/forecast/a", b'{"seq":1}', False),
            SpooledMessage(4, "plant/metrics", b"m", True),
            SpooledMessage(6, "plant/forecast/b", b"b1", False),
        ]
        assert [m.id for m in spool.pending(after=3, limit=2)] == [4, 6]
        assert spool.stats() == SpoolStats(4, 16 + 9 + 16 + 9 + 13 + 1 + 16 + 2, 6, 0, 0, 0)
        spool.mark_acked([1, 3, 4, 6])
    with Spool.open(path, 1_000_000) as spool:
        assert spool.stats() == SpoolStats(0, 0, 6, 0, 0, 0)
        assert spool.append("plant/forecast/a", "after") == 7  # ids never go back, even when all were acked


def test_acks_are_persisted_by_flush_and_a_lost_ack_means_a_duplicate_not_a_loss(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    child = """
        import os, sys
        from edge_runtime.spool import Spool
        spool = Spool.open(sys.argv[1], 1_000_000)
        ids = spool.append_many([("t", "a"), ("t", "b"), ("t", "c")])
        spool.mark_acked([ids[0]])
        if sys.argv[2] == "flush":
            spool.flush()
        os._exit(0)  # no close: like a crash right after
        """
    run_child(child, path, "no-flush")
    with Spool.open(path, 1_000_000) as spool:
        assert [m.payload for m in everything(spool)] == [b"a", b"b", b"c"]
    path.unlink()
    run_child(child, path, "flush")
    with Spool.open(path, 1_000_000) as spool:
        assert [m.payload for m in everything(spool)] == [b"b", b"c"]


def test_out_of_order_acks_leave_exactly_the_unacked_messages(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "outbox.db"
    payloads = {i: os.urandom(rng.randint(0, 300)) for i in range(1, 301)}
    with Spool.open(path, 10**6) as spool:
        assert list(spool.append_many([(f"s/{i % 4}", payloads[i]) for i in range(1, 301)])) == list(range(1, 301))
        acked = rng.sample(range(1, 301), 200)
        for start in range(0, 200, 25):
            chunk = acked[start : start + 25]
            spool.mark_acked(chunk)
            left = sorted(set(payloads) - set(acked[: start + 25]))
            # acked ids disappear from `pending` at once, before they are written
            assert [m.id for m in everything(spool)] == left
            if start % 50 == 0:
                spool.flush()
        spool.mark_acked([0, 301, 10_000, acked[0]])  # unknown, future and repeated ids are ignored
        left = sorted(set(payloads) - set(acked))
        stats = spool.stats()
        assert (stats.messages, stats.appended, stats.dropped_messages) == (100, 300, 0)
        assert stats.bytes == sum(len(f"s/{i % 4}") + len(payloads[i]) for i in left)
    with Spool.open(path, 10**6) as spool:
        kept = everything(spool)
        assert [(m.id, m.topic, m.payload) for m in kept] == [(i, f"s/{i % 4}", payloads[i]) for i in left]
        assert spool.stats().bytes == size_of(kept)


def test_bound_drops_the_oldest_and_counts_every_drop_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    def message(index: int, size: int = 100) -> tuple[str, str]:
        return ("t/a", f"{index:04d}".ljust(size - 3, "x"))  # topic 3 bytes + payload = `size` bytes

    with Spool.open(path, max_bytes=1000) as spool:
        spool.append_many([message(i) for i in range(1, 11)])
        assert spool.stats() == SpoolStats(10, 1000, 10, 0, 0, 0)  # exactly full: nothing dropped
        spool.append_many([message(i) for i in range(11, 14)])
        assert [m.id for m in everything(spool)] == list(range(4, 14))
        assert spool.stats() == SpoolStats(10, 1000, 13, 3, 300, 0)
        spool.mark_acked([4, 5])  # acks are applied before the bound: acknowledged messages are never counted
        spool.append_many([message(14), message(15)])
        assert spool.stats() == SpoolStats(10, 1000, 15, 3, 300, 0)
        assert spool.append(*message(16, size=1001)) == 16  # larger than the bound: dropped on arrival alone
        assert spool.stats() == SpoolStats(10, 1000, 16, 4, 1301, 0)
        assert [m.id for m in everything(spool)] == list(range(6, 16))
        spool.append(*message(17, size=250))  # needs 250 bytes: the three oldest go
        assert [m.id for m in everything(spool)] == [*range(9, 16), 17]
        assert spool.stats() == SpoolStats(8, 950, 17, 7, 1601, 0)
    with Spool.open(path, max_bytes=500) as spool:  # a lower bound at the next start drops the oldest too
        assert [m.id for m in everything(spool)] == [14, 15, 17]
        assert [m.payload[:4] for m in everything(spool)] == [b"0014", b"0015", b"0017"]
        assert spool.stats() == SpoolStats(3, 450, 17, 12, 2101, 0)
    with Spool.open(path, max_bytes=500) as spool:
        assert spool.stats() == SpoolStats(3, 450, 17, 12, 2101, 0)


KILLED_CHILD = """
    import random, sys
    from edge_runtime.spool import Spool
    path, run, max_bytes, ack = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "ack"
    rng = random.Random(run)
    spool = Spool.open(path, max_bytes)
    print("ready", flush=True)
    n = 0
    while True:
        batch = rng.randint(1, 20)
        ids = spool.append_many([(f"s/{(n + k) % 3}", f"{run}:{n + k}") for k in range(batch)])
        print(ids.start, ids.stop, n, flush=True)  # after the commit: these are durable
        n += batch
        if ack:
            spool.mark_acked(i for i in ids if i % 3 == 0)
            if rng.random() < 0.2:
                spool.flush()
"""


def kill_at_random(path: Path, run: int, max_bytes: int, ack: bool, delay: float, batches: int = 5) -> dict[int, bytes]:
    """Start a child appending as fast as it can, SIGKILL it `delay` s after `batches` batches; return its report."""
    args = [str(path), str(run), str(max_bytes), "ack" if ack else "no-ack"]
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_CHILD), *args], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:  # also keeps the pipe from filling up
        for line in child.stdout:
            lines.append(line)
            if len(lines) == batches:
                started.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(timeout=60), "the child did not start appending"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    reader.join(timeout=30)
    reported: dict[int, bytes] = {}
    for line in lines:
        if line.endswith("\n"):  # a line cut by the kill was not reported
            start, stop, n = map(int, line.split())
            reported.update({i: f"{run}:{n + i - start}".encode() for i in range(start, stop)})
    return reported


def test_sigkill_at_random_points_loses_nothing_that_was_reported_durable(tmp_path: Path) -> None:
    """Same spool through six killed runs: every unacked reported message is there once, in order."""
    path = tmp_path / "outbox.db"
    rng = random.Random(2024)
    must_remain: dict[int, bytes] = {}
    known: dict[int, bytes] = {}
    last_reported = 0
    for run in range(6):
        reported = kill_at_random(path, run, 1 << 30, ack=True, delay=rng.uniform(0.0, 0.3))
        assert min(reported) > last_reported  # ids continue after a restart, never reused
        last_reported = max(reported)
        known.update(reported)
        must_remain.update({i: p for i, p in reported.items() if i % 3})  # the child acked the others
        with Spool.open(path, 1 << 30) as spool:
            kept = everything(spool)
            stats = spool.stats()
        ids = [m.id for m in kept]
        assert ids == sorted(set(ids))
        by_id = {m.id: m.payload for m in kept}
        assert {i: by_id.get(i) for i in must_remain} == must_remain
        unreported = [m for m in kept if m.id not in known]  # committed, then killed before printing
        assert len(unreported) <= 20 and all(m.id > last_reported for m in unreported)
        assert [m.payload.split(b":")[0] for m in unreported] == [str(run).encode()] * len(unreported)
        must_remain.update({m.id: m.payload for m in unreported})  # never acked: must stay in later runs
        known.update({m.id: m.payload for m in unreported})
        assert all(by_id[i] == known[i] for i in by_id if i in known)
        for topic in ("s/0", "s/1", "s/2"):  # per topic, payload order is append order
            numbers = [(int(a), int(b)) for a, b in (m.payload.split(b":") for m in kept if m.topic == topic)]
            assert numbers == sorted(numbers)
        assert (stats.messages, stats.bytes, stats.dropped_messages) == (len(kept), size_of(kept), 0)
        assert stats.appended >= last_reported


def test_sigkill_keeps_the_drop_counters_consistent_with_the_contents(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rng = random.Random(99)
    dropped_before = 0
    for run in range(4):
        reported = kill_at_random(path, run, 4000, ack=False, delay=rng.uniform(0.0, 0.3), batches=100)  # > 4000 B
        with Spool.open(path, 4000) as spool:
            kept = everything(spool)
            stats = spool.stats()
        assert [m.id for m in kept] == list(range(stats.appended - len(kept) + 1, stats.appended + 1))
        assert stats.appended >= max(reported)
        assert stats.dropped_messages + stats.messages == stats.appended
        assert stats.dropped_messages > dropped_before
        assert size_of(kept) == stats.bytes <= 4000
        assert all(reported[m.id] == m.payload for m in kept if m.id in reported)
        dropped_before = stats.dropped_messages


def test_a_network_thread_acking_out_of_order_while_the_main_thread_appends(tmp_path: Path) -> None:
    rng = random.Random(3)
    spool = Spool.open(tmp_path / "outbox.db", 10**8)
    to_ack: queue.Queue[int | None] = queue.Queue()
    failures: list[BaseException] = []

    def network_thread() -> None:  # like paho's on_publish: one id per PUBACK, out of order within a window
        window: list[int] = []
        try:
            while (item := to_ack.get()) is not None:
                window.append(item)
                if len(window) >= 64:
                    rng.shuffle(window)
                    for message_id in window:
                        spool.mark_acked((message_id,))
                    window.clear()
            for message_id in reversed(window):
                spool.mark_acked((message_id,))
        except BaseException as exc:
            failures.append(exc)

    acker = threading.Thread(target=network_thread)
    acker.start()
    cursor = appended = 0
    main_rng = random.Random(4)
    while appended < 20_000:
        batch = main_rng.randint(1, 50)
        spool.append_many([(f"s/{k % 5}", f"{appended + k}") for k in range(batch)])
        appended += batch
        for message in spool.pending(after=cursor, limit=100):  # "publish" what is new
            assert int(message.payload) == message.id - 1
            cursor = message.id
            to_ack.put(message.id)
        if main_rng.random() < 0.05:
            assert spool.stats().messages >= 0
    for message in spool.pending(after=cursor, limit=10**6):
        to_ack.put(message.id)
    to_ack.put(None)
    acker.join(timeout=60)
    assert not acker.is_alive() and not failures
    assert spool.stats() == SpoolStats(0, 0, appended, 0, 0, 0)
    spool.close()
    spool.mark_acked([1])  # a late PUBACK after close must not raise in the network thread
    with Spool.open(tmp_path / "outbox.db", 10**8) as reopened:
        assert reopened.stats() == SpoolStats(0, 0, appended, 0, 0, 0)


def test_a_write_failure_is_one_line_and_loses_neither_messages_nor_acks(tmp_path: Path) -> None:
    """A file size limit makes the WAL write fail for real, as a full SD card would; then the space comes back."""
    path = tmp_path / "outbox.db"
    result = run_child(
        """
        import json, resource, signal, sys
        from edge_runtime.errors import RnnedgeError
        from edge_runtime.spool import Spool
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG instead
        spool = Spool.open(sys.argv[1], 10**8, fsync_interval=3600)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, hard))
        stored, previous = [], range(0)
        while True:
            spool.mark_acked(previous[::2])  # buffered: the last ones ride on the transaction that fails
            try:
                previous = spool.append_many([("t", "x" * 100)] * 10)
            except RnnedgeError as exc:
                error = str(exc)
                break
            stored.extend(previous)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        new = spool.append("t", "after")
        spool.close()
        print(json.dumps({"error": error, "stored": stored, "new": new}))
        """,
        path,
    )
    outcome = json.loads(result.stdout)
    assert outcome["error"] == f"spool {path}: disk I/O error (is the disk full or failing?)"
    stored = outcome["stored"]
    assert len(stored) > 100 and outcome["new"] == stored[-1] + 1  # the failed batch took no ids
    batches = [stored[i : i + 10] for i in range(0, len(stored), 10)]
    acked = {i for batch in batches for i in batch[::2]}  # each batch's even positions were acked after it
    with Spool.open(path, 10**8) as spool:
        assert [m.id for m in everything(spool)] == [i for i in stored if i not in acked] + [outcome["new"]]


def make_spool(path: Path, count: int) -> dict[int, bytes]:
    with Spool.open(path, 10**8) as spool:
        ids = spool.append_many([("t/x", f"message {i:05d} ".ljust(120, "x")) for i in range(count)])
    return {i: f"message {i - 1:05d} ".ljust(120, "x").encode() for i in ids}


def truncate_to_60_percent(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size * 6 // 10)


def overwrite_a_middle_page(path: Path) -> None:
    with path.open("r+b") as file:
        file.seek(path.stat().st_size // 2 // 4096 * 4096)
        file.write(random.Random(5).randbytes(4096))


@pytest.mark.parametrize("damage", [truncate_to_60_percent, overwrite_a_middle_page])
def test_a_damaged_spool_is_moved_aside_and_its_readable_messages_carried_over(tmp_path: Path, damage) -> None:
    path = tmp_path / "outbox.db"
    written = make_spool(path, 2000)
    damage(path)
    evidence = path.read_bytes()
    with Spool.open(path, 10**8) as spool:
        assert spool.recovery is not None and "\n" not in spool.recovery
        assert spool.recovery.startswith(f"spool {path} was damaged (database disk image is malformed): moved to ")
        carried = everything(spool)
        assert 0 < len(carried) < 2000
        assert all(written[m.id] == m.payload for m in carried)
        assert [m.id for m in carried] == sorted(m.id for m in carried)
        assert f"{len(carried)} readable messages carried over" in spool.recovery
        assert spool.append("t/x", "new") == 2001  # the counters were readable: ids stay monotonic
        stats = spool.stats()
        assert (stats.messages, stats.recoveries) == (len(carried) + 1, 1)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("outbox.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == evidence  # kept untouched for inspection
    with Spool.open(path, 10**8) as spool:  # no crash loop: the next start is a normal one
        assert spool.recovery is None
        assert spool.stats().recoveries == 1
        assert len(everything(spool)) == len(carried) + 1


def test_a_file_that_is_not_a_database_is_replaced_by_a_fresh_spool(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(random.Random(1).randbytes(10_000))
    with Spool.open(path, 10**6) as spool:
        assert spool.recovery is not None
        assert "(file is not a database)" in spool.recovery and "0 readable messages" in spool.recovery
        assert spool.stats() == SpoolStats(0, 0, 0, 0, 0, 1)
        assert spool.append("t", "x") == 1


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "readings.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE reading (ts TEXT, value REAL)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(RnnedgeError) as caught:
        Spool.open(path, 10**6)
    assert str(caught.value) == f"{path} is a SQLite database but not an rnnedge spool: choose another spool path"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["readings.db"]


def test_a_spool_in_use_by_another_process_is_refused_until_that_process_dies(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from edge_runtime.spool import Spool; s = Spool.open(sys.argv[1], 10**6); "
            "s.append('t', 'x'); print('ready', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    with pytest.raises(RnnedgeError, match=r"^spool .* is in use by another process \(is another 'rnnedge run'"):
        Spool.open(path, 10**6)
    holder.kill()
    holder.wait(timeout=30)
    with Spool.open(path, 10**6) as spool:
        assert [m.payload for m in everything(spool)] == [b"x"]


@pytest.mark.parametrize(
    ("max_bytes", "fsync_interval", "message"),
    [
        (0, 1.0, "spool size limit must be a positive number of bytes, got 0"),
        (100, -1.0, "spool fsync interval must be >= 0 seconds, got -1.0"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, max_bytes: int, fsync_interval: float, message: str) -> None:
    with pytest.raises(RnnedgeError) as caught:
        Spool.open(tmp_path / "outbox.db", max_bytes, fsync_interval)
    assert str(caught.value) == message
