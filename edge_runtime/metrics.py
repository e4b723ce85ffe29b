"""The periodic metrics message: throughput, latency percentiles, what was refused or dropped, spool depth,
connection health and per-stream drift, so that a fleet dashboard can tell a healthy device from a sick one."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np


class LatencyWindow:
    """The last `size` per-sample latencies (ns) in a ring: percentiles over recent behaviour, bounded memory."""

    def __init__(self, size: int = 8192) -> None:
        self._values = np.zeros(size, dtype=np.int64)
        self._count = 0

    def add(self, per_sample_ns: int, samples: int) -> None:
        samples = min(samples, len(self._values))
        self._values[(self._count + np.arange(samples)) % len(self._values)] = per_sample_ns
        self._count += samples

    def percentiles_us(self) -> dict[str, float | None]:
        filled = self._values[: min(self._count, len(self._values))]
        if not len(filled):
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(filled, [50, 99]) / 1000
        return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}


class RefusalLog:
    """Counts refused samples by reason, and says which ones to log: at most `per_minute` lines a minute."""

    def __init__(self, per_minute: int = 10) -> None:
        self.by_reason: Counter[str] = Counter()
        self.per_minute = per_minute
        self._window_start = time.monotonic()
        self._logged = 0
        self.suppressed = 0

    def record(self, reason_kind: str) -> bool:
        """Count one refusal; True if it should be logged now."""
        self.by_reason[reason_kind] += 1
        now = time.monotonic()
        if now - self._window_start >= 60:
            self._window_start, self._logged = now, 0
        if self._logged < self.per_minute:
            self._logged += 1
            return True
        self.suppressed += 1
        return False


def metrics_message(
    *,
    boot: int,
    started: float,
    interval_samples: int,
    interval_s: float,
    latency: LatencyWindow,
    counters: dict[str, int],
    refused: Counter[str],
    spool: dict[str, int] | None,
    mqtt: dict[str, Any] | None,
    streams: dict[str, Any],
) -> dict[str, Any]:
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "boot": boot,
        "uptime_s": round(time.time() - started, 1),
        "samples_per_s": round(interval_samples / interval_s, 1) if interval_s > 0 else None,
        "latency_us": latency.percentiles_us(),
        **counters,
        "refused": dict(refused),
        "spool": spool,
        "mqtt": mqtt,
        "streams": streams,
    }
