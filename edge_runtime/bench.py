"""`rnnedge bench BUNDLE`: what each artifact costs on this device, in the spirit of TFLite's benchmark_model.

Per step artifact and its backend: load time, latency per call at batch 1 and at larger batches (many streams in
one call, as the runtime batches them), throughput, and peak RSS. Each artifact is measured in its own child
process (`python -m edge_runtime.bench`), so one runtime's memory never inflates another's. Inputs are the bundle's
own golden inputs, fed back with the recurrent state like the runtime does. Runs with the base install.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.backends import RUNTIME_OF_FORMAT, open_step_backend, runtime_missing
from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.errors import RnnedgeError

DEFAULT_BATCHES = (1, 16, 256)
WARMUP_CALLS = 20
MIN_CALLS = 100
MAX_CALLS = 200_000
MAX_BATCH = 65_536  # streams per call: far past any device's stream count, short of exhausting its memory
MAX_BATCH_SIZES = 16
MAX_SECONDS = 60.0  # per batch size and artifact
MAX_THREADS = 64
REFUSED = "rnnedge: error: "  # how the child starts the line saying why it refused the bundle (exit status 2)


@dataclass(frozen=True)
class BatchTiming:
    batch: int
    calls: int
    p50_us: float  # per call
    p99_us: float
    p50_us_per_sample: float
    samples_per_s: float  # batch / mean call time


@dataclass(frozen=True)
class ArtifactBench:
    file: str
    kind: str
    format: str
    precision: str
    backend: str
    status: str  # "ok", "skipped" or "error"
    note: str = ""
    load_ms: float | None = None
    rss_after_imports_mb: float | None = None
    peak_rss_mb: float | None = None
    batches: tuple[BatchTiming, ...] = ()


@dataclass(frozen=True)
class BenchReport:
    bundle: str
    model: str
    host: dict[str, str]
    threads: int
    seconds_per_batch: float
    results: tuple[ArtifactBench, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        host = self.host
        lines = [
            f"bundle {self.bundle[:12]} ({self.model}) on {host['profile']} ({host['machine']}, Python "
            f"{host['python']}, onnxruntime {host['onnxruntime']}), {self.threads} thread(s)",
            "",
            "| artifact | backend | load ms | RSS MB after imports / peak | batch | p50 us/call | p99 us/call "
            "| p50 us/sample | samples/s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            label = f"{r.file} ({r.precision})"
            if r.status != "ok":
                lines.append(f"| {label} | {r.backend} | {r.status}: {r.note} | | | | | | |")
                continue
            for i, b in enumerate(r.batches):
                first = i == 0
                load = f"{r.load_ms:.1f}" if first else ""
                rss = f"{r.rss_after_imports_mb:.0f} / {r.peak_rss_mb:.0f}" if first else ""
                lines.append(
                    f"| {label if first else ''} | {r.backend if first else ''} | {load} | {rss} | {b.batch} "
                    f"| {b.p50_us:.1f} | {b.p99_us:.1f} | {b.p50_us_per_sample:.2f} | {b.samples_per_s:,.0f} |"
                )
        return "\n".join(lines)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _time_batch(backend: Any, rows: np.ndarray, batch: int, seconds: float) -> BatchTiming:
    inputs = [
        np.ascontiguousarray(np.take(rows, np.arange(k * batch, (k + 1) * batch), axis=0, mode="wrap"))
        for k in range(16)
    ]
    states = backend.zero_state(batch)
    for k in range(WARMUP_CALLS):
        _, states = backend.step(inputs[k % 16], states)
    durations = []
    deadline = time.perf_counter() + seconds
    while len(durations) < MAX_CALLS and (len(durations) < MIN_CALLS or time.perf_counter() < deadline):
        x = inputs[len(durations) % 16]
        started = time.perf_counter_ns()
        _, states = backend.step(x, states)
        durations.append(time.perf_counter_ns() - started)
    us = np.asarray(durations, dtype=np.float64) / 1000
    p50, p99 = np.percentile(us, [50, 99])
    return BatchTiming(
        batch,
        len(us),
        round(float(p50), 2),
        round(float(p99), 2),
        round(float(p50) / batch, 3),
        round(batch * 1e6 / float(us.mean()), 1),
    )


def measure_artifact(bundle_dir: Path, file: str, batches: tuple[int, ...], seconds: float, threads: int) -> dict:
    """In the child process: load one artifact and time it. Returns the measured fields of ArtifactBench."""
    bundle = load_bundle(bundle_dir)
    artifact = next(a for a in bundle.manifest.artifacts if a.file == file)
    backend_module = {"onnx": "onnxruntime", "tflite": "ai_edge_litert.interpreter", "numpy": "numpy"}
    __import__(backend_module[artifact.format])
    golden = bundle.golden()
    rows = golden["inputs"].reshape(-1, golden["inputs"].shape[-1]).astype(np.float32)
    rss_after_imports = _rss_mb()
    started = time.perf_counter()
    backend = open_step_backend(bundle, artifact, threads)
    load_ms = (time.perf_counter() - started) * 1000
    timings = [asdict(_time_batch(backend, rows, batch, seconds)) for batch in batches]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {
        "load_ms": round(load_ms, 2),
        "rss_after_imports_mb": round(rss_after_imports, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "batches": timings,
    }


def _host() -> dict[str, str]:
    from edge_runtime.profiles import detect_profile, read_host

    host = read_host()
    try:
        profile = detect_profile(host).name
    except RnnedgeError:
        profile = "unsupported"
    try:
        ort_version = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort_version = "not installed"
    return {
        "profile": profile,
        "model": host.model or platform.node(),
        "machine": host.machine,
        "python": platform.python_version(),
        "onnxruntime": ort_version,
    }


def check_options(batches: tuple[int, ...], seconds: float, threads: int) -> None:
    """Refuse sizes no measurement needs before any child starts: they would hang or exhaust the device."""
    if not batches or len(batches) > MAX_BATCH_SIZES or not all(1 <= b <= MAX_BATCH for b in batches):
        raise RnnedgeError(
            f"--batches: batch sizes must be positive integers up to {MAX_BATCH}, at most {MAX_BATCH_SIZES} of "
            f"them, got {','.join(map(str, batches)) or 'none'}"
        )
    if not 0 < seconds <= MAX_SECONDS:  # also refuses NaN
        raise RnnedgeError(f"--seconds must be above 0 and at most {MAX_SECONDS:g}, got {seconds:g}")
    if not 1 <= threads <= MAX_THREADS:
        raise RnnedgeError(f"--threads must be from 1 to {MAX_THREADS}, got {threads}")


def bench_bundle(
    bundle: Bundle, batches: tuple[int, ...] = DEFAULT_BATCHES, seconds: float = 0.5, threads: int = 1
) -> BenchReport:
    check_options(batches, seconds, threads)
    results = []
    for a in bundle.manifest.artifacts:
        backend = RUNTIME_OF_FORMAT[a.format]
        base = ArtifactBench(a.file, a.kind, a.format, a.precision, backend, "skipped")
        if a.kind != "step":
            results.append(replace(base, note="window model: the runtime streams step models only"))
            continue
        missing = runtime_missing(a.format)
        if missing:
            results.append(replace(base, note=missing))
            continue
        command = [
            sys.executable,
            "-m",
            "edge_runtime.bench",
            str(bundle.path),
            a.file,
            "--batches",
            ",".join(map(str, batches)),
            "--seconds",
            str(seconds),
            "--threads",
            str(threads),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as exc:  # e.g. under qemu-user without binfmt_misc, which cannot start a child python
            results.append(replace(base, status="error", note=f"cannot start the measuring process: {exc}"))
            continue
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            refusals = [line.removeprefix(REFUSED) for line in lines if line.startswith(REFUSED)]
            # the child refused the artifact: a bad bundle. Exit status 2 alone is not that: Python also exits 2
            # when it cannot open what it was asked to run
            if done.returncode == RnnedgeError.exit_code and refusals:
                raise RnnedgeError(refusals[-1])
            results.append(replace(base, status="error", note=(refusals or lines or [f"exit {done.returncode}"])[-1]))
            continue
        measured = json.loads(done.stdout)
        measured["batches"] = tuple(BatchTiming(**b) for b in measured["batches"])
        results.append(replace(base, status="ok", **measured))
    m = bundle.manifest
    model = f"{m.cell} {'x'.join(map(str, m.layers))}, horizon {m.horizon}, {len(m.features)} feature(s)"
    return BenchReport(bundle.digest, model, _host(), threads, seconds, tuple(results))


def _child_main() -> None:
    parser = argparse.ArgumentParser(description="one artifact of `rnnedge bench`, in its own process")
    parser.add_argument("bundle")
    parser.add_argument("file")
    parser.add_argument("--batches", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    try:
        measured = measure_artifact(Path(args.bundle), args.file, batches, args.seconds, args.threads)
    except RnnedgeError as exc:
        print(f"{REFUSED}{exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    print(json.dumps(measured))


if __name__ == "__main__":
    _child_main()
