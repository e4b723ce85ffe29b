"""Publishing JSON messages over MQTT (paho-mqtt 2.x), QoS 1, with a retained online/offline status."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from edge_runtime.errors import RnnedgeError


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise RnnedgeError(f"broker URL {url!r} is not of the form mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise RnnedgeError(f"broker URL {url!r} has an invalid port") from None
        return cls(
            parts.hostname,
            port,
            parts.scheme == "mqtts",
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:  # never shows the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttPublisher:
    """Connects on creation; `close` publishes `offline` and waits until every QoS 1 message is acknowledged."""

    def __init__(self, url: str, client_id: str, status_topic: str, connect_timeout: float = 10.0) -> None:
        self.address = BrokerAddress.parse(url)
        self.status_topic = status_topic
        self._lock = threading.Condition()
        self._connected: mqtt.ReasonCode | None = None
        self._sent = 0
        self._acked = 0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.will_set(status_topic, "offline", qos=1, retain=True)
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self.client = client
        try:
            client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise RnnedgeError(f"cannot reach MQTT broker {self.address}: {exc.strerror or exc}") from None
        client.loop_start()
        with self._lock:
            self._lock.wait_for(lambda: self._connected is not None, timeout=connect_timeout)
            reason = self._connected
        if reason is None or reason.is_failure:
            client.loop_stop()
            why = "no answer" if reason is None else str(reason)
            raise RnnedgeError(f"MQTT broker {self.address} refused the connection: {why}")
        self.publish(status_topic, "online", retain=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._connected = reason
            self._lock.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._acked += 1
            self._lock.notify_all()

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RnnedgeError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            self._sent += 1

    def publish_json(self, topic: str, message: dict[str, Any]) -> None:
        self.publish(topic, json.dumps(message, separators=(",", ":")))

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return self._sent - self._acked

    def close(self, timeout: float = 30.0) -> int:
        """Publish `offline`, wait for acknowledgements, disconnect; return how many stayed unacknowledged."""
        self.publish(self.status_topic, "offline", retain=True)
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.wait_for(lambda: self._acked >= self._sent, timeout=max(0.0, deadline - time.monotonic()))
            missing = self._sent - self._acked
        self.client.disconnect()
        self.client.loop_stop()
        return missing
