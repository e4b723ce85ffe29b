"""`rnnedge demo`: the whole product on the shipped sample, from CSV to forecasts received over MQTT."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from edge_runtime.config import RuntimeConfig  # noqa: E402
from edge_runtime.errors import ParityError, RnnedgeError  # noqa: E402
from edge_runtime.mqtt_client import BrokerAddress, MqttSettings  # noqa: E402
from edge_runtime.runner import check_delivered, run  # noqa: E402
from export.bundle_export import export_bundle  # noqa: E402
from trainer.demo_broker import EmbeddedBroker  # noqa: E402
from trainer.train import TrainOptions, train  # noqa: E402

SAMPLE = Path(__file__).parent / "samples" / "machine_temperature_system_failure.csv"
STREAM = "machine_temperature"
PREFIX = "rnnedge/demo"


class Subscriber:
    """Collects forecast messages, as a dashboard or a database writer on the other side would."""

    def __init__(self, url: str, topic: str) -> None:
        address = BrokerAddress.parse(url)
        self.messages: list[dict] = []
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rnnedge-demo-subscriber")
        if address.username:
            self.client.username_pw_set(address.username, address.password)
        if address.tls:
            self.client.tls_set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RnnedgeError(f"could not subscribe to {topic} on {address}")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        with self._lock:
            self._lock.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            received = list(self.messages)
        self.client.disconnect()
        self.client.loop_stop()
        return received


def write_heldout(sample: Path, first_row: int, path: Path) -> None:
    lines = sample.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(lines[0] + "".join(lines[1 + first_row :]), encoding="utf-8")


def plot(messages: list[dict], path: Path) -> None:
    observed = np.array([m["observed"]["value"] for m in messages])
    forecast = np.array([m["forecast"]["value"][0] for m in messages])
    fig, (whole, zoom) = plt.subplots(2, 1, figsize=(11, 7))
    for axis, part in ((whole, slice(None)), (zoom, slice(-288, None))):
        steps = np.arange(len(observed))[part]
        axis.plot(steps[1:], observed[part][1:], label="actual", linewidth=1)
        axis.plot(steps[1:], forecast[part][:-1], label="forecast (t+1), received over MQTT", linewidth=1)
        axis.set_ylabel("machine temperature")
    whole.set_title("rnnedge demo: LSTM-32 streamed on the held-out part of NAB machine_temperature")
    zoom.set_title("last 24 hours (288 five-minute samples)")
    zoom.set_xlabel("held-out sample")
    whole.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(out: Path, mqtt_url: str | None, epochs: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(f"1/4 training an LSTM-32 on {SAMPLE.name} ...", flush=True)
    metrics = train(TrainOptions(SAMPLE, ("value",), (), None, epochs=epochs, quiet=True), out / "run")
    print(f"    {metrics['training']['epochs']} epochs in {metrics['training']['seconds']} s", flush=True)
    print("2/4 exporting the streaming step model (ONNX, TFLite, numpy; float32 and int8) ...", flush=True)
    bundle, report = export_bundle(out / "run", out / "bundle")
    if not report.passed:
        raise ParityError(report.summary())
    print(f"3/4 {report.summary()}", flush=True)

    heldout = out / "heldout.csv"
    write_heldout(SAMPLE, int(metrics["test"]["first_row"]), heldout)
    broker = EmbeddedBroker() if mqtt_url is None else None
    url = broker.url if broker else mqtt_url
    print(f"4/4 streaming {heldout} through the edge runtime to {url} ...", flush=True)
    try:
        subscriber = Subscriber(url, f"{PREFIX}/forecast/{STREAM}")
        config = RuntimeConfig(
            bundle=bundle.path,
            path=heldout,
            stream=STREAM,
            mqtt=MqttSettings(url),
            topic_prefix=PREFIX,
            spool_path=out / "spool.sqlite",
            metrics_interval=3600.0,
        ).check()
        stats = run(config, bundle)
        check_delivered(stats, config)
        messages = subscriber.wait_for(stats.forecasts, timeout=60)
    finally:
        if broker:
            broker.close()
    messages.sort(key=lambda m: m["seq"])
    observed = np.array([m["observed"]["value"] for m in messages])
    forecast = np.array([m["forecast"]["value"][0] for m in messages])
    model_mae = float(np.mean(np.abs(forecast[:-1] - observed[1:])))
    persistence_mae = float(np.mean(np.abs(observed[:-1] - observed[1:])))
    plot(messages, out / "forecast.png")
    print(
        "\nsummary\n"
        f"  rows streamed            {stats.samples}\n"
        f"  forecasts published      {stats.forecasts} (after {bundle.manifest.warmup_steps} warm-up rows)\n"
        f"  messages received        {len(messages)}\n"
        f"  forecast MAE (t+1)       {model_mae:.4f} (persistence {persistence_mae:.4f}, "
        f"{100 * (1 - model_mae / persistence_mae):+.1f}% better)\n"
        f"  median latency           {stats.median_step_us:.1f} us per sample in the engine (wall clock, shared "
        f"with the {'embedded broker and the ' if broker else ''}subscriber in this process; "
        "docs/BENCHMARKS.md has the engine alone)\n"
        f"  alarms                   {stats.alarms}\n"
        f"  plot                     {out / 'forecast.png'}\n"
        f"  bundle                   {bundle.path} ({bundle.digest[:12]})"
    )
    if len(messages) != stats.forecasts:
        raise RnnedgeError(f"the subscriber received {len(messages)} of {stats.forecasts} forecasts")
