"""Many sensor streams through one model: each stream keeps its own recurrent state, and the samples that
arrive together go through one batched backend call (at these model sizes the per-call overhead dominates,
so batching is where throughput comes from).

Per stream the engine also checks time order, resets the state after a gap, turns each forecast's residual into
an anomaly score and alarm, and numbers its forecasts without gaps, so consumers can detect loss and duplicates.

Everything a batch needs per stream is a row of arrays (recurrent state, numbering, the forecast to score the next
sample against, the anomaly and drift state), so for a batch of a thousand streams the model call, the scores and
the drift monitors are a few numpy calls; admission and each message's text remain per sample. A batch of one
takes `_step_one`, the same computation on Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_runtime.anomaly import AnomalyBank, AnomalyParams
from edge_runtime.backends import StepBackend
from edge_runtime.bundle import Bundle
from edge_runtime.drift import DriftBank, DriftLimits
from edge_runtime.errors import InputError
from edge_runtime.forecasts import Classifications, ForecastLayout, Forecasts, all_finite
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
    """What admission needs per stream; the numbers a batch needs (recurrent state, sequence numbers, the anomaly
    and drift state) are rows `slot` of the engine's arrays."""

    slot: int
    last_ts: float | None = None
    interval: float | None = None  # running estimate of the sampling interval, seconds
    resets: int = 0


# messages carry the score to 4 decimals, plenty for a value in [0, 1] whose alarm threshold is 0.5 by default (the
# alarm is decided on the exact score): a short number is half the cost of writing a full-precision one as text
SCORE_DECIMALS = 4
SCORE_SCALE = 10.0**SCORE_DECIMALS
Pending = tuple[Sample, StreamState, bool]  # an admitted sample, its stream, and whether a gap resets it first


@dataclass
class EngineCounters:
    samples: int = 0
    forecasts: int = 0
    rejected: int = 0
    gap_resets: int = 0
    alarms: int = 0
    batches: int = 0


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
        self._width, self._gap_factor = len(self.features), settings.gap_factor
        columns = [manifest.features.index(t) if t in manifest.features else None for t in self.targets]
        # the targets that are also inputs: their residuals are scored, and they are `observed` in messages
        self._observed = [j for j, c in enumerate(columns) if c is not None]
        self._observed_columns = [columns[j] for j in self._observed]
        self._layout = ForecastLayout(boot, bundle.digest, self.targets, tuple(self.targets[j] for j in self._observed))
        self.streams: dict[str, StreamState] = {}
        self.counters = EngineCounters()
        self._anomaly = AnomalyBank()
        reference = manifest.drift
        self._drift = DriftBank(reference, settings.drift_window, settings.drift_limits) if reference else None
        self._capacity = 0
        self._grow(16)
        self._one_input = np.zeros((1, len(self.features)), dtype=np.float32)  # a batch of one, reused

    def continue_from(self, previous: StreamEngine) -> None:
        """After a model swap: every stream keeps its sequence numbering, timing and the counters; its recurrent
        state starts afresh (it warms up again), since the new model's state means something else."""
        self.counters = previous.counters
        for name, old in previous.streams.items():
            state = self._stream(name)
            state.last_ts, state.interval, state.resets = old.last_ts, old.interval, old.resets
            self._seq[state.slot] = previous._seq[old.slot]

    # --- stream bookkeeping -------------------------------------------------------------------------------
    def _anomaly_params(self, stream: str) -> list[AnomalyParams]:
        """The observed targets' parameters for `stream`: the bundle's, with the device's overrides."""
        everyone = self.settings.anomaly_overrides.get("*", {})
        overrides = self.settings.anomaly_overrides.get(stream, everyone)
        params = []
        for j in self._observed:
            base = self.bundle.manifest.anomaly.get(self.targets[j], AnomalyParams())
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
            self._grow(2 * self._capacity)
        for params in self._anomaly_params(name):
            self._anomaly.add(params)  # rows slot * observed targets + k
        if self._drift is not None:
            self._drift.add()  # row `slot`
        state = StreamState(slot)
        self.streams[name] = state
        return state

    def _grow(self, capacity: int) -> None:
        """Room for `capacity` streams in the per-stream arrays (the recurrent state, the previous sample and the
        forecast made at it, numbering), and the memoryviews the batch-of-one path reads them through."""
        used = len(self.streams)

        def grown(old: np.ndarray | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
            new = np.zeros(shape, dtype=dtype)
            if old is not None:
                new[:used] = old[:used]
            return new

        first = self._capacity == 0
        states = self.backend.zero_state(capacity)
        if not first:
            for new, old in zip(states, self._states, strict=True):
                new[:used] = old[:used]
        self._states = states
        self._last_scaled = grown(None if first else self._last_scaled, (capacity, len(self.features)), np.float32)
        self._expected = grown(None if first else self._expected, (capacity, len(self._observed)), np.float64)
        self._seen = grown(None if first else self._seen, (capacity,), np.int64)
        self._seq = grown(None if first else self._seq, (capacity,), np.int64)
        self._has_expected = grown(None if first else self._has_expected, (capacity,), np.bool_)
        self._capacity = capacity
        self._seen_of, self._seq_of = memoryview(self._seen), memoryview(self._seq)
        self._has_expected_of = memoryview(self._has_expected)
        self._expected_of = memoryview(self._expected.reshape(-1))

    def _reset(self, state: StreamState) -> None:
        for tensor in self._states:
            tensor[state.slot] = 0.0
        self._seen[state.slot] = 0
        self._has_expected[state.slot] = False

    def _admit(self, sample: Sample) -> Pending | Rejected:
        """Time order, the stream limit, and whether a gap before this sample resets the stream (done when the
        sample is stepped: the stream's earlier samples of the same call come first). A refused sample changes
        no state."""
        values = sample.values
        if len(values) != self._width:
            return Rejected(sample.stream, f"{len(values)} values, the model needs {self._width}", "engine")
        if not all_finite(values):
            return Rejected(sample.stream, "a value is NaN or infinite", "engine")
        state = self.streams.get(sample.stream) or self._stream(sample.stream)
        if state is None:
            return Rejected(
                sample.stream,
                f"more than max_streams={self.settings.max_streams} streams: new stream refused",
                "engine",
            )
        last = state.last_ts
        state.last_ts = ts = sample.ts
        if last is None:
            return sample, state, False
        delta = ts - last
        if delta <= 0:
            state.last_ts = last
            kind = "duplicate" if delta == 0 else "out-of-order"
            return Rejected(sample.stream, f"{kind} timestamp {sample.ts_text} (last accepted {last})", "engine")
        interval = state.interval
        if interval is not None and delta > self._gap_factor * interval:
            state.resets += 1
            self.counters.gap_resets += 1
            return sample, state, True
        state.interval = delta if interval is None else 0.9 * interval + 0.1 * delta
        return sample, state, False

    # --- the batched step -----------------------------------------------------------------------------------
    def process(self, samples: Sequence[Sample]) -> tuple[Forecasts | Classifications, list[Rejected]]:
        """Admit, batch (one sample per stream per model call, in arrival order) and forecast."""
        out: Forecasts | Classifications = Classifications() if self.classes else Forecasts(self._layout)
        rejected: list[Rejected] = []
        pending: list[Pending] = []
        self.counters.samples += len(samples)
        for sample in samples:
            admitted = self._admit(sample)
            if type(admitted) is Rejected:
                rejected.append(admitted)
            else:
                pending.append(admitted)
        for batch in _rounds(pending):
            if len(batch) == 1:
                self._step_one(*batch[0], out)
            else:
                self._step(batch, out)
        self.counters.rejected += len(rejected)
        return out, rejected

    def _step_one(self, sample: Sample, state: StreamState, reset: bool, out: Forecasts | Classifications) -> None:
        """The same computation as `_step` for a batch of one, on Python floats: a numpy call on a tiny array
        costs more than its arithmetic on floats."""
        if reset:
            self._reset(state)
        slot = state.slot
        scaler = self.scaler
        one = self._one_input
        raw = sample.values
        # the float32 buffer rounds like `Scaler.scale_inputs`, so both paths give the very same numbers
        one[0] = [(v - m) / d for v, m, d in zip(raw, self._feature_mean, self._feature_std, strict=True)]
        scaled = one[0].tolist()
        seen = self._seen_of[slot]
        if scaler.diff_columns:
            previous = self._last_scaled[slot].tolist()
            self._last_scaled[slot] = scaled
            for c in scaler.diff_columns:
                one[0, c] = 0.0 if seen == 0 else scaled[c] - previous[c]
        output, new_states = self.backend.step(one, [tensor[slot : slot + 1] for tensor in self._states])
        for tensor, new in zip(self._states, new_states, strict=True):
            tensor[slot] = new[0]
        self.counters.batches += 1
        seen += 1
        self._seen_of[slot] = seen
        if self.classes:
            self._classification(sample, slot, seen, output[0], out)
            return
        values = output[0].tolist()
        width = len(self.targets)
        # [T][H]: the layout of a message's `forecast`
        forecast = [[0.0] * scaler.horizon for _ in range(width)]
        for j in range(width):
            last = scaled[scaler.target_columns[j]] if scaler.relative_to_last else None
            mean, std, row = self._target_mean[j], self._target_std[j], forecast[j]
            for k in range(scaler.horizon):
                value = values[k * width + j]
                if last is not None:
                    value += last
                row[k] = value * std + mean
        observed = [float(raw[c]) for c in self._observed_columns]  # JSON: an int or numpy value is written as float
        base = slot * len(observed)
        residual: list[float] | None = None
        score: float | None = None
        alarm = False
        if self._has_expected_of[slot]:
            expected = self._expected_of
            residual = [value - expected[base + k] for k, value in enumerate(observed)]
            score = 0.0
            for k, value in enumerate(observed):
                try:
                    target_score, target_alarm = self._anomaly.update_one(base + k, residual[k], value)
                except InputError:  # a non-finite residual: the model's forecast was not a number
                    continue
                if target_score > score:
                    score = target_score
                alarm = alarm or target_alarm
        if self._drift is not None:
            known = residual if residual is not None and len(observed) == width and all_finite(residual) else None
            self._drift.update_one(slot, raw, known)
        if seen <= self.warmup:
            self._has_expected_of[slot] = False
            return
        self._has_expected_of[slot] = True
        for k, j in enumerate(self._observed):
            self._expected_of[base + k] = forecast[j][0]
        self.counters.forecasts += 1
        self.counters.alarms += alarm
        seq = self._seq_of[slot]
        self._seq_of[slot] = seq + 1
        if score is not None:
            score = round(score * SCORE_SCALE) / SCORE_SCALE  # what np.round(score, 4) gives in `_step`
        out.add(sample.stream, seq, sample.ts_text, observed, forecast, residual, score, alarm)

    def _step(self, batch: list[Pending], out: Forecasts | Classifications) -> None:
        for _, state, reset in batch:
            if reset:
                self._reset(state)
        rows = np.fromiter((state.slot for _, state, _ in batch), dtype=np.intp, count=len(batch))
        raw = np.array([sample.values for sample, _, _ in batch], dtype=np.float64)
        scaled = self.scaler.scale_inputs(raw)
        inputs = scaled
        seen = self._seen[rows]
        if self.scaler.diff_columns:  # the change since the stream's previous sample; 0 after a start or reset
            columns = self.scaler.diff_columns
            inputs = scaled.copy()
            change = scaled[:, columns] - self._last_scaled[rows][:, columns]
            change[seen == 0] = 0.0
            inputs[:, columns] = change
            self._last_scaled[rows] = scaled
        output, new_states = self.backend.step(inputs, [tensor[rows] for tensor in self._states])
        for tensor, new in zip(self._states, new_states, strict=True):
            tensor[rows] = new
        self.counters.batches += 1
        seen += 1
        self._seen[rows] = seen
        if self.classes:
            for row, (sample, state, _) in enumerate(batch):
                self._classification(sample, state.slot, int(seen[row]), output[row], out)
            return
        units = self.scaler.forecast_units(output, scaled)  # (B, H, T)
        observed = raw[:, self._observed_columns]
        width = observed.shape[1]
        known = self._has_expected[rows]
        residual = observed - self._expected[rows]  # meaningless where not `known`
        score = np.zeros(len(batch))
        alarm = np.zeros(len(batch), dtype=bool)
        for k in range(width):
            scored = known & np.isfinite(residual[:, k])
            if scored.any():
                target_score, target_alarm = self._anomaly.update(
                    rows[scored] * width + k, residual[scored, k], observed[scored, k]
                )
                score[scored] = np.where(target_score > score[scored], target_score, score[scored])
                alarm[scored] |= target_alarm
        if self._drift is not None:
            learn = known & np.isfinite(residual).all(axis=1) if width == len(self.targets) else None
            self._drift.update(rows, raw, residual if learn is not None else None, learn)
        warm = seen > self.warmup
        self._has_expected[rows] = warm
        self._expected[rows] = units[:, 0, self._observed]
        if not warm.all():
            picked = np.flatnonzero(warm)
            batch = [batch[i] for i in picked.tolist()]
            rows, observed, units, residual = rows[picked], observed[picked], units[picked], residual[picked]
            known, score, alarm = known[picked], score[picked], alarm[picked]
        if not batch:
            return
        seq = self._seq[rows]
        self._seq[rows] = seq + 1
        self.counters.forecasts += len(batch)
        self.counters.alarms += int(alarm.sum())
        out.extend(
            [sample.stream for sample, _, _ in batch],
            [sample.ts_text for sample, _, _ in batch],
            seq.tolist(),
            observed,
            units,
            residual,
            known,
            np.round(score, SCORE_DECIMALS),
            alarm,
        )

    def _classification(
        self, sample: Sample, slot: int, seen: int, output: np.ndarray, out: Forecasts | Classifications
    ) -> None:
        """A classifier's message: the class probabilities after this sample and the most likely class."""
        if self._drift is not None:
            self._drift.update_one(slot, sample.values, None)
        if seen <= self.warmup:
            return
        if len(self.classes) == 2 and len(output) == 1:  # one sigmoid output: P(classes[1])
            probabilities = [1.0 - float(output[0]), float(output[0])]
        else:
            probabilities = [float(p) for p in output]
        if not all_finite(probabilities):  # a broken model: JSON null, no class
            probabilities = [p if math.isfinite(p) else None for p in probabilities]
        known = [k for k, p in enumerate(probabilities) if p is not None]
        best = max(known, key=probabilities.__getitem__) if known else None  # the first of equals, like argmax
        self.counters.forecasts += 1
        seq = self._seq_of[slot]
        self._seq_of[slot] = seq + 1
        out.append(
            sample.stream,
            {
                "stream": sample.stream,
                "boot": self.boot,
                "seq": seq,
                "ts": sample.ts_text,
                "probabilities": dict(zip(self.classes, probabilities, strict=True)),
                "class": None if best is None else self.classes[best],
                "bundle": self.bundle.digest,
            },
        )

    def stream_summary(self) -> dict[str, dict[str, Any]]:
        """Per stream, for the metrics message: numbering, gap resets, sampling interval, drift."""
        return {
            name: {
                "seq": self._seq_of[s.slot],
                "gap_resets": s.resets,
                "interval_s": s.interval,
                "drift": self._drift.snapshot(s.slot) if self._drift is not None else None,
            }
            for name, s in self.streams.items()
        }


def _rounds(pending: list[Pending]) -> list[list[Pending]]:
    """Round k holds each stream's k-th sample of the call: one pass, whatever the mix of streams. A single sample
    (a live stream's usual call) is its own round."""
    if len(pending) <= 1:
        return [pending] if pending else []
    if len({id(item[1]) for item in pending}) == len(pending):  # every stream once: the usual batch
        return [pending]
    rounds: list[list[Pending]] = []
    taken: dict[int, int] = {}
    for item in pending:
        k = taken.get(item[1].slot, 0)
        taken[item[1].slot] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(item)
    return rounds
