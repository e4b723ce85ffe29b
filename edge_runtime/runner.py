"""`rnnedge run`: the long-running loop. Samples come from a source (CSV replay, JSON lines on stdin, MQTT
subscriptions), go through the engine in batches, and the forecasts go to MQTT through the durable spool
(or to stdout as JSON lines when no broker is given).

Topic layout (docs/runtime.md): `{prefix}/status` retained `online`/`offline` (last will `offline`);
`{prefix}/forecast/{stream}` one JSON message per forecast, QoS 1; `{prefix}/metrics` every `metrics_interval` s.

SIGTERM or SIGINT: stop intake, publish what is spooled (up to `drain_timeout`), publish `offline`, exit 0 (2 if
messages stay in the spool for the next start).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge_runtime.activation import confirm_running
from edge_runtime.backends import open_step_backend
from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.config import RuntimeConfig
from edge_runtime.drift import DriftLimits
from edge_runtime.engine import EngineSettings, StreamEngine
from edge_runtime.errors import RnnedgeError
from edge_runtime.metrics import LatencyWindow, RefusalLog, metrics_message
from edge_runtime.samples import Rejected, Sample
from edge_runtime.sources import open_source
from edge_runtime.spool import Spool

if TYPE_CHECKING:
    from edge_runtime.mqtt_publisher import SpooledPublisher

log = logging.getLogger("rnnedge.run")
FORMAT_OF_BACKEND = {"onnxruntime": "onnx", "litert": "tflite", "numpy": "numpy"}


@dataclass
class RunStats:
    samples: int
    forecasts: int
    refused: dict[str, int]
    gap_resets: int
    alarms: int
    median_step_us: float | None
    p99_step_us: float | None
    spooled: int  # messages left in the spool at exit (published at the next start)
    rejected_by_broker: int  # MQTT 5: publishes the broker refused (e.g. its ACL)
    broker_problem: str  # why the broker could not be reached, if it could not
    source_error: str | None  # why the source ended early, if it did


class JsonLinesOut:
    """The same messages as MQTT, as `{"topic": ..., "message": ...}` lines: for pipes and debugging."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def enqueue(self, messages: list[tuple[str, str]]) -> range:
        for topic, payload in messages:
            self.stream.write(f'{{"topic":{json.dumps(topic)},"message":{payload}}}\n')
        return range(len(messages))

    def pump(self) -> None:
        self.stream.flush()


def _refusal_kind(reason: str) -> str:
    """A short, countable kind for the metrics ('out-of-order timestamp ...' -> 'out-of-order')."""
    for kind in ("duplicate", "out-of-order", "max_streams", "too large", "NaN", "not a number", "missing", "values"):
        if kind in reason:
            return kind
    return "invalid"


class Runtime:
    def __init__(self, config: RuntimeConfig, bundle: Bundle, out: TextIO | None = None) -> None:
        self.config = config
        self.bundle = bundle
        self.boot = int(time.time())
        backend = open_step_backend(
            bundle, bundle.manifest.artifact(FORMAT_OF_BACKEND[config.backend], config.precision)
        )
        settings = EngineSettings(
            config.gap_factor,
            config.max_streams,
            config.anomaly_overrides(),
            config.drift_window,
            DriftLimits.from_json(config.drift_limits),
        )
        self.engine = StreamEngine(bundle, backend, settings, self.boot)
        self.deploys = None  # DeployListener: MQTT deploys, when the bundle is a bundle store's `current`
        self.source = open_source(config, bundle.manifest)
        self.latency = LatencyWindow()
        self.refusals = RefusalLog()
        self.stop = threading.Event()
        self.confirmed = False
        self._first_forecast: int | None = None  # spool id of the running bundle's first forecast
        self.spool: Spool | None = None
        self.publisher: SpooledPublisher | JsonLinesOut
        if config.mqtt is None:
            self.publisher = JsonLinesOut(out or sys.stdout)
        else:
            from edge_runtime.mqtt_publisher import SpooledPublisher  # paho and ssl: only for MQTT runs

            self.spool = Spool.open(config.spool, config.spool_max_bytes, config.fsync_interval)
            if self.spool.recovery:
                log.warning("%s", self.spool.recovery)
            self.publisher = SpooledPublisher(config.mqtt, config.mqtt_client_id, f"{config.prefix}/status", self.spool)
            if config.home_assistant:
                self._enable_discovery()
            if config.bundle is not None and config.bundle.name == "current" and config.bundle.is_symlink():
                self._enable_deploys()

    @property
    def broker(self) -> SpooledPublisher | None:
        """The publisher when it is MQTT; None for JSON lines."""
        return None if isinstance(self.publisher, JsonLinesOut) else self.publisher

    def _enable_deploys(self) -> None:
        """Deploys over MQTT (docs/deploy_mqtt.md) into the store whose `current` this runtime runs."""
        from edge_runtime.activation import BundleStore
        from edge_runtime.device_cli import DEFAULT_KEEP
        from edge_runtime.mqtt_deploy import DeployListener

        store = BundleStore(self.config.bundle.parent, self.config.verify_key, DEFAULT_KEEP)
        self.deploys = DeployListener(
            store,
            self.broker.publish_now,
            self.config.prefix,
            self._switch,
        )
        self.broker.subscriptions[self.deploys.topic] = self.deploys.on_message
        self.broker.commands.add(self.deploys.topic)

    def _switch(self, path: Path) -> None:
        """Run another bundle from the next batch on; raises (and the old model keeps running) if it cannot."""
        bundle = load_bundle(path, self.config.verify_key)
        old = self.bundle.manifest
        if (bundle.manifest.features, bundle.manifest.time_column) != (old.features, old.time_column):
            raise RnnedgeError(
                f"it reads {list(bundle.manifest.features)}, the running model {list(old.features)}: "
                "changing a runtime's inputs needs a restart (deploy over ssh with --reload)"
            )
        artifact = bundle.manifest.artifact(FORMAT_OF_BACKEND[self.config.backend], self.config.precision)
        engine = StreamEngine(bundle, open_step_backend(bundle, artifact), self.engine.settings, self.boot)
        engine.continue_from(self.engine)
        self.engine, self.bundle = engine, bundle
        self.confirmed, self._first_forecast = False, None  # the new version is confirmed by its own forecast
        if self.config.home_assistant:
            self.republish.set()  # its targets may have changed

    def _enable_discovery(self) -> None:
        """Announce each stream's entities when it first forecasts, and all of them again at every connection
        and whenever Home Assistant says it (re)started."""
        from edge_runtime.discovery import HomeAssistantStatus

        self.announced: set[str] = set()
        self.republish = threading.Event()  # set by the publisher's callbacks, acted on by the main loop
        status = HomeAssistantStatus(self.config.discovery_prefix)
        self.broker.subscriptions[status.topic] = lambda payload: (
            status.should_republish(status.topic, payload) and self.republish.set()
        )
        self.broker.on_connected.append(self.republish.set)

    def _announce(self) -> None:
        from edge_runtime import __version__
        from edge_runtime.discovery import discovery_messages

        config = self.config
        if self.republish.is_set():
            self.republish.clear()
            self.announced.clear()
        for stream in self.engine.streams.keys() - self.announced:
            messages = discovery_messages(
                config.device_id,
                stream,
                self.bundle.manifest.targets,
                f"{config.prefix}/forecast/{stream}",
                f"{config.prefix}/status",
                {"sw_version": __version__},
                prefix=config.discovery_prefix,
            )
            self.broker.publish_retained([(m.topic, m.payload) for m in messages])
            self.announced.add(stream)

    def _refuse(self, rejected: list[Rejected]) -> None:
        for item in rejected:
            if self.refusals.record(_refusal_kind(item.reason)):
                log.warning("refused sample (%s, stream %s): %s", item.source, item.stream, item.reason)

    def _metrics(self, interval_samples: int, interval_s: float) -> dict[str, Any]:
        counters = vars(self.engine.counters).copy()
        counters["refused_total"] = sum(self.refusals.by_reason.values())
        counters.update(self.source.stats())
        spool = vars(self.spool.stats()) if self.spool else None
        mqtt = None
        if self.broker is not None:
            mqtt = {
                "connected": self.broker.connected,
                "reconnects": self.broker.reconnects,
                "rejected_by_broker": self.broker.rejected_by_broker,
                "deferred_by_broker": self.broker.deferred_by_broker,
            }
        return metrics_message(
            boot=self.boot,
            started=self.started,
            interval_samples=interval_samples,
            interval_s=interval_s,
            latency=self.latency,
            counters=counters,
            refused=self.refusals.by_reason,
            spool=spool,
            mqtt=mqtt,
            streams=self.engine.stream_summary(),
        )

    def _publish_metrics(self, interval_samples: int, interval_s: float) -> None:
        message = self._metrics(interval_samples, interval_s)
        self.publisher.enqueue([(f"{self.config.prefix}/metrics", json.dumps(message, separators=(",", ":")))])

    def _handle(self, items: list) -> int:
        """One batch from the source through the engine to the publisher; returns the samples handled."""
        samples = [item for item in items if isinstance(item, Sample)]
        self._refuse([item for item in items if isinstance(item, Rejected)])
        if samples:
            started = time.perf_counter_ns()
            forecasts, refused = self.engine.process(samples)
            self.latency.add((time.perf_counter_ns() - started) // len(samples), len(samples))
            self._refuse(refused)
            prefix = f"{self.config.prefix}/forecast/"
            ids = self.publisher.enqueue(
                [(prefix + stream, text) for stream, text in zip(forecasts.streams, forecasts.texts(), strict=True)]
            )
            if self._first_forecast is None and ids:
                self._first_forecast = ids[0]
                if self.broker is not None:
                    self.broker.track(ids[0])
        return len(samples)

    def _confirm(self) -> None:
        """Probation (devices/README.md): once the running bundle's first forecast is published (acknowledged by
        the broker, not refused; without a broker: written out), tell the bundle store the newly activated bundle
        works. A no-op for a bundle that is not a store's `current`."""
        if self._first_forecast is not None and (self.broker is None or self.broker.tracked_accepted):
            confirm_running(self.config.bundle, self.bundle.digest)
            self.confirmed = True

    def serve(self) -> RunStats:
        config = self.config
        self.started = time.time()
        if self.broker is not None:
            self.broker.start()
        self.source.start()
        last_metrics = time.monotonic()
        interval_samples = 0
        try:
            while not self.stop.is_set():
                interval_samples += self._handle(self.source.take(config.max_batch, timeout=0.1))
                now = time.monotonic()
                if config.mqtt is not None and now - last_metrics >= config.metrics_interval:
                    self._publish_metrics(interval_samples, now - last_metrics)
                    last_metrics, interval_samples = now, 0
                if self.config.home_assistant and self.broker is not None and self.broker.connected:
                    self._announce()
                if self.deploys is not None:
                    self.deploys.poll()
                self.publisher.pump()
                if not self.confirmed:
                    self._confirm()
                if self.source.finished:
                    break
        finally:
            self.source.stop()
        while not self.source.finished:  # what the source had already accepted is still forecast
            interval_samples += self._handle(self.source.take(config.max_batch, timeout=0.1))
        if self.source.error:
            log.error("the source ended early: %s", self.source.error)
        if self.config.mqtt is not None:  # a last metrics message: the totals of this run
            self._publish_metrics(interval_samples, time.monotonic() - last_metrics)
        return self._close()

    def _close(self) -> RunStats:
        spooled, rejected, problem = 0, 0, ""
        if self.deploys is not None:
            self.deploys.close()
        if self.broker is not None:
            spooled = self.broker.close(self.config.drain_timeout)
            rejected, problem = self.broker.rejected_by_broker, self.broker.last_problem
            self.spool.close()
        else:
            self.publisher.pump()
        counters = self.engine.counters
        latency = self.latency.percentiles_us()
        return RunStats(
            counters.samples,
            counters.forecasts,
            dict(self.refusals.by_reason),
            counters.gap_resets,
            counters.alarms,
            latency["p50"],
            latency["p99"],
            spooled,
            rejected,
            problem,
            self.source.error,
        )


def run(config: RuntimeConfig, bundle: Bundle, out: TextIO | None = None) -> RunStats:
    """Serve until the source ends or SIGTERM/SIGINT; the signal handlers are restored afterwards."""
    runtime = Runtime(config, bundle, out)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            handlers[signum] = signal.signal(signum, lambda *_: runtime.stop.set())
    try:
        return runtime.serve()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def check_delivered(stats: RunStats, config: RuntimeConfig) -> None:
    """A run that could not read all its input, or deliver all its output, ends with a one-line error."""
    if stats.source_error:
        raise RnnedgeError(f"the source ended early: {stats.source_error}")
    if stats.spooled:
        why = f" ({stats.broker_problem})" if stats.broker_problem else ""
        raise RnnedgeError(
            f"{stats.spooled} messages could not be delivered to {config.mqtt.address} within "
            f"{config.drain_timeout:g} s{why}: they stay in the spool {config.spool}"
            " and are published at the next start"
        )
