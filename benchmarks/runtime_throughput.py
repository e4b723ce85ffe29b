"""Edge runtime speed and footprint against issue 7's targets, each next to a raw baseline measured in the same run
so that the ratios show where the time goes. Model: LSTM-32, window 64, trained on the shipped NAB sample.

1. Loop overhead, batch 1: `StreamEngine.process` plus the JSON serialisation of each forecast, per sample, over
   the raw ONNX Runtime step call with the state fed back (target: <= 20%), with a profile of where it goes.
2. 1,000 streams, one batched call per round: stream-samples/s through the engine on one core, against the raw
   batched backend call (target: >= 200,000/s).
3. Streaming vs window recompute: one step call per sample against re-running the window model over the last
   `window` samples, in ONNX Runtime and LiteRT.
4. End to end: CSV replay -> `rnnedge run` -> mosquitto on loopback -> a QoS 1 subscriber, forecasts/s, against a
   bare paho publisher process -> the same broker -> the same subscriber (target: >= 10,000/s); the subscriber is
   mosquitto_sub, so that its own cost stays out of the figures.
5. The `rnnedge run` process: start to first forecast and peak RSS (targets: <= 0.5 s, <= 80 MB), against a bare
   interpreter and one that imports numpy + onnxruntime and runs one step.

Every figure is the median over repeats with (min-max). Parts 1-3 run in this process pinned to one core; parts 4
and 5 run the real command in child processes on the machine's cores (broker, runtime and subscriber share them).

    .venv/bin/python benchmarks/runtime_throughput.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, per_call_us, write_result  # noqa: E402

from edge_runtime.backends import open_step_backend  # noqa: E402
from edge_runtime.bundle import Bundle, load_bundle  # noqa: E402
from edge_runtime.engine import EngineSettings, StreamEngine  # noqa: E402
from edge_runtime.errors import BundleError  # noqa: E402
from edge_runtime.samples import Sample  # noqa: E402

SAMPLE = REPO / "trainer" / "samples" / "machine_temperature_system_failure.csv"
RNNEDGE = str(Path(sys.executable).parent / "rnnedge")
UNITS, WINDOW = 32, 64
STREAMS = 1000
PREFIX = "rnnedge/bench"
TARGETS = {
    "loop_overhead": 0.20,
    "stream_samples_per_s": 200_000,
    "e2e_forecasts_per_s": 10_000,
    "peak_rss_mb": 80,
    "first_forecast_s": 0.5,
}
# Runs a command as a grandchild forked from this small interpreter and writes its peak RSS (KB) to a file. Linux
# carries ru_maxrss across exec, so a child forked straight from the (large) benchmark process would report the
# benchmark's own RSS as its peak.
PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""
ORT_ONE_STEP = """
import sys, numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in session.get_inputs()}
session.run(None, feeds)
print("ready", flush=True)
"""


# --- the model --------------------------------------------------------------------------------------------------
def build_bundle(scratch: Path, rows: int, epochs: int) -> Path:
    """Train LSTM-32 on the first `rows` rows of the sample and export ONNX + TFLite step and window models.
    Runs in a child process: TensorFlow never enters the measuring process."""
    from export.bundle_export import ExportOptions, export_bundle
    from trainer.train import TrainOptions, train

    lines = SAMPLE.read_text().splitlines(keepends=True)
    csv = scratch / "train.csv"
    csv.write_text("".join(lines[: rows + 1]))
    options = TrainOptions(
        csv, ("value",), (), None, layers=(UNITS,), window=WINDOW, epochs=epochs, quiet=True, plots=False
    )
    train(options, scratch / "run")
    export = ExportOptions(formats=("onnx", "tflite"), precisions=("float32",), window_model=True)
    bundle, report = export_bundle(scratch / "run", scratch / "bundle", export)
    if not report.passed:
        raise SystemExit(f"runtime_throughput: the bundle failed parity: {report.summary()}")
    return bundle.path


def replay_csv(scratch: Path, rows: int) -> Path:
    """The sample's first `rows` rows (at most all 22,695) as the CSV the runtime replays."""
    lines = SAMPLE.read_text().splitlines(keepends=True)
    path = scratch / "replay.csv"
    path.write_text("".join(lines[: rows + 1]))
    return path


def sample_values() -> np.ndarray:
    return np.array([float(line.split(",")[1]) for line in SAMPLE.read_text().splitlines()[1:]])


def sample_batches(values: np.ndarray, streams: int, rounds: int) -> list[list[Sample]]:
    """`rounds` rounds of one sample per stream, 5 minutes apart, ISO timestamps as a CSV would carry them."""
    start = 1_391_212_800  # 2014-02-01T00:00:00Z
    names = [f"s{j}" for j in range(streams)]
    batches = []
    for k in range(rounds):
        ts = start + 300.0 * k
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
        batches.append(
            [Sample(name, ts, text, (float(values[(k + 97 * j) % len(values)]),)) for j, name in enumerate(names)]
        )
    return batches


def summary(runs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "repeats": len(runs)}


def spread(timing: dict[str, float], digits: int = 1, scale: float = 1.0) -> str:
    m, lo, hi = (timing[k] * scale for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def rate(timing_us: dict[str, float], per_call: int) -> dict[str, float]:
    """us per call -> samples per second (the fastest run is the highest rate)."""
    return {
        "median": per_call * 1e6 / timing_us["median"],
        "min": per_call * 1e6 / timing_us["max"],
        "max": per_call * 1e6 / timing_us["min"],
        "repeats": timing_us["repeats"],
    }


# --- 1 and 2: the engine loop against the raw backend call ------------------------------------------------------
def engine_call(engine: StreamEngine, batches: Iterator[list[Sample]], serialise: bool) -> Callable[[], None]:
    """One round through the engine, as the runtime's loop does it: process, then topic + JSON per forecast."""

    def call() -> None:
        forecasts, _ = engine.process(next(batches))
        if serialise:
            prefix = f"{PREFIX}/forecast/"
            [(prefix + stream, text) for stream, text in zip(forecasts.streams, forecasts.texts(), strict=True)]

    return call


def raw_call(bundle: Bundle, batch: int, format: str = "onnx") -> Callable[[], None]:
    """The backend's step call alone, the state fed back: what the runtime's loop adds to is this."""
    backend = open_step_backend(bundle, bundle.manifest.artifact(format))
    x = np.random.default_rng(0).standard_normal((batch, len(bundle.manifest.features))).astype(np.float32)
    states = backend.zero_state(batch)

    def call() -> None:
        nonlocal states
        _, states = backend.step(x, states)

    return call


def fresh_engine(bundle: Bundle, streams: int) -> StreamEngine:
    backend = open_step_backend(bundle, bundle.manifest.artifact("onnx"))
    return StreamEngine(bundle, backend, EngineSettings(max_streams=streams))


def interleaved(calls: dict[str, Callable[[], None]], count: int, repeats: int) -> dict[str, dict[str, float]]:
    """`per_call_us` of each call, the repeats taken in turns (raw, engine, raw, engine, ...) so that a slow
    spell of this shared machine weighs on every figure alike rather than on whichever ran during it."""
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            runs[name].append(per_call_us(call, count, 1)["median"])
    return {name: summary(values) for name, values in runs.items()}


def engine_figures(bundle: Bundle, streams: int, count: int, repeats: int) -> dict[str, Any]:
    """us per call of the raw backend, the engine, and the engine + JSON, for `streams` samples per call."""
    values = sample_values()
    warm = bundle.manifest.warmup_steps + 1  # until then a stream forecasts nothing: no message, no score
    rounds = warm + repeats * (min(count, 200) + count)
    calls = {"raw_us": raw_call(bundle, streams)}
    for key, serialise in (("engine_us", False), ("engine_json_us", True)):
        batches = iter(sample_batches(values, streams, rounds))
        calls[key] = engine_call(fresh_engine(bundle, streams), batches, serialise)
        for _ in range(warm):
            calls[key]()
    figures: dict[str, Any] = {"streams": streams, "calls": count, **interleaved(calls, count, repeats)}
    figures["profile"] = profile(bundle, streams, max(count, 20_000 // streams))
    return figures


CATEGORIES = (
    ("ONNX Runtime call", ("onnxruntime", "InferenceSession", "onnx_backend.py")),
    ("JSON serialisation", ("json", "forecasts.py", "runtime_throughput.py")),
    ("anomaly score", ("anomaly.py",)),
    ("drift monitor", ("drift.py",)),
    ("scaling", ("scaling.py",)),
    ("engine bookkeeping", ("engine.py", "samples.py")),
    ("numpy", ("numpy", "ndarray")),
)


def profile(bundle: Bundle, streams: int, rounds: int) -> dict[str, Any]:
    """Share of the loop's time per part (cProfile's own time per function, grouped by where it lives) and the
    heaviest functions. cProfile adds a cost per Python call, so the Python parts are overstated; the ranking is
    what it is for."""
    warm = bundle.manifest.warmup_steps + 1
    batches = iter(sample_batches(sample_values(), streams, rounds + warm))
    call = engine_call(fresh_engine(bundle, streams), batches, serialise=True)
    for _ in range(warm):
        call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        call()
    profiler.disable()
    shares: dict[str, float] = {}
    functions: dict[str, float] = {}
    for (filename, _, name), (_, _, own, _, _) in pstats.Stats(profiler).stats.items():
        where = f"{filename} {name}"
        label = next((label for label, keys in CATEGORIES if any(k in where for k in keys)), "other Python")
        shares[label] = shares.get(label, 0.0) + own
        functions[f"{Path(filename).name}:{name}" if filename != "~" else name] = own
    total = sum(shares.values())
    heaviest = sorted(functions.items(), key=lambda kv: -kv[1])[:6]
    return {
        "shares": {label: round(100 * own / total, 1) for label, own in sorted(shares.items(), key=lambda kv: -kv[1])},
        "heaviest": {name: round(100 * own / total, 1) for name, own in heaviest},
    }


# --- 3: streaming vs window recompute ----------------------------------------------------------------------------
def window_figures(bundle: Bundle, count: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    features = len(bundle.manifest.features)
    window = np.random.default_rng(0).standard_normal((1, bundle.manifest.window, features)).astype(np.float32)
    for format, runtime in (("onnx", "onnxruntime"), ("tflite", "litert")):
        try:
            step_artifact = bundle.manifest.artifact(format)
            window_artifact = bundle.manifest.artifact(format, kind="window")
        except BundleError as missing:  # a conversion the exporter reported as unsupported
            rows.append({"runtime": runtime, "skipped": str(missing)})
            continue
        recompute = window_runner(bundle.file(window_artifact.file), format)
        step = raw_call(bundle, 1, step_artifact.format)
        timings = interleaved({"step_us": step, "window_us": partial(recompute, window)}, count, repeats)
        rows.append({"runtime": runtime, "window": bundle.manifest.window, **timings})
    return rows


def window_runner(path: Path, format: str) -> Callable[[np.ndarray], Any]:
    """One call of a window model at batch 1, one thread (as the step backends are configured)."""
    if format == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda window: session.run(None, {name: window})
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    (name,) = runner.get_input_details()
    return lambda window: runner(**{name: window})


# --- 4: end to end through mosquitto -----------------------------------------------------------------------------
class Broker:
    """mosquitto on a free loopback port (as tests/conftest.py starts it): no persistence, no auth, queues deep
    enough that a QoS 1 subscriber slower than the publisher loses nothing."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest none",
            "max_queued_messages 1000000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(conf)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Subscriber:
    """mosquitto_sub (the broker's own C client) subscribed at QoS 1; a thread counts the messages it prints and
    notes the first and last arrival. A C subscriber keeps its own cost out of the figures: a paho subscriber on
    these 2 cores tops out near 9,000 messages/s, below what the publishers measured here reach."""

    def __init__(self, port: int, topic: str) -> None:
        self.count = 0
        self.first = self.last = 0.0
        self._probe_topic = topic.rstrip("#") + "_probe"
        self._subscribed = threading.Event()
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-F", "%t"]
        argv += ["-i", f"bench-sub-{os.getpid()}-{time.monotonic_ns()}", "-t", topic]
        # line-buffered: a block-buffered pipe would hold the last messages back until the subscriber exits
        self.process = subprocess.Popen(["stdbuf", "-oL", *argv], stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not self._subscribed.wait(0.2):  # probes until one comes back: the subscription is in place
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("the benchmark subscriber could not subscribe")
            publish_one(port, self._probe_topic)

    def _read(self) -> None:
        probe = self._probe_topic.encode() + b"\n"
        for line in self.process.stdout:
            if line == probe:
                self._subscribed.set()
                continue
            now = time.perf_counter()
            if not self.count:
                self.first = now
            self.count += 1
            self.last = now

    def wait_for(self, count: int, idle: float = 5.0) -> None:
        """Until `count` messages arrived, or none arrived for `idle` seconds."""
        seen, since = -1, time.monotonic()
        while self.count < count:
            if self.count != seen:
                seen, since = self.count, time.monotonic()
            elif time.monotonic() - since > idle:
                return
            time.sleep(0.01)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def publish_one(port: int, topic: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    info = client.publish(topic, b"probe", qos=1)
    while not info.is_published() and client.loop(0.05) == mqtt.MQTT_ERR_SUCCESS:
        pass
    client.disconnect()


def publish_bare(port: int, count: int, payload: bytes) -> None:
    """In a child process: publish `count` QoS 1 messages as fast as paho allows, driven the way the runtime's
    publisher drives it (network I/O in the publishing thread, at most 1,000 messages in flight), until every
    PUBACK is in."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare-publisher")
    client.max_inflight_messages_set(0)  # the window is kept below, as the runtime does
    client.max_queued_messages_set(0)
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(0.1)
    sent = 0
    while acked < count:
        for _ in range(min(1000 - (sent - acked), count - sent)):
            client.publish(f"bare/forecast/s{sent % 100}", payload, qos=1)
            sent += 1
        client.loop(0.001)
    client.disconnect()


def bare_rate(broker: Broker, count: int, payload: bytes) -> float:
    subscriber = Subscriber(broker.port, "bare/#")
    try:
        publisher = get_context("spawn").Process(target=publish_bare, args=(broker.port, count, payload))
        publisher.start()
        subscriber.wait_for(count)
        publisher.join(60)
    finally:
        subscriber.close()
    if subscriber.count != count:
        raise RuntimeError(f"the bare subscriber got {subscriber.count} of {count} messages")
    return count / (subscriber.last - subscriber.first)


def runtime_e2e(broker: Broker, bundle_dir: Path, csv: Path, scratch: Path, run: int) -> dict[str, float]:
    """`rnnedge run` replaying the CSV to the broker; the subscriber counts the forecasts that arrive."""
    subscriber = Subscriber(broker.port, f"{PREFIX}/forecast/#")
    argv = [
        RNNEDGE,
        "run",
        str(bundle_dir),
        "--source",
        f"csv:{csv}",
        "--mqtt",
        broker.url,
        "--device-id",
        "bench",
        "--topic-prefix",
        PREFIX,
        "--spool",
        str(scratch / f"spool-{run}.db"),
        "--metrics-interval",
        "3600",
    ]
    log = scratch / f"run-{run}.log"
    try:
        started = time.perf_counter()
        with log.open("w") as stderr:
            peak, process = peak_rss_mb(argv, scratch, stdout=subprocess.DEVNULL, stderr=stderr)
        made = re.search(r"(\d+) forecasts", log.read_text())
        if process.returncode != 0 or made is None:
            raise RuntimeError(f"rnnedge run failed ({process.returncode}): {log.read_text().strip()[-500:]}")
        forecasts = int(made.group(1))
        subscriber.wait_for(forecasts)
    finally:
        subscriber.close()
    return {
        "forecasts": forecasts,
        "received": subscriber.count,
        "rate": subscriber.count / (subscriber.last - subscriber.first),
        "wall_s": subscriber.last - started,
        "peak_rss_mb": peak,
    }


def e2e_figures(bundle_dir: Path, csv: Path, scratch: Path, repeats: int) -> dict[str, Any] | None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        return None
    bundle = load_bundle(bundle_dir)
    engine = fresh_engine(bundle, 1)
    texts: list[str] = []
    for batch in sample_batches(sample_values(), 1, bundle.manifest.warmup_steps + 2):
        texts += engine.process(batch)[0].texts()
    payload = texts[-1].encode()  # the size of a real forecast message
    broker = Broker(scratch)
    try:
        runs = [runtime_e2e(broker, bundle_dir, csv, scratch, k) for k in range(repeats)]
        bare = [bare_rate(broker, runs[0]["forecasts"], payload) for _ in range(repeats)]
    finally:
        broker.stop()
    return {
        "payload_bytes": len(payload),
        "forecasts": runs[0]["forecasts"],
        "all_delivered": all(r["received"] == r["forecasts"] for r in runs),
        "runtime_rate": summary([r["rate"] for r in runs]),
        "runtime_wall_s": summary([r["wall_s"] for r in runs]),
        "runtime_peak_rss_mb": summary([r["peak_rss_mb"] for r in runs]),
        "bare_paho_rate": summary(bare),
    }


# --- 5: process start and memory --------------------------------------------------------------------------------
def first_output_s(argv: list[str]) -> float:
    """Seconds from spawning the command to its first line of output (it then runs to its end)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_line = process.stdout.readline()
    first = time.perf_counter() - started
    process.stdout.read()
    stderr = process.stderr.read()
    if process.wait() != 0 or not first_line:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({process.returncode}): {stderr.decode()[-500:]}")
    return first


def peak_rss_mb(argv: list[str], scratch: Path, **popen: Any) -> tuple[float, subprocess.Popen]:
    """Run the command to its end; its peak RSS in MB (see PEAK_RSS) and the finished process."""
    report = scratch / "peak_rss.txt"
    report.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-c", PEAK_RSS, str(report), *argv], **popen)
    process.communicate()
    kilobytes, status = report.read_text().split()
    process.returncode = int(status)
    return int(kilobytes) / 1024, process


def process_figures(bundle_dir: Path, csv: Path, scratch: Path, repeats: int) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    step_onnx = bundle.file(bundle.manifest.artifact("onnx").file)
    commands = {
        "bare python": [sys.executable, "-c", "print('ready')"],
        "python: import numpy + onnxruntime, load the step model, one step": [
            sys.executable,
            "-c",
            ORT_ONE_STEP,
            str(step_onnx),
        ],
        f"rnnedge run, csv replay of {csv.name}, JSON lines out": [
            RNNEDGE,
            "run",
            str(bundle_dir),
            "--source",
            f"csv:{csv}",
        ],
    }
    figures = {}
    for label, argv in commands.items():
        starts = [first_output_s(argv) for _ in range(repeats)]
        peaks = []
        for _ in range(repeats):
            peak, process = peak_rss_mb(argv, scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if process.returncode != 0:
                raise RuntimeError(f"{label} failed ({process.returncode})")
            peaks.append(peak)
        figures[label] = {"first_output_s": summary(starts), "peak_rss_mb": summary(peaks)}
    return figures


# --- the report --------------------------------------------------------------------------------------------------
def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def markdown(data: dict[str, Any]) -> str:
    one, many = data["batch_1"], data["streams"]
    overhead = one["engine_json_us"]["median"] / one["raw_us"]["median"] - 1
    engine_only = one["engine_us"]["median"] / one["raw_us"]["median"] - 1
    stream_rate = rate(many["engine_json_us"], many["streams"])
    engine_rate = rate(many["engine_us"], many["streams"])
    raw_rate = rate(many["raw_us"], many["streams"])
    lines = [
        "### Edge runtime: loop overhead, many streams, window recompute, MQTT end to end, process footprint",
        "",
        f"LSTM-{UNITS}, window {WINDOW}, ONNX Runtime float32 step model, one thread. Median (min-max) over "
        f"{data['repeats']} repeats; in-process figures pinned to one core. Ratios are against the baseline "
        "measured in the same run.",
        "",
        "| measure | rnnedge | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|",
        f"| per sample, batch 1: engine.process + JSON (us) | {spread(one['engine_json_us'])} | raw backend step "
        f"{spread(one['raw_us'])} | {1 + overhead:.2f}x (+{100 * overhead:.0f}%) | <= +20%: "
        f"{verdict(overhead <= TARGETS['loop_overhead'])} |",
        f"| per sample, batch 1: engine.process alone (us) | {spread(one['engine_us'])} | raw backend step | "
        f"{1 + engine_only:.2f}x | |",
        f"| {many['streams']:,} streams, one call per round: stream-samples/s, engine + JSON | "
        f"{spread(stream_rate, 0)} | raw batched step {spread(raw_rate, 0)} | "
        f"{stream_rate['median'] / raw_rate['median']:.2f}x | >= 200,000: "
        f"{verdict(stream_rate['median'] >= TARGETS['stream_samples_per_s'])} |",
        f"| {many['streams']:,} streams: stream-samples/s, engine alone | {spread(engine_rate, 0)} | raw batched step "
        f"| {engine_rate['median'] / raw_rate['median']:.2f}x | |",
    ]
    for row in data["window_recompute"]:
        if "skipped" in row:
            lines.append(f"| window recompute, {row['runtime']} | skipped: {row['skipped']} | | | |")
            continue
        ratio = row["window_us"]["median"] / row["step_us"]["median"]
        lines.append(
            f"| per sample, {row['runtime']}: recompute the {row['window']}-row window model (us) | "
            f"{spread(row['window_us'])} | streaming step {spread(row['step_us'])} | {ratio:.1f}x | |"
        )
    e2e = data["end_to_end"]
    if e2e is None:
        lines.append("| end to end through mosquitto | skipped: mosquitto is not installed | | | |")
    else:
        runtime, bare = e2e["runtime_rate"], e2e["bare_paho_rate"]
        delivered = "all delivered" if e2e["all_delivered"] else "**some lost**"
        lines += [
            f"| end to end: CSV replay -> rnnedge run -> mosquitto -> subscriber, QoS 1, forecasts/s "
            f"({e2e['forecasts']:,} forecasts, {delivered}) | {spread(runtime, 0)} | bare paho publisher -> "
            f"subscriber, {e2e['payload_bytes']} B payloads: {spread(bare, 0)} | "
            f"{runtime['median'] / bare['median']:.2f}x | >= 10,000: "
            f"{verdict(runtime['median'] >= TARGETS['e2e_forecasts_per_s'])} |",
            f"| end to end: peak RSS of rnnedge run with MQTT and the spool (MB) | "
            f"{spread(e2e['runtime_peak_rss_mb'])} | | | <= 80 MB: "
            f"{verdict(e2e['runtime_peak_rss_mb']['median'] <= TARGETS['peak_rss_mb'])} |",
        ]
    processes = data["processes"]
    bare_python, ort_only, ours = (processes[k] for k in processes)
    run_label = list(processes)[2]
    lines += [
        f"| {run_label}: start to first forecast (s) | {spread(ours['first_output_s'], 3)} | python + onnxruntime, one"
        f" step: {spread(ort_only['first_output_s'], 3)}; bare python {spread(bare_python['first_output_s'], 3)} | "
        f"{ours['first_output_s']['median'] / ort_only['first_output_s']['median']:.2f}x | <= 0.5 s: "
        f"{verdict(ours['first_output_s']['median'] <= TARGETS['first_forecast_s'])} |",
        f"| {run_label}: peak RSS (MB) | {spread(ours['peak_rss_mb'])} | python + onnxruntime, one step: "
        f"{spread(ort_only['peak_rss_mb'])}; bare python {spread(bare_python['peak_rss_mb'])} | "
        f"{ours['peak_rss_mb']['median'] / ort_only['peak_rss_mb']['median']:.2f}x | <= 80 MB: "
        f"{verdict(ours['peak_rss_mb']['median'] <= TARGETS['peak_rss_mb'])} |",
        "",
        "Where the loop's time goes (cProfile, share of own time; cProfile overstates the Python parts):",
        "",
        "| part | batch 1 | " + f"{many['streams']:,} streams |",
        "|---|---:|---:|",
    ]
    shares_1, shares_n = one["profile"]["shares"], many["profile"]["shares"]
    for part in dict.fromkeys([*shares_1, *shares_n]):
        lines.append(f"| {part} | {shares_1.get(part, 0.0)}% | {shares_n.get(part, 0.0)}% |")
    for label, figures in (("batch 1", one), (f"{many['streams']:,} streams", many)):
        heaviest = ", ".join(f"`{name}` {share}%" for name, share in figures["profile"]["heaviest"].items())
        lines += ["", f"Heaviest functions, {label}: {heaviest}."]
    return "\n".join(lines + limits(data)) + "\n"


def limits(data: dict[str, Any]) -> list[str]:
    """What stands between each missed target and the runtime, in this run's own figures."""
    one, many = data["batch_1"], data["streams"]
    raw, loop = one["raw_us"]["median"], one["engine_json_us"]["median"]
    per_stream_sample = 1e6 / rate(many["engine_json_us"], many["streams"])["median"]
    model_share = 1e6 / rate(many["raw_us"], many["streams"])["median"]
    missed = []
    if loop / raw - 1 > TARGETS["loop_overhead"]:
        missed.append(
            f"- Loop overhead at batch 1: +20% of the {raw:.1f} us step leaves {0.2 * raw:.1f} us per sample for "
            "everything the loop does in Python: time-order and gap checks, scaling, carrying the recurrent state, "
            "the anomaly score and alarm gate, the drift monitor, the message and its JSON. They take "
            f"{loop - raw:.1f} us (the profile above says where). Each is a few dozen lines on Python floats, and "
            "CPython runs a line in tens of nanoseconds: the budget holds about as many lines as one of them. "
            "Batching is what spreads this cost (the 1,000-stream figure)."
        )
    if 1e6 / per_stream_sample < TARGETS["stream_samples_per_s"]:
        missed.append(
            f"- {many['streams']:,} streams: the batched model call costs {model_share:.2f} us per stream-sample; "
            f"the rest of the {per_stream_sample:.1f} us is admission (a look-up and time checks per sample in "
            "Python), the batch's numpy calls, and each message's JSON, whose four floats alone take about 1.5 us "
            "to write as text."
        )
    e2e = data["end_to_end"]
    if e2e is not None and e2e["runtime_rate"]["median"] < TARGETS["e2e_forecasts_per_s"]:
        bare = e2e["bare_paho_rate"]["median"]
        missed.append(
            f"- End to end: a bare paho publisher with nothing else to do reaches {bare:,.0f} messages/s here "
            "(publisher, broker and subscriber share the 2 cores). The runtime's one thread does the engine's "
            f"{loop:.0f} us per sample, the spool and paho's publish and PUBACK handling (about 40 us per message "
            "in paho's Python, MQTT 5 properties included)."
        )
    if e2e is not None and e2e["runtime_peak_rss_mb"]["median"] > TARGETS["peak_rss_mb"]:
        processes = data["processes"]
        ort_only, json_lines = (processes[k]["peak_rss_mb"]["median"] for k in list(processes)[1:])
        missed.append(
            f"- Peak RSS with MQTT: python with onnxruntime and one step already takes {ort_only:.1f} MB here, most of "
            "it the shared libraries' pages (numpy's OpenBLAS, onnxruntime); the same replay with JSON lines out, "
            f"which loads neither paho nor ssl, peaks at {json_lines:.1f} MB. paho, ssl (libssl), sqlite and up to "
            "1,000 messages in flight add the rest."
        )
    if not missed:
        return []
    return ["", "What limits the missed targets, from the figures above:", "", *missed]


def pinned_to_one_core() -> set[int]:
    """Pin this process to one core (the in-process figures are per core); return the previous set."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(previous)})
    return previous


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run: figures not meaningful")
    parser.add_argument("--repeats", type=int, help="repeats per figure (default 5, quick 2)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    train_rows, epochs = (2000, 1) if args.quick else (len(sample_values()), 3)
    replay_rows = 2000 if args.quick else len(sample_values())
    calls = 300 if args.quick else 5000
    stream_calls = 3 if args.quick else 20

    with tempfile.TemporaryDirectory(prefix="rnnedge-bench-") as scratch_name:
        scratch = Path(scratch_name)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            bundle_dir = pool.submit(build_bundle, scratch, train_rows, epochs).result()
        bundle = load_bundle(bundle_dir)
        csv = replay_csv(scratch, replay_rows)
        previous = pinned_to_one_core()
        try:
            batch_1 = engine_figures(bundle, 1, calls, repeats)
            streams = engine_figures(bundle, STREAMS, stream_calls, repeats)
            window = window_figures(bundle, calls // 10, repeats)
        finally:
            os.sched_setaffinity(0, previous)
        data = {
            "quick": args.quick,
            "repeats": repeats,
            "model": {"cell": "lstm", "units": UNITS, "window": WINDOW, "trained_rows": train_rows},
            "batch_1": batch_1,
            "streams": streams,
            "window_recompute": window,
            "end_to_end": e2e_figures(bundle_dir, csv, scratch, repeats),
            "processes": process_figures(bundle_dir, csv, scratch, repeats),
            "targets": TARGETS,
        }
    write_result("runtime_throughput", data, markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
