"""Streaming anomaly scores and alarms from forecast residuals, per stream and target.

A residual alone is not comparable across sensors (0.5 K here, 500 requests/s there). `AnomalyLikelihood` turns
it into a score in [0, 1] that means the same on every stream: how improbable the recent mean residual magnitude
is under a running estimate of its distribution (the approach of NAB's anomaly likelihood). It starts from the
validation residuals measured at export and adapts online. `ValueRange` adds NAB's other signal, a value beyond
the range seen so far. `AlarmGate` turns scores into alarms, one per incident rather than one per sample: on the
NAB corpus this de-duplication is worth more than the forecaster (benchmarks/nab_baseline.py).

`StreamAnomaly` (one stream and target) is plain Python on floats, O(1) in time and memory per sample: the readable
reference. `AnomalyBank`, what the engine uses, holds many scorers as arrays: `update` scores a batch of streams with
numpy, `update_one` one sample on Python floats, both bit-identical to `StreamAnomaly`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np

from edge_runtime.errors import InputError

LOG_FLOOR = 1e-10  # tail probabilities at or below this all score 1
LOG_OF_FLOOR = math.log(LOG_FLOOR)
SQRT2 = math.sqrt(2.0)
MAX_MAGNITUDE = 1e150  # larger residual magnitudes are clipped, so that their squares stay finite
RELATIVE_SPREAD_FLOOR = 0.05  # the spread estimate never falls below 5% of the mean magnitude ...
ABSOLUTE_SPREAD_FLOOR = 1e-300  # ... nor to zero: a flat residual stream that moves scores 1, never NaN


@dataclass(frozen=True)
class AnomalyParams:
    """How one target's anomaly score and alarm are computed: the `anomaly` entry a bundle manifest carries.

    The first group is measured at export (`measure`): statistics of the short-window means of |residual| on
    data the model was not trained on, and the training range of the target, in target units. `residual_count`
    is how much that prior weighs against live samples (0: none, learn from the stream before scoring).
    The second group sets the score, the third the alarm policy; these are defaults a device may override per
    stream (`dataclasses.replace`).
    """

    residual_mean: float = 0.0
    residual_std: float = 0.0
    residual_count: int = 0
    value_low: float | None = None
    value_high: float | None = None

    short_window: int = 10  # samples whose mean |residual| is scored
    long_window: int = 8640  # samples (about) of history the distribution is estimated from
    range_tolerance: float | None = 0.05  # out of range: beyond low/high by this fraction of high - low; None: off

    threshold: float = 0.5  # an alarm fires at this score (tail probability 1e-5) ...
    rearm_below: float = 0.3  # ... and the next one only after the score stayed below this ...
    rearm_after: int = 10  # ... for this many samples in a row (0: no de-duplication)
    min_gap: int = 0  # and at least this many samples after the previous alarm

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.short_window <= self.long_window:
            problems.append(f"need 1 <= short_window <= long_window, got {self.short_window}, {self.long_window}")
        if (
            not (math.isfinite(self.residual_mean) and math.isfinite(self.residual_std))
            or min(self.residual_mean, self.residual_std) < 0
        ):
            problems.append(f"residual mean {self.residual_mean} and std {self.residual_std} must be finite, >= 0")
        if self.residual_count < 0 or self.rearm_after < 0 or self.min_gap < 0:
            problems.append("residual_count, rearm_after and min_gap must be >= 0")
        if (self.value_low is None) != (self.value_high is None) or (
            self.value_low is not None
            and not (
                math.isfinite(self.value_low) and math.isfinite(self.value_high) and self.value_low <= self.value_high
            )
        ):
            problems.append(f"value range [{self.value_low}, {self.value_high}] must be two finite values, low <= high")
        if self.range_tolerance is not None and not (math.isfinite(self.range_tolerance) and self.range_tolerance >= 0):
            problems.append(f"range_tolerance {self.range_tolerance} must be None or a finite value >= 0")
        if not 0 <= self.rearm_below <= self.threshold <= 1 or self.threshold <= 0:
            problems.append(
                f"need 0 <= rearm_below <= threshold <= 1, threshold > 0 (got {self.rearm_below}, {self.threshold})"
            )
        if problems:
            raise InputError("anomaly parameters: " + "; ".join(problems))

    @classmethod
    def measure(cls, residuals: Iterable[float], training_values: Iterable[float], **policy: Any) -> AnomalyParams:
        """Measure the prior at export: validation residuals (actual - forecast), the target's training values.

        `policy` sets any other field (windows, tolerance, alarm policy); the residual statistics depend on
        `short_window`, so it must be given here if it is not the default. Fewer residuals than one short
        window give no prior (`residual_count` 0).
        """
        base = cls(**policy)
        short = base.short_window
        magnitudes = [_magnitude(r) for r in residuals]
        values = [float(v) for v in training_values]
        if not all(map(math.isfinite, values)):
            raise InputError("training values for the anomaly range must be finite numbers")
        measured: dict[str, Any] = {}
        if len(magnitudes) >= short:
            means = [math.fsum(magnitudes[end - short : end]) / short for end in range(short, len(magnitudes) + 1)]
            mean = math.fsum(means) / len(means)
            std = math.sqrt(math.fsum((m - mean) ** 2 for m in means) / len(means))
            measured.update(residual_mean=mean, residual_std=std, residual_count=len(magnitudes))
        if values:
            measured.update(value_low=min(values), value_high=max(values))
        return replace(base, **measured)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AnomalyParams:
        """Fields missing from `doc` take their defaults; unknown fields and wrong types are refused."""
        kinds = {f.name: f.type for f in fields(cls)}  # annotations as text: "int", "float", "float | None"
        values: dict[str, Any] = {}
        for name, value in doc.items():
            if name not in kinds:
                raise InputError(f"anomaly parameters: unknown field {name!r}")
            try:
                if value is None and "None" in kinds[name]:
                    values[name] = None
                elif kinds[name] == "int":
                    if isinstance(value, bool) or not float(value).is_integer():
                        raise ValueError
                    values[name] = int(value)
                else:
                    values[name] = float(value)
            except (TypeError, ValueError):
                raise InputError(f"anomaly parameters: {name} = {value!r} is not a valid value") from None
        return cls(**values)


class AnomalyLikelihood:
    """Score in [0, 1] of each residual: log(tail probability of the recent mean |residual|) / log(1e-10).

    The mean |residual| over the last `short_window` samples is compared with a Gaussian whose mean and
    variance are running estimates of that short-window mean (exponentially weighted with rate
    1/`long_window`, so memory is `short_window` floats whatever the history; until then the rate is 1/n, an
    exact running mean that starts from the prior as `residual_count` samples). Only large residuals count:
    a tail probability of 0.5 (a typical sample) scores 0.03, 1e-5 scores 0.5, 1e-10 and below score 1.
    Without a prior, the first `short_window` samples score 0: there is no history to call them unusual.
    """

    def __init__(self, params: AnomalyParams) -> None:
        self.params = params
        self._window = [0.0] * params.short_window
        self._filled = 0
        self._next = 0
        self.mean = params.residual_mean
        self.var = params.residual_std**2
        self.weight = min(params.residual_count, params.long_window)  # samples behind mean and var

    def update(self, residual: float) -> float:
        """Score one residual (actual - forecast), then learn it."""
        window = self._window
        window[self._next] = _magnitude(residual)
        self._next = (self._next + 1) % len(window)
        if self._filled < len(window):
            self._filled += 1
        recent = window_sum(window) / self._filled
        score = self._score(recent, self._filled)
        if self.weight < self.params.long_window:
            self.weight += 1
        rate = 1.0 / self.weight
        delta = recent - self.mean
        self.mean += rate * delta
        self.var = (1.0 - rate) * (self.var + rate * delta * delta)
        return score

    def score_one(self, residual: float) -> float:
        """The score this residual would get now; the state does not change."""
        window, slot = self._window, self._next
        kept = window[slot]
        window[slot] = _magnitude(residual)
        filled = min(self._filled + 1, len(window))
        score = self._score(window_sum(window) / filled, filled)
        window[slot] = kept
        return score

    def _score(self, recent: float, filled: int) -> float:
        return likelihood_score(recent, filled, len(self._window), self.mean, self.var, self.weight)


def window_sum(window: list[float]) -> float:
    """The short window's total, added in slot order. Re-summed every time (a handful of floats): a running sum
    would keep the rounding error of a spike. A plain loop, not `sum()`, whose rounding changed in Python 3.12:
    `AnomalyBank` adds the same way with numpy, and both must agree to the last bit."""
    total = window[0]
    for magnitude in window[1:]:
        total += magnitude
    return total


def likelihood_score(recent: float, filled: float, size: float, mean: float, var: float, weight: float) -> float:
    """Score of a short-window mean |residual| of `filled` samples against the history so far (`mean`, `var` of
    that mean over `weight` samples); `size` is the short window."""
    if weight < size:  # too little history to say what is unusual
        return 0.0
    spread = max(math.sqrt(var), RELATIVE_SPREAD_FLOOR * mean, ABSOLUTE_SPREAD_FLOOR)
    if filled < size:  # a mean of fewer samples varies more
        spread *= math.sqrt(size / filled)
    tail = 0.5 * math.erfc((recent - mean) / (spread * SQRT2))
    return min(1.0, max(0.0, math.log(tail + LOG_FLOOR) / LOG_OF_FLOOR))


class ValueRange:
    """Flags a value beyond the range seen so far by more than `range_tolerance` of its width (NAB's rule).

    The range starts from the training range in the params (or from the first values), and widens to every
    value seen. A new all-time extreme is often the first sign of a failure that forecasts follow too quickly.
    """

    def __init__(self, params: AnomalyParams) -> None:
        self.tolerance = params.range_tolerance
        self.low = params.value_low
        self.high = params.value_high

    def update(self, value: float) -> bool:
        """True if the value is out of range; then learn it."""
        value = float(value)
        if not math.isfinite(value):
            raise InputError(f"value {value!r} is not a finite number")
        if self.low is None or self.high is None:
            self.low = self.high = value
            return False
        margin = (self.high - self.low) * (self.tolerance or 0.0)
        outside = (
            self.tolerance is not None
            and self.high > self.low
            and not (self.low - margin <= value <= self.high + margin)
        )
        self.low, self.high = min(self.low, value), max(self.high, value)
        return outside


class AlarmGate:
    """One alarm per incident: fires when the score reaches `threshold` while armed, then disarms.

    It re-arms once the score has stayed below `rearm_below` for `rearm_after` samples in a row (hysteresis),
    and never fires within `min_gap` samples of the previous alarm. `rearm_after=0, min_gap=0` gives an alarm
    on every sample at or above the threshold.
    """

    def __init__(self, params: AnomalyParams) -> None:
        self.threshold = params.threshold
        self.rearm_below = params.rearm_below
        self.rearm_after = params.rearm_after
        self.min_gap = params.min_gap
        self.armed = True
        self.quiet = 0  # samples in a row below rearm_below since the last alarm
        self.since_alarm = math.inf  # samples since the last alarm
        self.alarms = 0

    def update(self, score: float) -> bool:
        """True if this sample raises an alarm."""
        self.since_alarm += 1
        if not self.armed:
            self.quiet = self.quiet + 1 if score < self.rearm_below else 0
            self.armed = self.quiet >= self.rearm_after
        if self.armed and score >= self.threshold and self.since_alarm >= self.min_gap:
            self.armed = False
            self.quiet = 0
            self.since_alarm = 0
            self.alarms += 1
            return True
        return False


class Verdict(NamedTuple):
    score: float  # in [0, 1]; 1 when the value is out of range
    alarm: bool  # a new alarm: at most one per incident
    out_of_range: bool


class StreamAnomaly:
    """One target of one stream: each forecast's residual and the observed value -> score and alarm.

    `residual` is the observed value minus the one-step forecast made for it at the previous sample.
    """

    def __init__(self, params: AnomalyParams) -> None:
        self.params = params
        self.likelihood = AnomalyLikelihood(params)
        self.range = ValueRange(params)
        self.gate = AlarmGate(params)

    def update(self, residual: float, value: float) -> Verdict:
        if not math.isfinite(float(value)):  # checked first: a refused sample changes no state
            raise InputError(f"value {value!r} is not a finite number")
        score = self.likelihood.update(residual)
        out_of_range = self.range.update(value)
        if out_of_range:
            score = 1.0
        return Verdict(score, self.gate.update(score), out_of_range)


def _magnitude(residual: float) -> float:
    magnitude = abs(float(residual))
    if magnitude <= MAX_MAGNITUDE:
        return magnitude
    if math.isinf(magnitude) or math.isnan(magnitude):
        raise InputError(f"residual {residual!r} is not a finite number")
    return MAX_MAGNITUDE


class AnomalyBank:
    """The `StreamAnomaly` state of many scorers (one per stream and target; `add` returns a row) held as arrays,
    so that a batch of samples from distinct streams is scored in a few numpy calls rather than a Python loop per
    sample: at a thousand streams the loop was a fifth of the runtime's time.

    `update` (a batch, numpy) and `update_one` (one sample, Python floats through memoryviews: a numpy call on
    one element costs more than the arithmetic) compute exactly what `StreamAnomaly.update` computes, in the same
    order, so that all three agree to the last bit whatever way a stream's samples were batched
    (tests/test_anomaly.py). The transcendental functions are `math`'s in every path.
    """

    _FIELDS = (
        # parameters
        "size", "long", "tolerance", "threshold", "rearm_below", "rearm_after", "min_gap",
        # state: likelihood, value range (NaN: not known yet), gate
        "filled", "mean", "var", "weight", "low", "high", "quiet", "since",
    )  # fmt: skip

    def __init__(self) -> None:
        self.rows = 0
        self._capacity = 0
        self._width = 1  # ring slots per row: the largest short window so far
        self._arrays: dict[str, np.ndarray] = {name: np.zeros(0) for name in self._FIELDS}
        self._next = np.zeros(0, dtype=np.int64)  # the ring slot the next magnitude goes to
        self._armed = np.zeros(0, dtype=bool)
        self._ring = np.zeros((0, 1))
        self._views()

    def _views(self) -> None:
        """Memoryviews for `update_one`: indexing one gives a Python float, several times faster than numpy's."""
        for name, values in self._arrays.items():
            setattr(self, name, memoryview(values))
        self.next, self.armed = memoryview(self._next), memoryview(self._armed)
        self.ring = memoryview(self._ring.reshape(-1))

    def add(self, params: AnomalyParams) -> int:
        """A new scorer starting from `params`; returns its row."""
        row = self.rows
        if row == self._capacity or params.short_window > self._width:
            self._resize(max(16, 2 * self._capacity) if row == self._capacity else self._capacity,
                         max(self._width, params.short_window))  # fmt: skip
        a = self._arrays
        start = {
            "size": params.short_window,
            "long": params.long_window,
            "tolerance": math.nan if params.range_tolerance is None else params.range_tolerance,
            "threshold": params.threshold,
            "rearm_below": params.rearm_below,
            "rearm_after": params.rearm_after,
            "min_gap": params.min_gap,
            "filled": 0.0,
            "mean": params.residual_mean,
            "var": params.residual_std**2,
            "weight": min(params.residual_count, params.long_window),
            "low": math.nan if params.value_low is None else params.value_low,
            "high": math.nan if params.value_high is None else params.value_high,
            "quiet": 0.0,
            "since": math.inf,
        }
        for name, value in start.items():
            a[name][row] = value
        self._next[row] = 0
        self._armed[row] = True
        self._ring[row] = 0.0
        self.rows += 1
        return row

    def _resize(self, capacity: int, width: int) -> None:
        rows = self.rows
        for name, old in self._arrays.items():
            grown = np.zeros(capacity)
            grown[:rows] = old[:rows]
            self._arrays[name] = grown
        for name in ("_next", "_armed"):
            old = getattr(self, name)
            grown = np.zeros(capacity, dtype=old.dtype)
            grown[:rows] = old[:rows]
            setattr(self, name, grown)
        ring = np.zeros((capacity, width))
        ring[:rows, : self._width] = self._ring[:rows]
        self._ring, self._capacity, self._width = ring, capacity, width
        self._views()

    def update_one(self, row: int, residual: float, value: float) -> tuple[float, bool]:
        """Score and alarm of one residual (actual - forecast) and observed value, then learn them. A non-finite
        input raises InputError and changes nothing."""
        if not math.isfinite(value):
            raise InputError(f"value {value!r} is not a finite number")
        magnitude = _magnitude(residual)
        # likelihood
        size = self.size[row]
        base = row * self._width
        slot = self.next[row]
        ring = self.ring
        ring[base + slot] = magnitude
        self.next[row] = (slot + 1) % int(size)
        filled = self.filled[row]
        if filled < size:
            filled += 1.0
            self.filled[row] = filled
        total = ring[base]
        for k in range(base + 1, base + int(size)):
            total += ring[k]
        recent = total / filled
        mean, var, weight = self.mean[row], self.var[row], self.weight[row]
        score = likelihood_score(recent, filled, size, mean, var, weight)
        if weight < self.long[row]:
            weight += 1.0
            self.weight[row] = weight
        rate = 1.0 / weight
        delta = recent - mean
        self.mean[row] = mean + rate * delta
        self.var[row] = (1.0 - rate) * (var + rate * delta * delta)
        # value range
        low, high, tolerance = self.low[row], self.high[row], self.tolerance[row]
        if low != low:  # NaN: no range yet
            self.low[row] = self.high[row] = value
        else:
            if tolerance == tolerance and high > low:
                margin = (high - low) * tolerance
                if not low - margin <= value <= high + margin:
                    score = 1.0
            self.low[row], self.high[row] = min(low, value), max(high, value)
        # gate
        since = self.since[row] + 1.0
        armed = self.armed[row]
        if not armed:
            quiet = self.quiet[row] + 1.0 if score < self.rearm_below[row] else 0.0
            self.quiet[row] = quiet
            armed = quiet >= self.rearm_after[row]
        alarm = armed and score >= self.threshold[row] and since >= self.min_gap[row]
        if alarm:
            armed, since = False, 0.0
            self.quiet[row] = 0.0
        self.armed[row], self.since[row] = armed, since
        return score, alarm

    def update(self, rows: np.ndarray, residuals: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`update_one` for distinct `rows` at once: (n,) residuals and values, finite (the caller checks).
        Returns the scores (n,) and alarms (n,) bool."""
        a = self._arrays
        size = a["size"][rows]
        # likelihood: the magnitude goes into the ring, the window is summed slot by slot like `window_sum`
        slots = self._next[rows]
        self._ring[rows, slots] = np.minimum(np.abs(residuals), MAX_MAGNITUDE)
        self._next[rows] = (slots + 1) % size.astype(np.int64)
        filled = np.minimum(a["filled"][rows] + 1.0, size)
        a["filled"][rows] = filled
        window = self._ring[rows]
        total = window[:, 0].copy()
        for k in range(1, self._width):
            total += window[:, k]  # slots past a row's own short window hold 0.0, which adds nothing
        recent = total / filled
        mean, var, weight = a["mean"][rows], a["var"][rows], a["weight"][rows]
        spread = np.maximum(np.maximum(np.sqrt(var), RELATIVE_SPREAD_FLOOR * mean), ABSOLUTE_SPREAD_FLOOR)
        spread = np.where(filled < size, spread * np.sqrt(size / filled), spread)
        tails = [0.5 * math.erfc(z) for z in ((recent - mean) / (spread * SQRT2)).tolist()]
        scores = np.array([math.log(tail + LOG_FLOOR) / LOG_OF_FLOOR for tail in tails])
        scores = np.where(scores > 0.0, scores, 0.0)  # max(0.0, x) and min(1.0, x) exactly, signed zeros included
        scores = np.where(scores < 1.0, scores, 1.0)
        scores[weight < size] = 0.0
        weight = np.where(weight < a["long"][rows], weight + 1.0, weight)
        a["weight"][rows] = weight
        rate = 1.0 / weight
        delta = recent - mean
        a["mean"][rows] = mean + rate * delta
        a["var"][rows] = (1.0 - rate) * (var + rate * delta * delta)
        # value range
        low, high, tolerance = a["low"][rows], a["high"][rows], a["tolerance"][rows]
        margin = (high - low) * tolerance
        inside = (low - margin <= values) & (values <= high + margin)
        scores[(tolerance == tolerance) & (high > low) & ~inside] = 1.0  # NaN (no range, no tolerance) is False
        unknown = low != low
        a["low"][rows] = np.where(unknown, values, np.minimum(low, values))
        a["high"][rows] = np.where(unknown, values, np.maximum(high, values))
        # gate
        since = a["since"][rows] + 1.0
        armed = self._armed[rows]
        quiet = a["quiet"][rows]
        resting = ~armed
        quiet[resting] = np.where(scores[resting] < a["rearm_below"][rows][resting], quiet[resting] + 1.0, 0.0)
        armed[resting] = quiet[resting] >= a["rearm_after"][rows][resting]
        alarms = armed & (scores >= a["threshold"][rows]) & (since >= a["min_gap"][rows])
        armed[alarms] = False
        since[alarms] = 0.0
        quiet[alarms] = 0.0
        self._armed[rows], a["since"][rows], a["quiet"][rows] = armed, since, quiet
        return scores, alarms
