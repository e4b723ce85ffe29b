"""A paho subscriber that records everything it receives, for asserting on what a broker delivered."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt


class Recorder:
    """Records what a broker delivers. `durable`: a persistent session (clean_session False) that the broker
    keeps, with its queued QoS 1 messages, across the recorder's and the broker's restarts."""

    def __init__(self, port: int, topic: str, durable: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"recorder-{uuid.uuid4().hex[:8]}",
            clean_session=not durable,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), f"could not subscribe to {topic}"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        with self._lock:
            self._lock.wait_for(lambda: len(self.messages) >= count, timeout=timeout)

    def settle(self, quiet: float = 0.3) -> None:
        """Wait until nothing new has arrived for `quiet` seconds."""
        seen = -1
        while seen != len(self.messages):
            seen = len(self.messages)
            time.sleep(quiet)

    def json_on(self, suffix: str) -> list[dict]:
        return [json.loads(payload) for topic, payload, _ in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
