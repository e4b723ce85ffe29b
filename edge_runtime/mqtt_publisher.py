"""QoS 1 publishing through the durable spool, with a retained online/offline status.

Every message is appended to the spool first and published from it; the spool entry is deleted only when the
broker acknowledges it. So forecasts made while the broker is down, or in flight when the process dies, are
published after reconnect or restart (consumers drop duplicates by sequence number). What was in flight when a
connection was lost is sent again by the publisher itself, on a new paho client, within the window of the new
connection (paho would send it all at once, whatever the broker now accepts).

The client's network I/O runs in the caller's thread, in `pump`, not in paho's own thread: with paho's thread,
every publish wakes it and the two threads trade the GIL per message (a bare publisher here reached 7,600-9,000
messages/s that way, 11,600 and more this way). Only connecting, which can block for seconds (TCP, TLS), runs in
a short-lived thread, and the client is left alone until it ends.
"""

from __future__ import annotations

import select
import ssl
import threading
import time
from collections import deque
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt

from edge_runtime.errors import RnnedgeError
from edge_runtime.mqtt_client import MqttSettings
from edge_runtime.spool import Spool, SpooledMessage

ONLINE, OFFLINE = "online", "offline"
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 15.0  # the wait before the next attempt doubles from min to max
CONNACK_TIMEOUT_S = 30.0  # a connection whose CONNECT got no answer by then is dropped and tried again
# MQTT 5 PUBACK reason codes that refuse a message for now, not for good: unspecified error, packet identifier in
# use, quota exceeded. Such a message stays in the spool and is sent again after DEFER_S; any other failure code
# (0x87 not authorized, 0x90 topic name invalid, 0x99 payload format invalid, ...) would refuse it again.
TRANSIENT_REFUSALS = frozenset({0x80, 0x91, 0x97})
DEFER_S = 1.0


class Direct(NamedTuple):
    """A message sent without the spool: the status, replies to commands, retained configuration."""

    topic: str
    payload: str | bytes
    retain: bool


Outgoing = SpooledMessage | Direct


class SpooledPublisher:
    """Call `enqueue` with new messages and `pump` often (every loop turn, at least a few times a second): pump
    does the network I/O, so subscription callbacks run inside it, in the caller's thread."""

    def __init__(
        self, settings: MqttSettings, client_id: str, status_topic: str, spool: Spool, window: int = 1000
    ) -> None:
        self.settings = settings
        self.status_topic = status_topic
        self.spool = spool
        self.window = window
        self.connects = 0
        self.rejected_by_broker = 0  # MQTT 5: refused for good (e.g. by the broker's ACL): dropped, counted
        self.deferred_by_broker = 0  # MQTT 5: refused for now (e.g. quota exceeded): kept and sent again
        self.delivered = 0  # spooled messages settled: acknowledged, or refused for good
        self.tracked: int | None = None  # a spooled message whose acceptance someone waits for (`track`)
        self.tracked_accepted = False
        self.last_problem = ""  # why the last connection attempt failed, for the operator (never a secret)
        self._connected = False
        self._acks: list[tuple[int, int]] = []  # (mid, MQTT 5 failure code or 0) acknowledged since the last pump
        self._inflight: dict[int, Outgoing] = {}  # paho mid -> what was sent
        self._direct: deque[Direct] = deque()  # waiting for the connection or for room in the window
        # refused for now, with the time to send each again; they keep their place in the window, so a broker
        # that keeps refusing holds back new messages (they wait in the spool) instead of filling memory
        self._deferred: deque[tuple[float, Outgoing]] = deque()
        self._cursor = 0
        self._broker_window = window
        self.on_connected: list = []  # callables run by pump after each (re)connection
        self.subscriptions: dict[str, Any] = {}  # topic -> callable(payload), run within pump: keep it short
        self.commands: set[str] = set()  # subscribed topics that carry commands: a retained one is never obeyed
        self._reconnected = False
        self._connecting: threading.Thread | None = None
        self._next_attempt = 0.0  # monotonic time of the next connection attempt
        self._retry_delay = RECONNECT_MIN_S
        self._attempt_started = 0.0  # monotonic time the last connection attempt began
        self.connack_timeout = CONNACK_TIMEOUT_S
        self.client_id = client_id
        self.client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        """A configured paho client. Each connection after one that left messages in flight gets a new one:
        paho would send all of those again at once on reconnecting, beyond what a broker that came back with a
        lower MQTT 5 Receive Maximum accepts; the publisher sends them again itself, within the window."""
        client = self.settings.client(self.client_id)
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        # the window is kept here (pump): paho's own limit scans every in-flight message at each acknowledgement
        # (86 us per message at a window of 1000), and 0 switches that scan off
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _start_afresh(self) -> None:
        """Before connecting again: what the lost connection left in flight goes back to be sent from the spool
        (or the direct queue), on a new client that knows nothing of it."""
        items = list(self._inflight.values())
        self._inflight.clear()
        self._direct.extendleft(reversed([item for item in items if isinstance(item, Direct)]))
        spooled = [item.id for item in items if isinstance(item, SpooledMessage)]
        # refused-for-now spooled messages are re-read from the spool as well
        spooled += [item.id for _, item in self._deferred if isinstance(item, SpooledMessage)]
        self._deferred = deque((due, item) for due, item in self._deferred if isinstance(item, Direct))
        if spooled:
            self._cursor = min(self._cursor, min(spooled) - 1)
        self.client = self._new_client()
        address = self.settings.address
        self.client.connect_async(address.host, address.port, keepalive=self.settings.keepalive)

    def _attempt_connection(self) -> None:
        """In the connecting thread: one attempt (TCP, TLS, CONNECT); the CONNACK is read later by `pump`.
        A failure keeps its reason (TLS, refused, unreachable) for the operator."""
        try:
            self.client.reconnect()
        except ssl.SSLCertVerificationError as exc:
            self.last_problem = f"TLS certificate verification failed ({exc.verify_message})"
        except OSError as exc:
            self.last_problem = f"cannot connect ({exc.strerror or exc})"
        except Exception as exc:  # noqa: BLE001 - a thread that dies would stop all future attempts silently
            self.last_problem = f"cannot connect ({exc})"

    # callbacks: paho calls them within pump ------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.last_problem = f"the broker refused the connection: {reason}"
            return
        self.last_problem = ""
        self._retry_delay = RECONNECT_MIN_S
        # MQTT 5 brokers announce how many QoS 1 messages they accept in flight; more is a protocol error
        # (mosquitto then drops the connection), so the window never exceeds it.
        self._broker_window = getattr(properties, "ReceiveMaximum", None) or self.window
        self.connects += 1
        self._direct.appendleft(Direct(self.status_topic, ONLINE, True))  # sent by pump, within the window
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._connected = True
        self._reconnected = True

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        callback = self.subscriptions.get(message.topic)
        if message.retain and message.topic in self.commands:
            return  # a command left retained by mistake would otherwise run again at every reconnection
        if callback is not None:
            callback(message.payload)

    def publish_retained(self, messages: list[tuple[str, str]]) -> None:
        """Retained configuration (e.g. Home Assistant discovery) sent directly: it is re-sent at every
        connection, so it needs no spool."""
        for topic, payload in messages:
            self.publish_now(topic, payload, retain=True)

    def publish_now(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        """Publish at QoS 1 without the spool (replies to commands, retained configuration): at once when
        connected and the window has room, else from a later pump. Never waits for a connection attempt."""
        self._direct.append(Direct(topic, payload, retain))
        self._publish_direct()

    def _publish_direct(self) -> None:
        while self._direct and self.connected and self._room > 0 and self._send(self._direct[0]):
            self._direct.popleft()

    def _send(self, item: Outgoing) -> bool:
        """Hand one message to paho; False if paho could not take it (it is then kept for a later pump).

        Only when connected, which implies that no connection attempt is running: the client is this thread's.
        If the connection drops meanwhile (NO_CONN) the message stays in flight, and is sent again on the next
        connection (`_start_afresh`)."""
        info = self.client.publish(item.topic, item.payload, qos=1, retain=item.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False  # e.g. its message id is still taken by a message paho has not settled
        self._inflight[info.mid] = item
        if isinstance(item, SpooledMessage):
            self._cursor = max(self._cursor, item.id)
        return True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        failed = reason is not None and reason.is_failure  # MQTT 5 only: e.g. 0x87 not authorized by the ACL
        self._acks.append((mid, reason.value if failed else 0))

    # the caller's thread -----------------------------------------------------------------------------------
    def start(self, wait: float = 0.0) -> None:
        """Connect in the background (the broker may be down: messages wait in the spool); `wait` s at most
        for the connection."""
        address = self.settings.address
        try:
            self.client.connect_async(address.host, address.port, keepalive=self.settings.keepalive)
        except (OSError, ValueError) as exc:
            raise RnnedgeError(f"cannot connect to MQTT broker {address}: {exc}") from None
        deadline = time.monotonic() + wait
        self._service()
        while wait and not self.connected and time.monotonic() < deadline:
            self._service(timeout=0.01)

    def _settle_connecting(self, wait: float = 0.0) -> bool:
        """True once no connection attempt is running (waiting up to `wait` s for it): until then the client
        belongs to the connecting thread."""
        attempt = self._connecting
        if attempt is None:
            return True
        if wait > 0:
            attempt.join(wait)
        if attempt.is_alive():
            return False
        self._connecting = None
        if self.client.socket() is None:  # the attempt failed: wait before the next one
            self._retry_later()
        return True

    def _retry_later(self) -> None:
        self._next_attempt = time.monotonic() + self._retry_delay
        self._retry_delay = min(2 * self._retry_delay, RECONNECT_MAX_S)

    def _service(self, timeout: float = 0.0) -> None:
        """The client's network I/O: read what arrived (acknowledgements, commands), write what is queued, keep
        the connection alive; start a connection attempt when there is none and its time has come."""
        if not self._settle_connecting():
            time.sleep(timeout)  # the connecting thread has the client: nothing to wait on here
            return
        client = self.client
        sock = client.socket()
        if sock is None:
            if time.monotonic() >= self._next_attempt:
                if self._inflight:
                    self._start_afresh()
                self._attempt_started = time.monotonic()
                self._connecting = threading.Thread(target=self._attempt_connection, name="mqtt-connect", daemon=True)
                self._connecting.start()
            time.sleep(timeout)
            return
        try:
            readable, _, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout)
        except (OSError, ValueError):  # the socket was closed under us: the next steps see the lost connection
            readable = [sock]
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted do not wake select
        if readable or (pending is not None and pending()):
            client.loop_read()
        if client.socket() is not None and client.want_write():
            client.loop_write()
        client.loop_misc()  # keepalive; closes a connection whose broker stopped answering
        if client.socket() is not None and not self._connected:
            if time.monotonic() - self._attempt_started > self.connack_timeout:
                # paho's keepalive check covers this too, but not with keepalive 0
                self.last_problem = f"the broker did not answer the connection within {self.connack_timeout:g} s"
                client.disconnect()
        if client.socket() is None:
            self._connected = False
            self._retry_later()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    @property
    def _room(self) -> int:
        """How many more messages may go out: the window (ours, or the broker's MQTT 5 Receive Maximum if lower)
        less those in flight and those refused for now."""
        return min(self.window, self._broker_window) - len(self._inflight) - len(self._deferred)

    @property
    def idle(self) -> bool:
        """Nothing left to send or to see acknowledged: the spool is empty and no message waits or is in flight."""
        return self.spool.stats().messages == 0 and not (self._inflight or self._direct or self._deferred)

    def enqueue(self, messages: list[tuple[str, str | bytes]]) -> range:
        """Spool the messages; returns their spool ids."""
        return self.spool.append_many(messages) if messages else range(0)

    def track(self, message_id: int) -> None:
        """Watch one spooled message: `tracked_accepted` turns true when the broker acknowledges it without
        refusing it (the runtime's probation waits for its bundle's first forecast to be published)."""
        self.tracked, self.tracked_accepted = message_id, False

    def pump(self) -> None:
        """Network I/O, then settle acknowledgements and publish spooled messages while the in-flight window has
        room."""
        self._service()
        if self._reconnected:
            self._reconnected = False
            for callback in self.on_connected:
                callback()
        acks, self._acks = self._acks, []
        settled = []
        now = time.monotonic()
        for mid, failure in acks:
            item = self._inflight.pop(mid, None)
            if item is not None and failure in TRANSIENT_REFUSALS:
                self._deferred.append((now + DEFER_S, item))
                self.deferred_by_broker += 1
                continue
            self.rejected_by_broker += failure != 0
            if isinstance(item, SpooledMessage):  # refused for good is settled too: it would be refused again
                settled.append(item.id)
                if item.id == self.tracked and failure == 0:
                    self.tracked_accepted = True
        self.delivered += len(settled)
        if settled:
            self.spool.mark_acked(settled)
        if not self.connected:
            return
        while self._deferred and self._deferred[0][0] <= now and self._send(self._deferred[0][1]):
            self._deferred.popleft()
        self._publish_direct()
        if self._room > 0:
            for message in self.spool.pending(after=self._cursor, limit=self._room):
                if not self._send(message):
                    break

    def close(self, drain_timeout: float) -> int:
        """Publish what the spool holds (up to `drain_timeout` s), then `offline`, and disconnect.

        Returns how many messages remain in the spool (they are published at the next start)."""
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            self.pump()
            if self.idle:
                break
            self._service(timeout=0.01)
        if not self._settle_connecting(wait=max(deadline - time.monotonic(), 1.0)):
            return self.spool.stats().messages  # still connecting: no DISCONNECT, so a session ends with our will
        if self.connected:
            info = self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            offline_by = max(deadline, time.monotonic() + 1.0)
            while self.connected and not info.is_published() and time.monotonic() < offline_by:
                self._service(timeout=0.01)
        self.client.disconnect()
        return self.spool.stats().messages
