"""Where samples come from: CSV replay, JSON lines on stdin, MQTT subscriptions.

Every source runs its producer in a thread and hands `Sample`, `Rejected` and finally `EndOfStream` items to the
engine through its own bounded `SampleQueue`; the engine, in the main thread, calls `take(max_items, timeout)` to
block until something arrives and drain up to a batch at once. When a queue is full:
- replayed input (CSV, stdin) waits: backpressure, never a lost row (a pipe writer is slowed down in turn);
- MQTT input drops the *newest* message and counts it in `dropped`: a broker delivers as fast as it is fed, and
  an engine that queued everything would fall minutes behind real time with unbounded memory. Dropping the newest
  keeps what is queued in order and lets each stream see one gap (the engine's gap reset then re-warms it).

The queue size bounds how far the engine can fall behind: 10,000 samples is about 0.15 s of its work with
1,000 streams (60,000 samples/s with JSON, docs/BENCHMARKS.md), 0.4 s for a single stream. After `stop`, or
once a source has ended by itself, its queue ends with exactly one `EndOfStream` and takes nothing more, so
draining until `finished` loses nothing that was produced.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from edge_runtime.csv_source import CsvRow, CsvRows
from edge_runtime.errors import InputError, RnnedgeError
from edge_runtime.mqtt_client import PROTOCOLS
from edge_runtime.payloads import parse_json_line, parse_payload, parse_timestamp
from edge_runtime.samples import EndOfStream, Rejected, Sample, stream_id_problem

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from edge_runtime.bundle import Manifest
    from edge_runtime.config import RuntimeConfig
    from edge_runtime.mqtt_client import MqttSettings

log = logging.getLogger("rnnedge.source")

Item = Sample | Rejected | EndOfStream
QUEUE_SIZE = 10_000
# a replay waits for room, so its queue need only stay ahead of the engine's batches (1,024 by default); each
# queued sample is a few hundred bytes, and a 10,000-deep queue that is always full costs 3-4 MB
REPLAY_QUEUE_SIZE = 2048
REPLAY_CHUNK = 256  # rows handed over per lock acquisition when replaying as fast as possible


class SampleQueue:
    """A bounded hand-over from one producer thread to the engine's thread."""

    def __init__(self, capacity: int = QUEUE_SIZE) -> None:
        if capacity < 1:
            raise RnnedgeError(f"queue capacity {capacity} must be at least 1")
        self.capacity = capacity
        self.dropped = 0  # items refused by `offer` because the queue was full
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._ended = False

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, items: Sequence[Item]) -> bool:
        """Append all, waiting for room as long as needed (backpressure); False if closed meanwhile."""
        done = 0
        with self._lock:
            while done < len(items):
                if self._closed:
                    return False
                room = self.capacity - len(self._items)
                if room <= 0:
                    self._not_full.wait()
                    continue
                chunk = items[done : done + room]
                self._items.extend(chunk)
                done += len(chunk)
                self._not_empty.notify()
        return True

    def offer(self, item: Item) -> bool:
        """Append without waiting; when full, drop `item` (the newest), count it and return False."""
        with self._lock:
            if self._closed or len(self._items) >= self.capacity:
                self.dropped += 1
                return False
            self._items.append(item)
            self._not_empty.notify()
            return True

    def put_end(self, end: EndOfStream) -> None:
        """Close the queue to producers and append the end marker, once; it may exceed the capacity by one, so
        the engine always sees it."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
            if not self._ended:
                self._ended = True
                self._items.append(end)
                self._not_empty.notify()

    def take(self, max_items: int, timeout: float | None) -> list[Item]:
        """Up to `max_items` items, oldest first; waits up to `timeout` s (None: forever) when empty."""
        with self._lock:
            if not self._items and timeout != 0:
                self._not_empty.wait_for(lambda: self._items, timeout)
            count = min(max_items, len(self._items))
            if count == len(self._items):
                batch = list(self._items)
                self._items.clear()
            else:
                pop = self._items.popleft
                batch = [pop() for _ in range(count)]
            if batch:
                self._not_full.notify_all()
            return batch


class Source:
    """A producer thread feeding a `SampleQueue`. The engine calls `start`, then `take` until `finished`, `stop`."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.queue = SampleQueue(capacity)
        self.received = 0  # rows, lines or messages read
        self.invalid = 0  # of which became `Rejected`
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._end: EndOfStream | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"rnnedge-{self.name}", daemon=True)
        self._thread.start()

    def take(self, max_items: int, timeout: float | None) -> list[Item]:
        """Up to `max_items` items, oldest first, waiting up to `timeout` s (None: forever) while there are none."""
        batch = self.queue.take(max_items, timeout)
        if batch and type(batch[-1]) is EndOfStream:
            self._end = batch[-1]
        return batch

    @property
    def finished(self) -> bool:
        """True once `take` has returned the end marker: everything the source produced has been taken."""
        return self._end is not None

    @property
    def error(self) -> str | None:
        """Why the source ended early (one line), or None."""
        return self._end.error if self._end else None

    def stats(self) -> dict[str, int]:
        """Counters for the metrics message."""
        return {
            "received": self.received,
            "invalid": self.invalid,
            "dropped": self.queue.dropped,
            "queued": len(self.queue),
        }

    def stop(self, timeout: float = 1.0) -> None:
        """Stop producing and end the queue; idempotent. A thread blocked reading a pipe is left to die with the
        process (it can add nothing more)."""
        self._stopping.set()
        self.queue.put_end(EndOfStream(self.name))
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        error = None
        try:
            self._produce()
        except Exception as exc:  # a failed read, or a CSV row the csv module cannot split: end, say why
            error = f"{self.name} stopped: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
            log.error("%s", error)
        self.queue.put_end(EndOfStream(self.name, error))

    def _produce(self) -> None:
        raise NotImplementedError

    def _count(self, item: Sample | Rejected) -> Sample | Rejected:
        self.received += 1
        if type(item) is Rejected:
            self.invalid += 1
        return item


class ReplayClock:
    """When each sample of a paced replay is due: its time after the first sample's, divided by `pace`."""

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.first_ts: float | None = None

    def due(self, ts: float) -> float:
        """Seconds after the replay's start; never negative (a timestamp going back is due at once)."""
        if self.first_ts is None:
            self.first_ts = ts
        return max(0.0, (ts - self.first_ts) / self.pace)


class CsvReplaySource(Source):
    """Rows of a CSV file as samples of one stream, as fast as possible (`pace=None`) or paced by their
    timestamps (`pace=1.0` real time, `10` ten times faster). A file without a time column has its rows numbered
    0, 1, 2, ... and taken as 1 s apart; pacing it is refused. Bad rows become `Rejected` naming their line."""

    def __init__(
        self,
        path: Path,
        features: Sequence[str],
        time_column: str | None = "auto",
        stream: str | None = None,
        pace: float | None = None,
        capacity: int = REPLAY_QUEUE_SIZE,
    ) -> None:
        path = Path(path)
        if pace is not None and not (math.isfinite(pace) and pace > 0):
            raise RnnedgeError(f"pace {pace} is not a positive number (1 = real time, 10 = ten times faster)")
        stream = stream or path.stem
        problem = stream_id_problem(stream)
        if problem:
            raise RnnedgeError(f"{path}: {problem}")
        rows = CsvRows(path, features, time_column)  # missing file or column: InputError, nothing streamed
        if pace is not None and rows.time_column is None:
            rows.close()
            raise InputError(f"{path}: pacing needs timestamps and the file has no time column (name one)")
        super().__init__(f"csv {path.name}", capacity)
        self.path = path
        self.stream = stream
        self.clock = ReplayClock(pace) if pace is not None else None
        self.started_at: float | None = None  # time.monotonic() when the first row was handed over
        self._rows = rows

    def _item(self, row: CsvRow) -> Sample | Rejected:
        if row.values is None:
            return Rejected(self.stream, row.problem, f"{self.path.name} line {row.line}")
        try:
            ts, ts_text = parse_timestamp(row.timestamp)
        except ValueError as problem:
            return Rejected(self.stream, str(problem), f"{self.path.name} line {row.line}")
        return Sample(self.stream, ts, ts_text, row.values)

    def _produce(self) -> None:
        with self._rows as rows:  # closes the file however the replay ends
            self.started_at = time.monotonic()
            if self.clock is None:
                self._replay_fast(rows)
            else:
                self._replay_paced(rows, self.clock)

    def _replay_fast(self, rows: Iterable[CsvRow]) -> None:
        chunk: list[Item] = []
        try:
            for row in rows:
                chunk.append(self._count(self._item(row)))
                if len(chunk) >= REPLAY_CHUNK:
                    if not self.queue.put_many(chunk):
                        return
                    chunk = []
        finally:  # rows read before a failure are delivered before the end marker
            self.queue.put_many(chunk)

    def _replay_paced(self, rows: Iterable[CsvRow], clock: ReplayClock) -> None:
        for row in rows:
            item = self._count(self._item(row))
            if type(item) is Sample:
                wait = self.started_at + clock.due(item.ts) - time.monotonic()
                if wait > 0 and self._stopping.wait(wait):
                    return
            if not self.queue.put_many((item,)):
                return


class JsonLinesSource(Source):
    """One payload per line (see edge_runtime.payloads), e.g. from stdin; `"stream": "..."` in an object picks
    its stream (default `default_stream`), so one pipe can carry many streams. Blank lines are skipped."""

    def __init__(
        self,
        stream_file: BinaryIO,
        features: Sequence[str],
        default_stream: str = "stdin",
        max_bytes: int = 4096,
        capacity: int = QUEUE_SIZE,
        name: str = "stdin",
    ) -> None:
        problem = stream_id_problem(default_stream)
        if problem:
            raise RnnedgeError(problem)
        super().__init__(name, capacity)
        self.lines = getattr(stream_file, "buffer", stream_file)  # a text stream's bytes: no decoding of ours
        self.features = tuple(features)
        self.default_stream = default_stream
        self.max_bytes = max_bytes

    def _skip_rest_of_line(self) -> int:
        skipped = 0
        while True:
            part = self.lines.readline(65536)
            skipped += len(part)
            if not part or part.endswith(b"\n"):
                return skipped

    def _produce(self) -> None:
        limit = self.max_bytes + 2  # room for "\r\n"
        number = 0
        while not self._stopping.is_set():
            line = self.lines.readline(limit)
            if not line:
                return
            number += 1
            where = f"{self.name} line {number}"
            if len(line) == limit and not line.endswith(b"\n"):
                size = len(line) + self._skip_rest_of_line()
                item: Item = Rejected(
                    self.default_stream,
                    f"payload too large: a line of {size} bytes, the limit is {self.max_bytes}",
                    where,
                )
            else:
                line = line.strip()
                if not line:
                    continue
                item = parse_json_line(line, self.default_stream, self.features, self.max_bytes, time.time(), where)
            if not self.queue.put_many((self._count(item),)):
                return


class TopicRoute:
    """A topic filter and the template naming the stream of each topic it matches.

    Template syntax: `{1}`, `{2}`, ... the topic level matched by the first, second, ... `+` of the filter;
    `{#}` the levels matched by a final `#` (joined with `/`); `{topic}` the whole topic; any other text is
    kept. An empty template means the whole topic. Example: filter `sensors/+/temperature`, template `{1}`:
    topic `sensors/boiler-2/temperature` is stream `boiler-2`; template `{1}-t` makes it `boiler-2-t`.
    """

    _PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

    def __init__(self, topic_filter: str, template: str | None = None) -> None:
        self.filter = topic_filter
        self.template = template or ""
        self.levels = topic_filter.split("/")
        problem = self._filter_problem()
        if problem:
            raise RnnedgeError(f"subscription {topic_filter!r}: {problem}")
        pluses = self.levels.count("+")
        for name in self._PLACEHOLDER.findall(self.template):
            if name == "#" and self.levels[-1] != "#":
                raise RnnedgeError(f"stream template {self.template!r}: {{#}} needs a filter ending in '#'")
            if name.isdigit() and not 1 <= int(name) <= pluses:
                raise RnnedgeError(
                    f"stream template {self.template!r}: {{{name}}} but {topic_filter!r} has {pluses} '+' wildcard(s)"
                )
            if not (name.isdigit() or name in ("#", "topic")):
                raise RnnedgeError(
                    f"stream template {self.template!r}: unknown {{{name}}} (use {{1}}, {{2}}, ..., {{#}}, {{topic}})"
                )
        if "{" in self._PLACEHOLDER.sub("", self.template) or "}" in self._PLACEHOLDER.sub("", self.template):
            raise RnnedgeError(f"stream template {self.template!r} has an unmatched brace")

    def _filter_problem(self) -> str | None:
        if not self.filter or "\0" in self.filter or len(self.filter.encode()) > 65535:
            return "not a valid topic filter"
        for i, level in enumerate(self.levels):
            if "#" in level and (level != "#" or i != len(self.levels) - 1):
                return "'#' must be a whole level, the last one"
            if "+" in level and level != "+":
                return "'+' must be a whole level"
        return None

    def match(self, topic: str) -> list[str] | None:
        """The wildcard values (`+` levels in order, then the `#` remainder) if `topic` matches, else None."""
        levels = topic.split("/")
        values = []
        for i, wanted in enumerate(self.levels):
            if wanted == "#":
                if topic.startswith("$") and i == 0:
                    return None
                values.append("/".join(levels[i:]))
                return values
            if i >= len(levels):
                return None
            if wanted == "+":
                if topic.startswith("$") and i == 0:
                    return None
                values.append(levels[i])
            elif wanted != levels[i]:
                return None
        return values if len(levels) == len(self.levels) else None

    def stream(self, topic: str, values: list[str]) -> str:
        if not self.template:
            return topic

        def fill(placeholder: re.Match[str]) -> str:
            name = placeholder.group(1)
            if name == "topic":
                return topic
            return values[-1] if name == "#" else values[int(name) - 1]

        return self._PLACEHOLDER.sub(fill, self.template)


class MqttSubscriptionSource(Source):
    """Samples from MQTT subscriptions (QoS 1), one stream per topic as its route's template says.

    Connects in `start` (an unreachable broker, refused credentials, failed TLS or a refused subscription is a
    one-line RnnedgeError then); afterwards paho reconnects by itself with backoff, and every (re)connection
    subscribes again. The first matching subscription, in the order given, names a message's stream. At most
    `max_streams` streams: a message for a stream beyond them becomes `Rejected` (counted in `streams_refused`).
    """

    def __init__(
        self,
        settings: MqttSettings,
        subscriptions: Sequence[tuple[str, str | None]],
        features: Sequence[str],
        *,
        client_id: str | None = None,
        max_payload_bytes: int = 4096,
        max_streams: int = 1000,
        capacity: int = QUEUE_SIZE,
        connect_timeout: float = 10.0,
        reconnect_delay: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        if not subscriptions:
            raise RnnedgeError("the mqtt source needs at least one subscription")
        self.routes = [TopicRoute(topic_filter, template) for topic_filter, template in subscriptions]
        self.settings = settings
        self.address = settings.address  # a bad URL fails here, without showing the password
        super().__init__(f"mqtt {self.address}", capacity)
        self.features = tuple(features)
        self.client_id = client_id or f"rnnedge-in-{socket.gethostname() or 'device'}-{os.getpid()}"
        self.max_payload_bytes = max_payload_bytes
        self.max_streams = max_streams
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.connects = 0
        self.streams_refused = 0
        self.errors = 0  # messages lost to a bug in this source (logged)
        self.subscriptions_refused = 0
        self._streams: set[str] = set()
        self._topic_streams: dict[str, tuple[str | None, str | None]] = {}  # topic -> (stream, problem)
        self._state = threading.Condition()
        self._connected = False
        self._subscribed_at = 0  # the `connects` value of the last connection whose subscriptions were granted
        self._subscribe_mid: int | None = None
        self._refusal: str | None = None
        self._client: mqtt.Client | None = None

    # --- the engine's thread --------------------------------------------------------------------------------
    def start(self) -> None:
        import ssl  # already loaded by then: paho imports it

        client = self.settings.client(self.client_id)
        client.reconnect_delay_set(*self.reconnect_delay)
        client.suppress_exceptions = True  # an exception in a callback must not kill paho's network thread
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        try:
            client.connect(self.address.host, self.address.port, keepalive=self.settings.keepalive)
        except ssl.SSLError as exc:
            raise RnnedgeError(f"TLS with MQTT broker {self.address} failed: {exc.strerror or exc}") from None
        except OSError as exc:
            raise RnnedgeError(f"cannot reach MQTT broker {self.address}: {exc.strerror or exc}") from None
        self._client = client
        client.loop_start()
        with self._state:
            self._state.wait_for(lambda: self._refusal or self._subscribed_at, self.connect_timeout)
            refusal, subscribed = self._refusal, self._subscribed_at
        if refusal or not subscribed:
            self.stop()
            raise RnnedgeError(
                refusal or f"MQTT broker {self.address} did not answer within {self.connect_timeout:g} s"
            )

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected with every subscription granted (after a reconnection too); False on timeout."""
        with self._state:
            return self._state.wait_for(lambda: self._connected and self._subscribed_at == self.connects, timeout)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def stats(self) -> dict[str, int]:
        return {
            **super().stats(),
            "streams": len(self._streams),
            "streams_refused": self.streams_refused,
            "subscriber_reconnects": self.reconnects,
        }

    def stop(self, timeout: float = 1.0) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.queue.put_end(EndOfStream(self.name))

    # --- paho's network thread ------------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            with self._state:
                self._refusal = f"MQTT broker {self.address} refused the connection: {reason}"
                self._state.notify_all()
            log.warning("%s; retrying", self._refusal)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        v5 = client.protocol == PROTOCOLS["5"]
        topics = [(route.filter, SubscribeOptions(qos=1) if v5 else 1) for route in self.routes]
        with self._state:
            self.connects += 1
            self._connected = True
            self._refusal = None
            self._subscribe_mid = client.subscribe(topics)[1]
        if self.connects > 1:
            log.info("reconnected to %s (reconnect %d), subscribing again", self.address, self.reconnects)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._state:
            self._connected = False
        if not self._stopping.is_set():
            log.warning("lost the connection to %s (%s); reconnecting", self.address, reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list, properties: Any) -> None:
        refused = [
            f"{route.filter!r} ({code})" for route, code in zip(self.routes, reasons, strict=False) if code.is_failure
        ]
        with self._state:
            if mid != self._subscribe_mid:
                return
            if refused:
                self.subscriptions_refused += len(refused)
                self._refusal = f"MQTT broker {self.address} refused the subscription to {', '.join(refused)}"
            else:
                self._subscribed_at = self.connects
            self._state.notify_all()
        if refused:
            log.warning("%s", self._refusal)

    def _stream_of(self, topic: str) -> tuple[str | None, str | None]:
        """(stream, None) or (stream or None, why the topic cannot name a stream)."""
        for route in self.routes:
            values = route.match(topic)
            if values is not None:
                stream = route.stream(topic, values)
                return stream, stream_id_problem(stream)
        return None, "the topic matches no subscription"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._receive(message.topic, message.payload)
        except Exception:  # a bug, not bad input (that is Rejected): say so, and keep the subscription alive
            self.errors += 1
            if self.errors <= 10:
                log.exception("internal error on a message from %s (dropped)", message.topic)

    def _receive(self, topic: str, payload: bytes) -> None:
        known = self._topic_streams.get(topic)
        if known is None:
            if len(self._topic_streams) > 4 * self.max_streams + 1000:  # bounded even when topics are junk
                self._topic_streams.clear()
            known = self._topic_streams[topic] = self._stream_of(topic)
        stream, problem = known
        if problem is not None:
            item: Sample | Rejected = Rejected(stream, problem, topic)
        else:
            item = parse_payload(payload, stream, self.features, self.max_payload_bytes, time.time(), topic)
            if type(item) is Sample and stream not in self._streams:
                if len(self._streams) >= self.max_streams:
                    self.streams_refused += 1
                    item = Rejected(
                        stream, f"max_streams={self.max_streams} reached: new stream {stream!r} refused", topic
                    )
                else:
                    self._streams.add(stream)
        self.queue.offer(self._count(item))


def open_source(config: RuntimeConfig, manifest: Manifest) -> Source:
    """The source a run's configuration asks for. Files and columns are checked here, the broker in `start`."""
    features = manifest.features
    if config.source == "csv":
        time_column = config.time_column or manifest.time_column or "auto"
        return CsvReplaySource(config.path, features, time_column, config.stream, config.pace)
    if config.source == "stdin":
        return JsonLinesSource(sys.stdin.buffer, features, config.stream or "stdin", config.max_payload_bytes)
    if config.source == "mqtt":
        return MqttSubscriptionSource(
            config.mqtt,
            [(subscription.topic, subscription.stream) for subscription in config.subscriptions],
            features,
            client_id=f"{config.mqtt_client_id}-in",
            max_payload_bytes=config.max_payload_bytes,
            max_streams=config.max_streams,
        )
    raise RnnedgeError(f"source {config.source!r} is not supported (supported: csv, stdin, mqtt)")
