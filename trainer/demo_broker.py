"""An embedded MQTT broker (amqtt) for the zero-setup demo, bound to loopback only. Not for production."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from edge_runtime.errors import RnnedgeError


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedBroker:
    """amqtt running on its own event loop in a daemon thread."""

    def __init__(self) -> None:
        from amqtt.broker import Broker

        logging.getLogger("amqtt").setLevel(logging.ERROR)  # its PUBACK bookkeeping warns spuriously
        self.port = free_loopback_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None

        async def start() -> Broker:
            broker = Broker(config, loop=self._loop)
            await broker.start()
            return broker

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._broker = self._loop.run_until_complete(start())
            except BaseException as exc:  # reported to the caller below
                self._error = exc
                self._started.set()
                return
            self._started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(15) or self._error is not None:
            raise RnnedgeError(f"the embedded MQTT broker did not start: {self._error or 'timeout'}")

    def close(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
