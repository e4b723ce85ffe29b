"""QoS 1 publishing through the durable spool, with a retained online/offline status.

Every message is appended to the spool first and published from it; the spool entry is deleted only when the
broker acknowledges it. So forecasts made while the broker is down, or in flight when the process dies, are
published after reconnect or restart (consumers drop duplicates by sequence number). Paho reconnects by itself
and re-sends its own in-flight messages with their original ids, so the publisher never re-publishes on reconnect.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge_runtime.errors import RnnedgeError
from edge_runtime.mqtt_client import MqttSettings
from edge_runtime.spool import Spool

ONLINE, OFFLINE = "online", "offline"


class SpooledPublisher:
    """Call `enqueue` with new messages and `pump` often (every loop turn, at least a few times a second)."""

    def __init__(
        self, settings: MqttSettings, client_id: str, status_topic: str, spool: Spool, window: int = 1000
    ) -> None:
        self.settings = settings
        self.status_topic = status_topic
        self.spool = spool
        self.window = window
        self.connects = 0
        self.rejected_by_broker = 0
        self.delivered = 0  # messages the broker acknowledged (refused ones included: they were settled)
        self.last_problem = ""  # why the last connection attempt failed, for the operator (never a secret)
        self._connected = threading.Event()
        self._acks: collections.deque[int] = collections.deque()  # appended by paho's thread
        self._refused: collections.deque[int] = collections.deque()
        self._inflight: dict[int, int] = {}  # paho mid -> spool id
        self._cursor = 0
        self._broker_window = window
        self.on_connected: list = []  # callables run in the main thread after each (re)connection
        self.subscriptions: dict[str, Any] = {}  # topic -> callable(payload) run in paho's thread: keep it tiny
        self.commands: set[str] = set()  # subscribed topics that carry commands: a retained one is never obeyed
        self._reconnected = threading.Event()
        client = settings.client(client_id)
        client.will_set(status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.max_inflight_messages_set(min(window, 65000))
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._reconnect = client.reconnect
        client.reconnect = self._reconnect_noting_failures  # paho's loop reconnects through this attribute
        self.client = client

    def _reconnect_noting_failures(self) -> Any:
        """paho retries failed connections without saying why; keep the reason (TLS, refused, unreachable)."""
        try:
            return self._reconnect()
        except ssl.SSLCertVerificationError as exc:
            self.last_problem = f"TLS certificate verification failed ({exc.verify_message})"
            raise
        except OSError as exc:
            self.last_problem = f"cannot connect ({exc.strerror or exc})"
            raise

    # paho's network thread ---------------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.last_problem = f"the broker refused the connection: {reason}"
            return
        self.last_problem = ""
        # MQTT 5 brokers announce how many QoS 1 messages they accept in flight; more is a protocol error
        # (mosquitto then drops the connection), so the window never exceeds it.
        self._broker_window = getattr(properties, "ReceiveMaximum", None) or self.window
        self.connects += 1
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._connected.set()
        self._reconnected.set()

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
            self.client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if reason is not None and reason.is_failure:  # MQTT 5: e.g. 0x87 not authorized by the broker's ACL
            self._refused.append(mid)
        self._acks.append(mid)

    # the main thread --------------------------------------------------------------------------------------
    def start(self, wait: float = 0.0) -> None:
        """Connect in the background (the broker may be down: messages wait in the spool)."""
        address = self.settings.address
        try:
            self.client.connect_async(address.host, address.port, keepalive=self.settings.keepalive)
        except (OSError, ValueError) as exc:
            raise RnnedgeError(f"cannot connect to MQTT broker {address}: {exc}") from None
        self.client.loop_start()
        if wait:
            self._connected.wait(wait)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def enqueue(self, messages: list[tuple[str, str | bytes]]) -> None:
        if messages:
            self.spool.append_many(messages)

    def pump(self) -> None:
        """Settle acknowledgements, then publish spooled messages while the in-flight window has room."""
        if self._reconnected.is_set():
            self._reconnected.clear()
            for callback in self.on_connected:
                callback()
        refused = set()
        while self._refused:
            refused.add(self._refused.popleft())
        settled = []
        while self._acks:
            spool_id = self._inflight.pop(self._acks.popleft(), None)
            if spool_id is not None:
                settled.append(spool_id)
        self.rejected_by_broker += len(refused)
        self.delivered += len(settled)
        if settled:
            self.spool.mark_acked(settled)  # a refused message is settled too: retrying would be refused again
        if not self.connected:
            return
        room = min(self.window, self._broker_window) - len(self._inflight)
        if room <= 0:
            return
        for message in self.spool.pending(after=self._cursor, limit=room):
            info = self.client.publish(message.topic, message.payload, qos=1, retain=message.retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                break  # paho's queue refused it: it stays in the spool for the next pump
            self._inflight[info.mid] = message.id
            self._cursor = message.id

    def close(self, drain_timeout: float) -> int:
        """Publish what the spool holds (up to `drain_timeout` s), then `offline`, and disconnect.

        Returns how many messages remain in the spool (they are published at the next start)."""
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            self.pump()
            if self.spool.stats().messages == 0 and not self._inflight:
                break
            time.sleep(0.01)
        if self.connected:
            info = self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            info.wait_for_publish(timeout=max(1.0, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()
        remaining = self.spool.stats().messages
        return remaining
