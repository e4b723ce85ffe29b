"""Drift: how far a stream's recent inputs and residuals have moved from what the model was trained on.

A forecaster is only as good as the resemblance between live data and its training split. At export,
`DriftReference.measure` records per input feature the training mean, standard deviation and a 10-bin quantile
histogram, and per target the mean and standard deviation of the validation residuals (actual - forecast, one
step ahead). On the device each stream follows the same statistics over a recent window and `snapshot` compares
them: a standardised mean shift, a variance ratio and a population stability index (PSI) per feature, the mean
shift and variance ratio of the residuals per target, and a `drifted` flag with the reasons once a measure passes
its `DriftLimits`. That is the signal to retrain.

The window is exponential (rate 1/`window`, an exact mean until `window` samples have been seen), so a stream
holds a few floats per column whatever the window, O(1) in time and memory per update. A `DriftBank` holds the
streams of one reference as rows of one array, to run thousands of them: `update` learns a batch (one sample per
stream) with numpy, `update_one` a single sample on Python floats, with bit-identical results. `DriftMonitor` is
a one-stream bank. docs/drift.md explains how to read the figures.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from itertools import pairwise
from typing import Any

import numpy as np

from edge_runtime.errors import InputError

BINS = 10  # quantile bins of the training histogram: the usual choice for a PSI
MAX_VALUE = 1e150  # training values beyond this are refused (their squares must stay finite)
MAX_Z = 1e100  # live values further than this many standard deviations away count as this far
SCALE_FLOOR = 1e-6  # relative to max(1, |mean|): the spread a constant training column is measured against
PSI_FLOOR = 1e-4  # a bin share below this counts as this in the PSI, so an empty bin costs a bounded amount
RESCALE_AT = 1e200  # the growing histogram weights are renormalised past this (once per ~460 windows)


@dataclass(frozen=True)
class DriftLimits:
    """Past which limits a measure counts as drift. Defaults follow common practice:

    - `mean_shift` 0.5: the recent mean is half a training standard deviation away (for residuals: half a
      validation residual standard deviation, i.e. the forecasts have picked up a bias).
    - `variance_low` 0.5 and `variance_high` 2.0: the recent variance is less than half or more than twice the
      training one (for residuals above 2: the forecasts have become markedly worse).
    - `psi` 0.2: the usual reading of a population stability index is that under about 0.1 the distribution has
      not moved in any way that matters, from 0.1 to about 0.25 it has moved a little and deserves a look, and
      beyond 0.25 it has moved a lot; 0.2 flags before the last band.

    `inf` (or 0 for `variance_low`) switches a check off.
    """

    mean_shift: float = 0.5
    variance_low: float = 0.5
    variance_high: float = 2.0
    psi: float = 0.2

    def __post_init__(self) -> None:
        if not (self.mean_shift > 0 and self.psi > 0 and 0 <= self.variance_low < 1 < self.variance_high):
            raise InputError(
                "drift limits: need mean_shift > 0, psi > 0 and 0 <= variance_low < 1 < variance_high "
                f"(got {self.mean_shift}, {self.psi}, {self.variance_low}, {self.variance_high})"
            )

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DriftLimits:
        """Fields missing from `doc` (a config table) take their defaults; unknown fields are refused."""
        known = {f.name for f in fields(cls)}
        values = {}
        for name, value in doc.items():
            if name not in known:
                raise InputError(f"drift limits: unknown field {name!r} (known: {', '.join(sorted(known))})")
            values[name] = _number(value, f"drift limits: {name}", allow_inf=True)
        return cls(**values)


DEFAULT_LIMITS = DriftLimits()


@dataclass(frozen=True)
class FeatureReference:
    """One input feature on the training split, in sensor units: moments and a quantile histogram.

    `edges` are the inner bin edges (ascending, ties merged, so a column with few distinct values has fewer
    bins); bin i holds values v with edges[i-1] <= v < edges[i]. `proportions` is the training share per bin.
    """

    name: str
    mean: float
    std: float
    count: int
    edges: tuple[float, ...]
    proportions: tuple[float, ...]


@dataclass(frozen=True)
class ResidualReference:
    """One target's validation residuals (actual - forecast, one step ahead); `count` 0: none were measured."""

    name: str
    mean: float
    std: float
    count: int


@dataclass(frozen=True)
class DriftReference:
    """The training statistics a bundle carries for drift monitoring (`drift` in the manifest).

    `features` are in the model's feature order and `residuals` in its target order: the order of the tuples
    `DriftMonitor.update` takes.
    """

    features: tuple[FeatureReference, ...]
    residuals: tuple[ResidualReference, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        for kind, columns in (("features", self.features), ("residuals", self.residuals)):
            names = [c.name for c in columns]
            if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
                problems.append(f"{kind}: names must be distinct non-empty strings, got {names}")
            for i, c in enumerate(columns):
                where = f"{kind}[{i}] ({c.name!r})"
                if not (_finite(c.mean) and _finite(c.std) and c.std >= 0 and abs(c.mean) <= MAX_VALUE):
                    problems.append(f"{where}: mean {c.mean} and std {c.std} must be finite, std >= 0")
                if c.count < 0:
                    problems.append(f"{where}: count {c.count} must be >= 0")
        for i, f in enumerate(self.features):
            where = f"features[{i}] ({f.name!r})"
            if f.count < 1:
                problems.append(f"{where}: count must be >= 1")
            if not all(map(_finite, f.edges)) or any(a >= b for a, b in pairwise(f.edges)):
                problems.append(f"{where}: edges must be finite and strictly ascending")
            if len(f.proportions) != len(f.edges) + 1:
                problems.append(f"{where}: {len(f.proportions)} proportions for {len(f.edges)} edges (need one more)")
            elif not all(_finite(p) and p >= 0 for p in f.proportions) or abs(math.fsum(f.proportions) - 1) > 1e-6:
                problems.append(f"{where}: proportions must be >= 0 and sum to 1")
        if problems:
            raise InputError("drift reference: " + "; ".join(problems))

    @cached_property
    def _standards(self) -> tuple[_Standard, _Standard]:
        """Derived once and shared by all the banks of this reference (a thousand streams, one bundle)."""
        return _Standard(self.features), _Standard(self.residuals)

    @cached_property
    def _layout(self) -> _Layout:
        return _Layout(self)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.residuals)

    @classmethod
    def measure(
        cls,
        train_features: np.ndarray,
        feature_names: Sequence[str],
        val_residuals: np.ndarray,
        target_names: Sequence[str],
        bins: int = BINS,
    ) -> DriftReference:
        """Measure at export. `train_features` (rows, F): the training split in sensor units (not scaled), as the
        device will see it. `val_residuals` (rows, T): actual - forecast on the validation split; non-finite
        entries (no actual value to compare with) are left out, and a target without any gets `count` 0."""
        features = np.asarray(train_features, dtype=np.float64)
        residuals = np.asarray(val_residuals, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(feature_names) or len(features) == 0:
            raise InputError(
                f"drift reference: train_features must be (rows >= 1, {len(feature_names)}), got {features.shape}"
            )
        if residuals.ndim != 2 or residuals.shape[1] != len(target_names):
            raise InputError(
                f"drift reference: val_residuals must be (rows, {len(target_names)}), got {residuals.shape}"
            )
        if bins < 2:
            raise InputError(f"drift reference: need at least 2 bins, got {bins}")
        feature_refs = []
        for j, name in enumerate(feature_names):
            column = features[:, j]
            if not np.all(np.isfinite(column)) or np.max(np.abs(column)) > MAX_VALUE:
                raise InputError(f"drift reference: training column {name!r} has non-finite values or beyond ±1e150")
            edges = np.unique(np.quantile(column, np.arange(1, bins) / bins))
            shares = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1) / len(column)
            feature_refs.append(
                FeatureReference(
                    str(name),
                    float(np.mean(column)),
                    float(np.std(column)),
                    len(column),
                    tuple(float(e) for e in edges),
                    tuple(float(s) for s in shares),
                )
            )
        residual_refs = []
        for j, name in enumerate(target_names):
            column = residuals[:, j][np.isfinite(residuals[:, j])]
            column = column[np.abs(column) <= MAX_VALUE]
            if len(column) == 0:
                residual_refs.append(ResidualReference(str(name), 0.0, 0.0, 0))
            else:
                residual_refs.append(
                    ResidualReference(str(name), float(np.mean(column)), float(np.std(column)), len(column))
                )
        return cls(tuple(feature_refs), tuple(residual_refs))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": [
                {**asdict(f), "edges": list(f.edges), "proportions": list(f.proportions)} for f in self.features
            ],
            "residuals": [asdict(r) for r in self.residuals],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DriftReference:
        """Every field is required; unknown fields and wrong types are refused in one line."""
        if not isinstance(doc, dict) or set(doc) - {"features", "residuals"} or "features" not in doc:
            raise InputError("drift reference: need an object with 'features' and optionally 'residuals'")
        features = tuple(
            FeatureReference(
                *_columns_fields(item, f"features[{i}]", ("edges", "proportions")),
                edges=_numbers(item["edges"], f"features[{i}].edges"),
                proportions=_numbers(item["proportions"], f"features[{i}].proportions"),
            )
            for i, item in enumerate(_list(doc["features"], "features"))
        )
        residuals = tuple(
            ResidualReference(*_columns_fields(item, f"residuals[{i}]", ()))
            for i, item in enumerate(_list(doc.get("residuals", []), "residuals"))
        )
        return cls(features, residuals)


class _Standard:
    """How one group of columns (the features, or the residuals) is standardised: constant, shared by every
    bank of a reference.

    Each value becomes z = (value - ref mean) / s with s = sqrt(ref std² + floor²), the floor keeping a constant
    training column measurable. Then the mean shift is the recent mean of z, and the variance ratio is the recent
    variance of z plus floor² / s² (0 for any real spread, 1 for a constant column): the ratio of the recent
    variance to the training one, computed so that neither can divide by zero.
    """

    __slots__ = ("names", "centre", "scale", "offset", "centres", "scales")

    def __init__(self, columns: Sequence[FeatureReference | ResidualReference]) -> None:
        self.names = tuple(c.name for c in columns)
        self.centre = tuple(c.mean for c in columns)
        floors = [SCALE_FLOOR * max(1.0, abs(c.mean)) for c in columns]
        self.scale = tuple(math.sqrt(c.std**2 + f**2) for c, f in zip(columns, floors, strict=True))
        self.offset = tuple((f / s) ** 2 for f, s in zip(floors, self.scale, strict=True))
        self.centres, self.scales = np.array(self.centre, float), np.array(self.scale, float)  # for the vector path

    def check(self, values: Sequence[float], what: str) -> None:
        """Refuse a wrong count, a non-number or a non-finite value (before any state changes)."""
        if len(values) != len(self.centre):
            raise InputError(f"drift: expected {len(self.centre)} {what}s, got {len(values)}")
        try:
            total = sum(values, 0.0)  # one C call: finite unless some value is not (or the sum overflowed)
        except TypeError:
            raise InputError(f"drift: {what}s {tuple(values)!r} are not all numbers") from None
        if total - total != 0.0:
            for name, value in zip(self.names, values, strict=True):
                if not math.isfinite(value):
                    raise InputError(f"drift: {what} {value!r} for {name!r} is not a finite number")


class _Layout:
    """Where a stream's state lies in its row of a bank, one float64 row per stream so that the scalar path reads
    it through one memoryview of the row and the vector path gathers and scatters whole rows at once:

    samples, residual samples, histogram weight so far (`total`), then per feature the recent mean of z and its
    variance, the same two per target, then per feature `bins` histogram counts (the largest bin count of any
    feature; a feature with fewer bins leaves the rest 0). Counters are floats: exact up to 2^53 samples.
    """

    __slots__ = ("width", "bins", "means", "variances", "counts", "histograms", "features", "targets", "edges")

    SAMPLES, RESIDUAL_SAMPLES, TOTAL = 0, 1, 2

    def __init__(self, reference: DriftReference) -> None:
        inputs, residuals = reference._standards
        f, t = len(reference.features), len(reference.residuals)
        self.bins = max((len(c.proportions) for c in reference.features), default=0)
        self.means = (slice(3, 3 + 2 * f, 2), slice(3 + 2 * f, 3 + 2 * f + 2 * t, 2))  # features, targets
        self.variances = (slice(4, 4 + 2 * f, 2), slice(4 + 2 * f, 4 + 2 * f + 2 * t, 2))
        self.counts = 3 + 2 * f + 2 * t
        self.width = self.counts + f * self.bins
        # the scalar path's loops: per feature its index, edges and first bin; per feature and per target its
        # index, where its mean and variance lie, its centre and scale
        self.histograms = tuple((i, c.edges, self.counts + i * self.bins) for i, c in enumerate(reference.features))
        self.features = tuple((i, 3 + 2 * i, 4 + 2 * i, inputs.centre[i], inputs.scale[i]) for i in range(f))
        self.targets = tuple(
            (i, 3 + 2 * f + 2 * i, 4 + 2 * f + 2 * i, residuals.centre[i], residuals.scale[i]) for i in range(t)
        )
        # the vector path's: per feature its edges and first bin (searchsorted "right" is bisect_right)
        self.edges = tuple(
            (np.array(c.edges, float), self.counts + i * self.bins) for i, c in enumerate(reference.features)
        )


class DriftBank:
    """The drift state of many streams (rows) of one reference as arrays, so that the engine can learn a batch
    (one sample each for many streams) in a few numpy operations instead of a Python loop per stream.

    Two paths share the state: `update` (numpy, a batch of distinct rows, values already checked) and `update_one`
    (Python floats, a single sample, checked: a live stream's usual case, where numpy's per-call cost would
    dominate). Both do the same IEEE operations in the same order, so a row's state is bit for bit the same
    whichever path fed it. The scalar path reads and writes the array through a memoryview, which yields Python
    floats several times faster than numpy's scalar indexing.
    """

    __slots__ = ("reference", "window", "limits", "rows", "_inputs", "_residuals", "_layout", "_state", "_views")

    def __init__(self, reference: DriftReference, window: int = 1000, limits: DriftLimits | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise InputError(f"drift window must be an integer >= 2, got {window!r}")
        self.reference = reference
        self.window = window
        self.limits = limits or DEFAULT_LIMITS
        self.rows = 0
        self._inputs, self._residuals = reference._standards
        self._layout = reference._layout
        self._state = np.zeros((0, self._layout.width))
        self._views: list[memoryview] = []

    def add(self) -> int:
        """A new row with fresh state; storage doubles when full, so adding n rows costs O(n) copies in all."""
        if self.rows == len(self._state):
            width = self._layout.width
            state = np.zeros((max(1, 2 * self.rows), width))
            state[: self.rows] = self._state[: self.rows]
            self._state = state
            # a view per row, for the scalar path: its indices are small ints, which Python does not allocate,
            # and a list lookup costs a sixth of slicing a view per update (the old views would write into
            # storage no longer used)
            flat = memoryview(state.reshape(-1))
            self._views = [flat[i * width : i * width + width] for i in range(len(state))]
        self.rows += 1
        return self.rows - 1

    def update(
        self,
        rows: np.ndarray,
        values: np.ndarray,
        residuals: np.ndarray | None = None,
        known: np.ndarray | None = None,
    ) -> None:
        """Learn one sample for each of `rows`, which must be distinct (a repeated row would count once).
        `values` (n, F) must be finite: the caller checks them once for the batch. `residuals` (n, T) are learned
        for the rows where `known` (n,) is true, every row if `known` is None, and must be finite there."""
        layout, window = self._layout, self.window
        block = self._state[rows]  # a copy: worked on in place, then written back at once
        n = block[:, layout.SAMPLES] + 1.0
        block[:, layout.SAMPLES] = n
        total = block[:, layout.TOTAL]
        weight = np.where(n <= window, 1.0, total / (window - 1))
        total += weight
        flat, starts = block.reshape(-1), np.arange(len(block)) * layout.width
        for j, (edges, first) in enumerate(layout.edges):  # a column at a time: 5 times faster than broadcasting
            flat[starts + (first + np.searchsorted(edges, values[:, j], side="right"))] += weight
        big = total > RESCALE_AT
        if big.any():
            block[big, layout.counts :] /= total[big, None]
            total[big] = 1.0
        _learn(block, n, values, self._inputs, layout.means[0], layout.variances[0], window)
        if residuals is not None and layout.targets:
            if known is None or known.all():
                learning = block
            else:
                learning, residuals = block[known], residuals[known]
            m = learning[:, layout.RESIDUAL_SAMPLES] + 1.0
            learning[:, layout.RESIDUAL_SAMPLES] = m
            _learn(learning, m, residuals, self._residuals, layout.means[1], layout.variances[1], window)
            if learning is not block:
                block[known] = learning
        self._state[rows] = block

    def update_one(self, row: int, values: Sequence[float], residuals: Sequence[float] | None = None) -> None:
        """Learn one sample of `row` (a row `add` returned) and its residuals, if known. Bad input raises
        InputError and changes nothing. The same arithmetic as `update`, on Python floats."""
        layout = self._layout
        # anything odd goes to `check`, which names the problem (or passes a sum that merely overflowed)
        if not _plainly_fine(values, len(layout.features)):
            self._inputs.check(values, "value")
        if residuals is None or not layout.targets:
            residuals = None
        elif not _plainly_fine(residuals, len(layout.targets)):
            self._residuals.check(residuals, "residual")
        window = self.window
        state = self._views[row]  # 0, 1, 2: samples, residual samples, total (see _Layout)
        n = state[0] + 1.0
        state[0] = n
        total = state[2]
        weight = 1.0 if n <= window else total / (window - 1)
        total += weight
        for j, edges, first in layout.histograms:  # not zip: costlier than this
            state[first + bisect_right(edges, values[j])] += weight
        if total > RESCALE_AT:
            for b in range(layout.counts, layout.width):
                state[b] /= total
            total = 1.0
        state[2] = total
        _learn_one(state, values, 1.0 / (n if n < window else window), layout.features)
        if residuals is not None:
            m = state[1] + 1.0
            state[1] = m
            _learn_one(state, residuals, 1.0 / (m if m < window else window), layout.targets)

    def snapshot(self, row: int) -> dict[str, Any]:
        """The drift figures of `row` for a metrics message (4 significant digits), and whether any passes its
        limit. `reasons` lists each measure past its limit as a path into this dict, e.g. `features.temp.psi`."""
        limits, window, layout = self.limits, self.window, self._layout
        state = self._state[row]
        samples, residual_samples = int(state[layout.SAMPLES]), int(state[layout.RESIDUAL_SAMPLES])
        reasons: list[str] = []
        features: dict[str, Any] = {}
        means, variances = state[layout.means[0]].tolist(), state[layout.variances[0]].tolist()
        counts = state[layout.counts :].reshape(len(layout.features), layout.bins).tolist()
        total = float(state[layout.TOTAL])
        for i, ref in enumerate(self.reference.features):
            if samples < window:
                features[ref.name] = {"mean_shift": None, "variance_ratio": None, "psi": None}
                continue
            ratio = variances[i] + self._inputs.offset[i]
            features[ref.name] = _judge(f"features.{ref.name}", means[i], ratio, limits, reasons)
            psi = _psi(counts[i], total, ref.proportions)
            features[ref.name]["psi"] = _round(psi)
            if psi > limits.psi:
                reasons.append(f"features.{ref.name}.psi")
        residuals: dict[str, Any] = {}
        means, variances = state[layout.means[1]].tolist(), state[layout.variances[1]].tolist()
        for i, ref in enumerate(self.reference.residuals):
            if ref.count == 0 or residual_samples < window:
                residuals[ref.name] = {"mean_shift": None, "variance_ratio": None}
                continue
            ratio = variances[i] + self._residuals.offset[i]
            residuals[ref.name] = _judge(f"residuals.{ref.name}", means[i], ratio, limits, reasons)
        return {
            "samples": samples,
            "residual_samples": residual_samples,
            "features": features,
            "residuals": residuals,
            "drifted": bool(reasons),
            "reasons": reasons,
        }


def _learn_one(
    state: memoryview, values: Sequence[float], rate: float, columns: tuple[tuple[int, int, int, float, float], ...]
) -> None:
    """`_learn` for one row on Python floats: `columns` from `_Layout.features` or `_Layout.targets`."""
    keep = 1.0 - rate
    for j, mean_at, var_at, centre, scale in columns:
        z = (values[j] - centre) / scale
        if not -MAX_Z <= z <= MAX_Z:
            z = math.copysign(MAX_Z, z)
        mean = state[mean_at]
        delta = z - mean
        state[mean_at] = mean + rate * delta
        state[var_at] = keep * (state[var_at] + rate * delta * delta)


def _learn(
    block: np.ndarray,
    n: np.ndarray,
    values: np.ndarray,
    standard: _Standard,
    means: slice,
    variances: slice,
    window: int,
) -> None:
    """Move the recent mean and variance of z in `block` (rows after their n-th sample) towards these values."""
    rate = (1.0 / np.minimum(n, window))[:, None]
    z = (values - standard.centres) / standard.scales
    np.clip(z, -MAX_Z, MAX_Z, out=z)
    delta = z - block[:, means]
    block[:, means] += rate * delta
    block[:, variances] = (1.0 - rate) * (block[:, variances] + rate * delta * delta)


class DriftMonitor:
    """One stream's drift from its bundle's `DriftReference`, over an exponential window of `window` samples: a
    one-row `DriftBank` (the engine keeps all its streams in one bank instead).

    `update` takes the sample's feature values (the model's feature order) and, when the forecast made for this
    sample is known, the residuals (target order). Measures are `None` until `window` samples (residuals:
    `window` residuals) have been seen, and nothing is flagged before that; a target whose reference has no
    residuals (`count` 0) never gets residual measures, and a reference without targets ignores residuals.
    """

    __slots__ = ("_bank",)

    def __init__(self, reference: DriftReference, window: int = 1000, limits: DriftLimits | None = None) -> None:
        self._bank = DriftBank(reference, window, limits)
        self._bank.add()

    @property
    def reference(self) -> DriftReference:
        return self._bank.reference

    @property
    def window(self) -> int:
        return self._bank.window

    @property
    def limits(self) -> DriftLimits:
        return self._bank.limits

    @property
    def samples(self) -> int:
        return int(self._bank._state[0, _Layout.SAMPLES])

    @property
    def residual_samples(self) -> int:
        return int(self._bank._state[0, _Layout.RESIDUAL_SAMPLES])

    def update(self, values: Sequence[float], residuals: Sequence[float] | None = None) -> None:
        """Learn one sample (and its residuals, if known). Bad input raises InputError and changes nothing."""
        self._bank.update_one(0, values, residuals)

    def snapshot(self) -> dict[str, Any]:
        """The drift figures for a metrics message; see `DriftBank.snapshot`."""
        return self._bank.snapshot(0)


def _psi(counts: Sequence[float], total: float, proportions: Sequence[float]) -> float:
    """Population stability index of a recent histogram (the bins past `proportions` are padding) against the
    training one."""
    psi = 0.0
    for count, share in zip(counts[: len(proportions)], proportions, strict=True):
        actual, expected = max(count / total, PSI_FLOOR), max(share, PSI_FLOOR)
        psi += (actual - expected) * math.log(actual / expected)
    return psi


def _plainly_fine(values: Sequence[float], count: int) -> bool:
    """`count` finite numbers, in the common case: one C-level sum (finite unless a value is not, or the sum
    overflowed). False sends the values to the check that names the problem."""
    try:
        return len(values) == count and (total := sum(values, 0.0)) - total == 0.0
    except TypeError:
        return False


def _judge(path: str, shift: float, ratio: float, limits: DriftLimits, reasons: list[str]) -> dict[str, Any]:
    if abs(shift) > limits.mean_shift:
        reasons.append(f"{path}.mean_shift")
    if not limits.variance_low <= ratio <= limits.variance_high:
        reasons.append(f"{path}.variance_ratio")
    return {"mean_shift": _round(shift), "variance_ratio": _round(ratio)}


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, where: str, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InputError(f"{where} = {value!r} is not a number")
    if not allow_inf and math.isinf(value):
        raise InputError(f"{where} = {value!r} is not a finite number")
    return float(value)


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    return tuple(_number(v, f"drift reference: {where}[{k}]") for k, v in enumerate(_list(value, where)))


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"drift reference: {where} must be a list, got {type(value).__name__}")
    return value


def _columns_fields(item: Any, where: str, extra: tuple[str, ...]) -> tuple[str, float, float, int]:
    """name, mean, std, count of one column object, which must have exactly these fields and `extra`."""
    expected = {"name", "mean", "std", "count", *extra}
    if not isinstance(item, dict) or set(item) != expected:
        got = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise InputError(f"drift reference: {where} must have the fields {sorted(expected)}, got {got}")
    if not isinstance(item["name"], str):
        raise InputError(f"drift reference: {where}.name = {item['name']!r} is not a string")
    count = item["count"]
    if isinstance(count, bool) or not isinstance(count, int | float) or not float(count).is_integer():
        raise InputError(f"drift reference: {where}.count = {count!r} is not an integer")
    return (
        item["name"],
        _number(item["mean"], f"drift reference: {where}.mean"),
        _number(item["std"], f"drift reference: {where}.std"),
        int(count),
    )
