"""The durable outbox: every outgoing message is written here before it is published, and stays until acknowledged.

Paho keeps unacknowledged QoS 1 messages in memory only, so a broker outage longer than the process's life, a
SIGKILL or a power cut would lose them. The spool is one SQLite file (WAL journal, exclusive lock) holding the
messages that are not yet acknowledged, in append order.

Why SQLite and not append-only segment files: measured with benchmarks/spool_throughput.py on 2 shared cores,
SQLite sustains ~40k append+read+ack cycles/s at one message per transaction and 170-240k/s in batches of 10-100,
well above the runtime's 10k forecasts/s. Raw segment-file writes are faster, but SQLite gives atomic batches,
in-place deletion of out-of-order acks, reuse of freed space and detection of damaged files with no code of ours.

Durability contract:
- `append`/`append_many` return after their batch is committed: from then on the messages survive SIGKILL and
  a crash of the process. Publish a message only after the call that appended it has returned.
- Power loss: commits use `synchronous=NORMAL` (no fsync per commit, which costs ~0.2 ms here and several ms on
  an SD card); at most every `fsync_interval` seconds (default 1) a checkpoint fsyncs everything committed so far,
  so a power cut loses at most the last ~`fsync_interval` seconds of messages, and the file stays consistent.
  `fsync_interval=0` fsyncs every commit (`synchronous=FULL`) for users who prefer that to throughput.
- `mark_acked` only records ids in memory; they are written with the next batch, `flush`, `stats` or `close`. An
  acknowledgement lost in a crash makes its message be published again after restart (a duplicate, which
  consumers drop by sequence number), never a loss.
- Bounded in bytes (topic + payload bytes of the stored messages): when an append goes over `max_bytes`, the
  oldest messages are dropped, whether or not they are in flight (the in-flight window is tiny next to the bound;
  if paho still delivers one, the drop count overstates the loss by that message). Dropping from the head keeps
  the newest data and leaves each stream one contiguous gap that consumers see in the sequence numbers. A single
  message larger than `max_bytes` is dropped on arrival. Every drop is counted, and the counters persist.
- Order: ids are monotonic across restarts and `pending` returns oldest first, so no topic is ever reordered.
- A damaged file (not a database, truncated, failing SQLite's quick_check) is moved aside to
  `PATH.corrupt-<UTC time>` with its WAL, the messages still readable from it are carried into a fresh spool, and
  `Spool.recovery` says so in one line: the runtime keeps going instead of failing at every restart. A healthy
  SQLite file that is not a spool is never touched: opening it is an error.

Concurrency contract: `mark_acked` may be called from any thread (a network thread, for instance): it takes
a short lock, never touches the disk and never raises for unknown or dropped ids, so it cannot stall or kill the
network loop. Every other method is serialised by one lock and is meant for the runtime's main thread.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from edge_runtime.errors import RnnedgeError

APPLICATION_ID = 0x726E6564  # "rned" in the SQLite header: marks a file as an rnnedge spool
SCHEMA_VERSION = 1
_COUNTERS = ("last_id", "dropped_messages", "dropped_bytes", "recoveries")
_SCHEMA = (
    "CREATE TABLE message (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,"
    " retain INTEGER NOT NULL, size INTEGER NOT NULL)",
    "CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_INSERT = "INSERT INTO message (id, topic, payload, retain, size) VALUES (?, ?, ?, ?, ?)"
_SALVAGE = _INSERT.replace("INSERT", "INSERT OR IGNORE")  # a damaged b-tree may repeat a row
# SQLite primary result codes (extended codes carry them in the low byte)
_CORRUPT, _NOTADB, _BUSY, _LOCKED, _FULL, _IOERR = 11, 26, 5, 6, 13, 10


class SpooledMessage(NamedTuple):
    """One stored message, as the publisher hands it to paho."""

    id: int
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class SpoolStats:
    """What the metrics message reports; drop counters and `appended` are cumulative over the file's life."""

    messages: int  # stored, not yet acknowledged
    bytes: int  # their topic + payload bytes (the quantity bounded by max_bytes)
    appended: int  # ever appended (the last id given out)
    dropped_messages: int
    dropped_bytes: int
    recoveries: int  # damaged files moved aside


class _Damaged(Exception):
    """The file exists but SQLite cannot use it: recovered by moving it aside."""


def _code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _failure(path: Path, exc: sqlite3.Error) -> RnnedgeError:
    """One line naming what went wrong with the spool file, for the CLI and the runtime's log."""
    code = _code(exc)
    if code in (_BUSY, _LOCKED):
        return RnnedgeError(f"spool {path} is in use by another process (is another 'rnnedge run' using it?)")
    if code in (_FULL, _IOERR):
        return RnnedgeError(f"spool {path}: {exc} (is the disk full or failing?)")
    if code in (_CORRUPT, _NOTADB):
        return RnnedgeError(f"spool {path} is damaged ({exc}); restart to move it aside and recover it")
    return RnnedgeError(f"spool {path}: {exc}")


def _ack_ranges(ids: set[int]) -> list[tuple[int, int]]:
    """Consecutive ids as (first, last) ranges: in-order acks become one DELETE."""
    ranges: list[tuple[int, int]] = []
    for value in sorted(ids):
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges


def _connect(path: Path, full_sync: bool) -> sqlite3.Connection:
    """Open, lock and check the file; create the schema in an empty one. Raises _Damaged or RnnedgeError."""
    try:
        con = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise RnnedgeError(f"cannot open spool {path}: {exc}") from None
    try:
        # Exclusive locking before the first read: no shared-memory file, and a second process is refused at once.
        con.execute("PRAGMA locking_mode = EXCLUSIVE")
        application_id = con.execute("PRAGMA application_id").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
        empty = application_id == 0 and con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if not empty and application_id != APPLICATION_ID:  # checked before any write: never alter such a file
            raise RnnedgeError(f"{path} is a SQLite database but not an rnnedge spool: choose another spool path")
        if not empty and version != SCHEMA_VERSION:
            raise RnnedgeError(f"spool {path} has schema version {version}; this rnnedge reads {SCHEMA_VERSION}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute(f"PRAGMA synchronous = {'FULL' if full_sync else 'NORMAL'}")
        con.execute("PRAGMA journal_size_limit = 4194304")
        if empty:
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                con.execute(statement)
            con.executemany("INSERT INTO counter VALUES (?, 0)", [(name,) for name in _COUNTERS])
            con.execute("COMMIT")
        problems = [row[0] for row in con.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise _Damaged(problems[0])
        return con
    except sqlite3.Error as exc:
        con.close()
        if _code(exc) in (_CORRUPT, _NOTADB):
            raise _Damaged(str(exc)) from None
        raise _failure(path, exc) from None
    except BaseException:
        con.close()
        raise


def _move_aside(path: Path) -> Path:
    """Rename the damaged file (and its WAL) out of the way, keeping it for inspection: nothing is deleted."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    try:
        path.rename(aside)
        for suffix in ("-wal", "-shm", "-journal"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.rename(aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise RnnedgeError(f"spool {path} is damaged and cannot be moved aside: {exc.strerror or exc}") from None
    return aside


def _carry_over(damaged: Path, con: sqlite3.Connection) -> int:
    """Copy the counters and every message still readable (oldest first, up to the first bad page) into `con`.

    Reads a scratch copy, so the file moved aside stays exactly as it was found.
    """
    scratch = damaged.with_name(damaged.name + ".salvage")
    counters = dict.fromkeys(_COUNTERS, 0)
    old = None
    try:
        shutil.copyfile(damaged, scratch)
        if damaged.with_name(damaged.name + "-wal").exists():
            shutil.copyfile(damaged.with_name(damaged.name + "-wal"), scratch.with_name(scratch.name + "-wal"))
        _fit_page_count(scratch)
        old = sqlite3.connect(scratch, timeout=0, isolation_level=None)
    except (OSError, sqlite3.Error):
        pass  # nothing readable: the recovery is still counted below
    try:
        con.execute("BEGIN")
        if old is not None:
            counters.update(_readable_counters(old))
            batch: list[tuple] = []
            for id_, topic, payload, retain in _readable_rows(old):
                if isinstance(id_, int) and isinstance(topic, str) and isinstance(payload, bytes):
                    batch.append((id_, topic, payload, int(bool(retain)), len(topic.encode()) + len(payload)))
                    counters["last_id"] = max(counters["last_id"], id_)
                if len(batch) == 500:
                    con.executemany(_SALVAGE, batch)
                    batch.clear()
            con.executemany(_SALVAGE, batch)
        counters["recoveries"] += 1
        con.executemany("UPDATE counter SET value = ? WHERE name = ?", [(v, k) for k, v in counters.items()])
        carried = con.execute("SELECT count(*) FROM message").fetchone()[0]
        con.execute("COMMIT")
    finally:
        if old is not None:
            old.close()
        for suffix in ("", "-wal", "-shm"):
            scratch.with_name(scratch.name + suffix).unlink(missing_ok=True)
    return carried


def _fit_page_count(path: Path) -> None:
    """A truncated file's header still counts the lost pages, and SQLite then refuses every page: fix the count."""
    with path.open("r+b") as file:
        header = file.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            return
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512:
            return
        pages = file.seek(0, 2) // page_size
        if pages < int.from_bytes(header[28:32], "big"):
            file.truncate(pages * page_size)
            file.seek(28)
            file.write(pages.to_bytes(4, "big"))


def _readable_counters(old: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = old.execute("SELECT name, value FROM counter").fetchall()
    except sqlite3.Error:
        return {}
    return {name: value for name, value in rows if name in _COUNTERS and isinstance(value, int)}


def _readable_rows(old: sqlite3.Connection) -> Iterator[tuple]:
    """The damaged file's messages in id order, one at a time, up to the first page SQLite cannot read."""
    try:
        rows = old.execute("SELECT id, topic, payload, retain FROM message ORDER BY id")
        while (row := rows.fetchone()) is not None:
            yield row
    except sqlite3.Error:
        return


class Spool:
    """A durable FIFO of outgoing MQTT messages, bounded in bytes; use `Spool.open`."""

    def __init__(
        self, con: sqlite3.Connection, path: Path, max_bytes: int, fsync_interval: float, recovery: str | None
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync_interval = fsync_interval
        self.recovery = recovery  # one line to log when a damaged file was moved aside at open, else None
        self._con = con
        self._lock = threading.Lock()  # the connection and the counters below
        self._ack_lock = threading.Lock()  # only the ack buffer: never held during I/O
        self._acked: set[int] = set()
        self._closed = False
        self._unsynced = False
        self._synced_at = time.monotonic()
        counters = dict(con.execute("SELECT name, value FROM counter").fetchall())
        self._last_id = counters["last_id"]
        self._dropped_messages = counters["dropped_messages"]
        self._dropped_bytes = counters["dropped_bytes"]
        self._recoveries = counters["recoveries"]
        count, total = con.execute("SELECT count(*), coalesce(sum(size), 0) FROM message").fetchone()
        self._messages, self._bytes = count, total
        if self._bytes > max_bytes:  # the bound may have been lowered since the last run
            with self._lock:
                self._commit([], self._last_id)

    @classmethod
    def open(cls, path: str | Path, max_bytes: int, fsync_interval: float = 1.0) -> Spool:
        """Open or create the spool at `path`; a damaged file is moved aside and salvaged (see `recovery`)."""
        path = Path(path)
        if max_bytes <= 0:
            raise RnnedgeError(f"spool size limit must be a positive number of bytes, got {max_bytes}")
        if fsync_interval < 0:
            raise RnnedgeError(f"spool fsync interval must be >= 0 seconds, got {fsync_interval}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RnnedgeError(f"cannot create the spool directory {path.parent}: {exc.strerror or exc}") from None
        full_sync = fsync_interval == 0
        recovery = None
        try:
            con = _connect(path, full_sync)
        except _Damaged as damage:
            aside = _move_aside(path)
            con = _connect(path, full_sync)
            try:
                carried = _carry_over(aside, con)
            except sqlite3.Error as exc:
                con.close()
                raise _failure(path, exc) from None
            recovery = (
                f"spool {path} was damaged ({damage}): moved to {aside.name}, {carried} readable messages carried over"
            )
        try:
            return cls(con, path, max_bytes, fsync_interval, recovery)
        except sqlite3.Error as exc:
            con.close()
            raise _failure(path, exc) from None
        except RnnedgeError:
            con.close()
            raise

    def append(self, topic: str, payload: str | bytes, retain: bool = False) -> int:
        """Store one message durably (committed on return) and give its id."""
        return self.append_many([(topic, payload)], retain)[0]

    def append_many(self, messages: Iterable[tuple[str, str | bytes]], retain: bool = False) -> range:
        """Store `(topic, payload)` pairs in one transaction (committed on return); their ids are consecutive."""
        with self._lock:
            first = next_id = self._last_id + 1
            rows = []
            too_big = too_big_bytes = 0
            for topic, payload in messages:
                data = payload.encode() if isinstance(payload, str) else bytes(payload)
                size = len(topic.encode()) + len(data)
                if size > self.max_bytes:
                    too_big += 1
                    too_big_bytes += size
                else:
                    rows.append((next_id, topic, data, int(retain), size))
                next_id += 1
            if next_id > first:
                self._commit(rows, next_id - 1, too_big, too_big_bytes)
            return range(first, next_id)

    def pending(self, after: int = 0, limit: int = 1000) -> list[SpooledMessage]:
        """Up to `limit` unacknowledged messages with id > `after`, oldest first: what the publisher sends next."""
        with self._lock:
            try:
                rows = self._con.execute(
                    "SELECT id, topic, payload, retain FROM message WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
                ).fetchall()
            except sqlite3.Error as exc:
                raise _failure(self.path, exc) from None
        with self._ack_lock:
            acked = self._acked
            return [SpooledMessage(i, t, p, bool(r)) for i, t, p, r in rows if i not in acked]

    def mark_acked(self, ids: Iterable[int]) -> None:
        """Forget delivered messages, in any order, from any thread: memory only, persisted with the next write."""
        with self._ack_lock:
            self._acked.update(ids)

    def flush(self) -> None:
        """Persist buffered acks, and fsync if `fsync_interval` has passed: call it about once a second when idle."""
        with self._lock:
            if self._acked:
                self._commit([], self._last_id)
            self._sync()

    def stats(self) -> SpoolStats:
        """Exact depth and cumulative counters (persists buffered acks first, so depth excludes them)."""
        with self._lock:
            if self._acked:
                self._commit([], self._last_id)
            return SpoolStats(
                self._messages,
                self._bytes,
                self._last_id,
                self._dropped_messages,
                self._dropped_bytes,
                self._recoveries,
            )

    def close(self) -> None:
        """Persist acks, fsync and close the file; later acks from a late network thread are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._acked:
                    self._commit([], self._last_id)
                self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise _failure(self.path, exc) from None
            finally:
                self._con.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _commit(self, rows: list[tuple], last_id: int, too_big: int = 0, too_big_bytes: int = 0) -> None:
        """One transaction: delete buffered acks, insert `rows`, drop the oldest past the bound, save counters."""
        with self._ack_lock:
            acked, self._acked = self._acked, set()
        con = self._con
        messages, size = self._messages, self._bytes
        dropped, dropped_bytes = self._dropped_messages + too_big, self._dropped_bytes + too_big_bytes
        try:
            con.execute("BEGIN")
            for low, high in _ack_ranges(acked):
                sizes = con.execute("DELETE FROM message WHERE id BETWEEN ? AND ? RETURNING size", (low, high))
                for (gone,) in sizes.fetchall():
                    messages -= 1
                    size -= gone
            if rows:
                con.executemany(_INSERT, rows)
                messages += len(rows)
                size += sum(row[4] for row in rows)
            if size > self.max_bytes:
                count, freed = self._drop_oldest(size - self.max_bytes)
                messages, size = messages - count, size - freed
                dropped, dropped_bytes = dropped + count, dropped_bytes + freed
            changed = [("last_id", last_id)] if last_id != self._last_id else []
            if dropped != self._dropped_messages:
                changed += [("dropped_messages", dropped), ("dropped_bytes", dropped_bytes)]
            con.executemany("UPDATE counter SET value = ? WHERE name = ?", [(v, k) for k, v in changed])
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                if con.in_transaction:
                    con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            with self._ack_lock:
                self._acked |= acked
            raise _failure(self.path, exc) from None
        self._messages, self._bytes, self._last_id = messages, size, last_id
        self._dropped_messages, self._dropped_bytes = dropped, dropped_bytes
        self._unsynced = True
        self._sync()

    def _drop_oldest(self, excess: int) -> tuple[int, int]:
        """Delete the oldest messages until `excess` bytes are freed; return (messages, bytes) dropped."""
        count = freed = 0
        last = None
        oldest = self._con.execute("SELECT id, size FROM message ORDER BY id")
        try:
            for message_id, gone in oldest:
                count += 1
                freed += gone
                last = message_id
                if freed >= excess:
                    break
        finally:
            oldest.close()
        if last is not None:
            self._con.execute("DELETE FROM message WHERE id <= ?", (last,))
        return count, freed

    def _sync(self) -> None:
        """Bound what a power cut can lose: once per interval, a checkpoint fsyncs the WAL and the database file."""
        if self.fsync_interval == 0 or not self._unsynced:
            return  # synchronous=FULL already fsynced every commit
        now = time.monotonic()
        if now - self._synced_at >= self.fsync_interval:
            try:
                self._con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                raise _failure(self.path, exc) from None
            self._synced_at = now
            self._unsynced = False
