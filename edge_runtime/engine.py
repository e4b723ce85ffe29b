"""Many sensor streams through one model: each stream keeps its own recurrent state, and the samples that
arrive together go through one batched backend call (at these model sizes the per-call overhead dominates,
so batching is where throughput comes from).

Per stream the engine also checks time order, resets the state after a gap, turns each forecast's residual into
an anomaly score and alarm, and numbers its forecasts without gaps, so consumers can detect loss and duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from edge_runtime.anomaly import AnomalyParams, StreamAnomaly
from edge_runtime.backends import StepBackend
from edge_runtime.bundle import Bundle
from edge_runtime.drift import DriftLimits, DriftMonitor
from edge_runtime.errors import InputError
from edge_runtime.samples import Rejected, Sample
from edge_runtime.scaling import Scaler


@dataclass(frozen=True)
class EngineSettings:
    gap_factor: float = 3.0  # a gap longer than this many sampling intervals resets the stream's state
    max_streams: int = 1000
    # stream -> AnomalyParams fields replacing the bundle's; "*": for every stream without its own entry
    anomaly_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift_window: int = 1000  # samples (exponential window) over which drift is measured
    drift_limits: DriftLimits = field(default_factory=DriftLimits)


@dataclass
class StreamState:
    slot: int
    anomaly: list[StreamAnomaly]
    seq: int = 0  # sequence number of the next forecast
    seen: int = 0  # samples since the start or the last reset
    last_ts: float | None = None
    interval: float | None = None  # running estimate of the sampling interval, seconds
    previous_forecast: list[list[float]] | None = None  # [H][T] made at the previous sample
    resets: int = 0
    drift: DriftMonitor | None = None


@dataclass
class EngineCounters:
    samples: int = 0
    forecasts: int = 0
    rejected: int = 0
    gap_resets: int = 0
    alarms: int = 0
    batches: int = 0


class Forecast(NamedTuple):
    """One published forecast, ready to serialise (`message`). A tuple: one is made per sample, and a frozen
    dataclass takes several times longer to build."""

    stream: str
    message: dict[str, Any]


class StreamEngine:
    def __init__(
        self, bundle: Bundle, backend: StepBackend, settings: EngineSettings = EngineSettings(), boot: int = 0
    ) -> None:
        manifest = bundle.manifest
        self.boot = boot  # identifies this run: (stream, boot, seq) is unique across restarts
        self.bundle = bundle
        self.backend = backend
        self.settings = settings
        self.scaler = Scaler.from_manifest(manifest)
        self._feature_mean = self.scaler.feature_mean.tolist()
        self._feature_std = self.scaler.feature_std.tolist()
        self._target_mean = self.scaler.target_mean.tolist()
        self._target_std = self.scaler.target_std.tolist()
        self.targets = manifest.targets
        self.classes = manifest.classes if manifest.task == "classify" else ()
        self.features = manifest.features
        self.warmup = manifest.warmup_steps
        self.target_columns = [manifest.features.index(t) if t in manifest.features else None for t in self.targets]
        # (target index, name, input column) of the targets that are also inputs: their residuals are scored
        self._observed_targets = [
            (j, t, c) for j, (t, c) in enumerate(zip(self.targets, self.target_columns, strict=True)) if c is not None
        ]
        self.streams: dict[str, StreamState] = {}
        self.counters = EngineCounters()
        self._capacity = 0
        self._states: list[np.ndarray] = backend.zero_state(0)
        self._last_scaled = np.zeros((0, len(self.features)), dtype=np.float32)  # per stream, for differencing
        self._one_input = np.zeros((1, len(self.features)), dtype=np.float32)  # a batch of one, reused

    def continue_from(self, previous: StreamEngine) -> None:
        """After a model swap: every stream keeps its sequence numbering, timing and the counters; its recurrent
        state starts afresh (it warms up again), since the new model's state means something else."""
        self.counters = previous.counters
        for name, old in previous.streams.items():
            state = self._stream(name)
            state.seq, state.last_ts, state.interval = old.seq, old.last_ts, old.interval

    # --- stream bookkeeping -------------------------------------------------------------------------------
    def _anomaly_params(self, stream: str) -> list[AnomalyParams]:
        everyone = self.settings.anomaly_overrides.get("*", {})
        overrides = self.settings.anomaly_overrides.get(stream, everyone)
        params = []
        for target in self.targets:
            base = self.bundle.manifest.anomaly.get(target, AnomalyParams())
            params.append(replace(base, **overrides) if overrides else base)
        return params

    def _stream(self, name: str) -> StreamState | None:
        state = self.streams.get(name)
        if state is not None:
            return state
        if len(self.streams) >= self.settings.max_streams:
            return None
        slot = len(self.streams)
        if slot >= self._capacity:
            self._grow(max(16, 2 * self._capacity))
        reference = self.bundle.manifest.drift
        monitor = DriftMonitor(reference, self.settings.drift_window, self.settings.drift_limits) if reference else None
        state = StreamState(slot, [StreamAnomaly(p) for p in self._anomaly_params(name)], drift=monitor)
        self.streams[name] = state
        return state

    def _grow(self, capacity: int) -> None:
        grown = self.backend.zero_state(capacity)
        for new, old in zip(grown, self._states, strict=True):
            new[: len(old)] = old
        self._states = grown
        last = np.zeros((capacity, len(self.features)), dtype=np.float32)
        last[: len(self._last_scaled)] = self._last_scaled
        self._last_scaled = last
        self._capacity = capacity

    def _reset(self, state: StreamState) -> None:
        for tensor in self._states:
            tensor[state.slot] = 0.0
        state.seen = 0
        state.previous_forecast = None

    def _admit(self, sample: Sample) -> StreamState | Rejected:
        """Time order, gap reset and the stream limit; a refused sample changes no state."""
        if len(sample.values) != len(self.features):
            return Rejected(
                sample.stream, f"{len(sample.values)} values, the model needs {len(self.features)}", "engine"
            )
        if not all(math.isfinite(v) for v in sample.values):
            return Rejected(sample.stream, "a value is NaN or infinite", "engine")
        state = self._stream(sample.stream)
        if state is None:
            return Rejected(
                sample.stream,
                f"more than max_streams={self.settings.max_streams} streams: new stream refused",
                "engine",
            )
        if state.last_ts is not None:
            delta = sample.ts - state.last_ts
            if delta <= 0:
                kind = "duplicate" if delta == 0 else "out-of-order"
                return Rejected(
                    sample.stream, f"{kind} timestamp {sample.ts_text} (last accepted {state.last_ts})", "engine"
                )
            if state.interval is not None and delta > self.settings.gap_factor * state.interval:
                self._reset(state)
                state.resets += 1
                self.counters.gap_resets += 1
            else:
                state.interval = delta if state.interval is None else 0.9 * state.interval + 0.1 * delta
        state.last_ts = sample.ts
        return state

    # --- the batched step -----------------------------------------------------------------------------------
    def process(self, samples: Sequence[Sample]) -> tuple[list[Forecast], list[Rejected]]:
        """Admit, batch (one sample per stream per model call, in arrival order) and forecast."""
        forecasts: list[Forecast] = []
        rejected: list[Rejected] = []
        pending: list[tuple[Sample, StreamState]] = []
        for sample in samples:
            self.counters.samples += 1
            admitted = self._admit(sample)
            if isinstance(admitted, Rejected):
                rejected.append(admitted)
                continue
            pending.append((sample, admitted))
        for batch in _rounds(pending):
            forecasts.extend(self._step(batch))
        self.counters.rejected += len(rejected)
        return forecasts, rejected

    def _step_one(self, sample: Sample, state: StreamState) -> list[Forecast]:
        """The same computation as `_step` for a batch of one, on Python floats: at these sizes each numpy
        call on a tiny array costs about a microsecond, more than the arithmetic (docs/BENCHMARKS.md)."""
        slot = state.slot
        scaler = self.scaler
        one = self._one_input
        # the float32 buffer rounds like `Scaler.scale_inputs`, so both paths give the very same numbers
        one[0] = [(v - m) / d for v, m, d in zip(sample.values, self._feature_mean, self._feature_std, strict=True)]
        scaled = one[0].tolist()
        if scaler.diff_columns:
            previous = self._last_scaled[slot].tolist()
            self._last_scaled[slot] = scaled
            for c in scaler.diff_columns:
                one[0, c] = 0.0 if state.seen == 0 else scaled[c] - previous[c]
        output, new_states = self.backend.step(one, [tensor[slot : slot + 1] for tensor in self._states])
        for tensor, new in zip(self._states, new_states, strict=True):
            tensor[slot] = new[0]
        self.counters.batches += 1
        state.seen += 1
        values = output[0].tolist()
        if self.classes:
            message = self._classification(sample, state, list(sample.values), output[0])
            return [Forecast(sample.stream, message)] if message is not None else []
        last = scaled if scaler.relative_to_last else None
        width = len(self.targets)
        forecast = []
        for k in range(scaler.horizon):
            step = []
            for j in range(width):
                value = values[k * width + j]
                if last is not None:
                    value += last[scaler.target_columns[j]]
                step.append(value * self._target_std[j] + self._target_mean[j])
            forecast.append(step)
        message = self._message(sample, state, list(sample.values), forecast)
        return [Forecast(sample.stream, message)] if message is not None else []

    def _step(self, batch: list[tuple[Sample, StreamState]]) -> list[Forecast]:
        if len(batch) == 1:
            return self._step_one(*batch[0])
        rows = np.fromiter((state.slot for _, state in batch), dtype=np.intp, count=len(batch))
        raw = np.array([sample.values for sample, _ in batch], dtype=np.float64)
        scaled = self.scaler.scale_inputs(raw)
        inputs = scaled
        if self.scaler.diff_columns:  # the change since the stream's previous sample; 0 after a start or reset
            columns = self.scaler.diff_columns
            inputs = scaled.copy()
            change = scaled[:, columns] - self._last_scaled[rows][:, columns]
            fresh = np.array([state.seen == 0 for _, state in batch])
            change[fresh] = 0.0
            inputs[:, columns] = change
            self._last_scaled[rows] = scaled
        output, new_states = self.backend.step(inputs, [tensor[rows] for tensor in self._states])
        for tensor, new in zip(self._states, new_states, strict=True):
            tensor[rows] = new
        self.counters.batches += 1
        results = []
        if self.classes:
            for row, (sample, state) in enumerate(batch):
                state.seen += 1
                message = self._classification(sample, state, list(sample.values), output[row])
                if message is not None:
                    results.append(Forecast(sample.stream, message))
            return results
        forecast_units = self.scaler.forecast_units(output, scaled).tolist()  # [B][H][T]
        for row, (sample, state) in enumerate(batch):
            state.seen += 1
            message = self._message(sample, state, list(sample.values), forecast_units[row])
            if message is not None:
                results.append(Forecast(sample.stream, message))
        return results

    def _classification(
        self, sample: Sample, state: StreamState, raw: list[float], output: np.ndarray
    ) -> dict[str, Any] | None:
        """A classifier's message: the class probabilities after this sample and the most likely class."""
        if state.drift is not None:
            state.drift.update(raw, None)
        if state.seen <= self.warmup:
            return None
        if len(self.classes) == 2 and len(output) == 1:  # one sigmoid output: P(classes[1])
            probabilities = [1.0 - float(output[0]), float(output[0])]
        else:
            probabilities = [float(p) for p in output]
        best = int(np.argmax(probabilities))
        self.counters.forecasts += 1
        message = {
            "stream": sample.stream,
            "boot": self.boot,
            "seq": state.seq,
            "ts": sample.ts_text,
            "probabilities": dict(zip(self.classes, probabilities, strict=True)),
            "class": self.classes[best],
            "bundle": self.bundle.digest,
        }
        state.seq += 1
        return message

    def _message(
        self, sample: Sample, state: StreamState, raw: list[float], forecast: list[list[float]]
    ) -> dict[str, Any] | None:
        observed: dict[str, float] = {}
        residual: dict[str, float | None] = dict.fromkeys(self.targets)
        previous = state.previous_forecast
        score: float | None = None if previous is None else 0.0
        alarm = False
        for j, target, column in self._observed_targets:
            value = raw[column]
            observed[target] = value
            if previous is None:
                continue
            residual[target] = value - previous[0][j]
            try:
                verdict = state.anomaly[j].update(residual[target], value)
            except InputError:
                continue
            if verdict.score > score:
                score = verdict.score
            alarm = alarm or verdict.alarm
        if state.drift is not None:
            # the residuals are known when every target is an input and a forecast was made for this sample
            known = tuple(residual.values()) if previous is not None and len(observed) == len(residual) else None
            state.drift.update(raw, known)
        warm = state.seen > self.warmup
        state.previous_forecast = forecast if warm else None
        if not warm:
            return None
        self.counters.forecasts += 1
        self.counters.alarms += alarm
        message = {
            "stream": sample.stream,
            "boot": self.boot,
            "seq": state.seq,
            "ts": sample.ts_text,
            "observed": observed,
            "forecast": {t: [step[j] for step in forecast] for j, t in enumerate(self.targets)},
            "residual": residual,
            "score": score,
            "alarm": alarm,
            "bundle": self.bundle.digest,
        }
        state.seq += 1
        return message

    def stream_summary(self) -> dict[str, dict[str, Any]]:
        """Per stream, for the metrics message: numbering, gap resets, sampling interval, drift."""
        return {
            name: {
                "seq": s.seq,
                "gap_resets": s.resets,
                "interval_s": s.interval,
                "drift": s.drift.snapshot() if s.drift else None,
            }
            for name, s in self.streams.items()
        }


def _rounds(pending: list[tuple[Sample, StreamState]]) -> list[list[tuple[Sample, StreamState]]]:
    """Round k holds each stream's k-th sample of the call: one pass, whatever the mix of streams. A single sample
    (a live stream's usual call) is its own round."""
    if len(pending) <= 1:
        return [pending] if pending else []
    rounds: list[list[tuple[Sample, StreamState]]] = []
    taken: dict[int, int] = {}
    for item in pending:
        k = taken.get(item[1].slot, 0)
        taken[item[1].slot] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(item)
    return rounds
