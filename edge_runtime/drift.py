"""Drift: how far a stream's recent inputs and residuals have moved from what the model was trained on.

A forecaster is only as good as the resemblance between live data and its training split. At export,
`DriftReference.measure` records per input feature the training mean, standard deviation and a 10-bin quantile
histogram, and per target the mean and standard deviation of the validation residuals (actual - forecast, one
step ahead). On the device one `DriftMonitor` per stream follows the same statistics over a recent window and
`snapshot` compares them: a standardised mean shift, a variance ratio and a population stability index (PSI) per
feature, the mean shift and variance ratio of the residuals per target, and a `drifted` flag with the reasons
once a measure passes its `DriftLimits`. That is the signal to retrain.

The window is exponential (rate 1/`window`, an exact mean until `window` samples have been seen), so a monitor
holds a few floats per column whatever the window: it runs for thousands of streams. Per update it is plain
Python on floats, O(1) in time and memory. docs/drift.md explains how to read the figures.
"""

from __future__ import annotations

import math
from array import array
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
        """Derived once and shared by all the monitors of this reference (a thousand streams, one bundle)."""
        return _Standard(self.features), _Standard(self.residuals)

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
    monitor of a reference.

    Each value becomes z = (value - ref mean) / s with s = sqrt(ref std² + floor²), the floor keeping a constant
    training column measurable. Then the mean shift is the recent mean of z, and the variance ratio is the recent
    variance of z plus floor² / s² (0 for any real spread, 1 for a constant column): the ratio of the recent
    variance to the training one, computed so that neither can divide by zero.
    """

    __slots__ = ("names", "centre", "scale", "offset")

    def __init__(self, columns: Sequence[FeatureReference | ResidualReference]) -> None:
        self.names = tuple(c.name for c in columns)
        self.centre = tuple(c.mean for c in columns)
        floors = [SCALE_FLOOR * max(1.0, abs(c.mean)) for c in columns]
        self.scale = tuple(math.sqrt(c.std**2 + f**2) for c, f in zip(columns, floors, strict=True))
        self.offset = tuple((f / s) ** 2 for f, s in zip(floors, self.scale, strict=True))

    def check(self, values: Sequence[float], what: str) -> None:
        """Refuse a wrong count, a non-number or a non-finite value (before any state changes)."""
        if len(values) != len(self.centre):
            raise InputError(f"drift: expected {len(self.centre)} {what}s, got {len(values)}")
        try:
            total = sum(values)  # one C call: finite unless some value is not (or the sum overflowed)
        except TypeError:
            raise InputError(f"drift: {what}s {tuple(values)!r} are not all numbers") from None
        if total - total != 0.0:
            for name, value in zip(self.names, values, strict=True):
                if not math.isfinite(value):
                    raise InputError(f"drift: {what} {value!r} for {name!r} is not a finite number")

    def learn(self, values: Sequence[float], rate: float, mean: list[float], var: list[float]) -> None:
        """Move the recent mean and variance of z towards these (checked) values by `rate`."""
        centre, scale, keep = self.centre, self.scale, 1.0 - rate
        i = 0
        for value in values:
            z = (value - centre[i]) / scale[i]
            if not -MAX_Z <= z <= MAX_Z:
                z = math.copysign(MAX_Z, z)
            delta = z - mean[i]
            mean[i] += rate * delta
            var[i] = keep * (var[i] + rate * delta * delta)
            i += 1


class DriftMonitor:
    """One stream's drift from its bundle's `DriftReference`, over an exponential window of `window` samples.

    `update` takes the sample's feature values (the model's feature order) and, when the forecast made for this
    sample is known, the residuals (target order). Measures are `None` until `window` samples (residuals:
    `window` residuals) have been seen, and nothing is flagged before that; a target whose reference has no
    residuals (`count` 0) never gets residual measures, and a reference without targets ignores residuals.
    """

    __slots__ = (
        "reference",
        "window",
        "limits",
        "samples",
        "residual_samples",
        "_inputs",
        "_residuals",
        "_input_mean",
        "_input_var",
        "_residual_mean",
        "_residual_var",
        "_counts",
        "_total",
    )

    def __init__(self, reference: DriftReference, window: int = 1000, limits: DriftLimits | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise InputError(f"drift window must be an integer >= 2, got {window!r}")
        self.reference = reference
        self.window = window
        self.limits = limits or DEFAULT_LIMITS
        self.samples = 0
        self.residual_samples = 0
        self._inputs, self._residuals = reference._standards
        features, targets = len(reference.features), len(reference.residuals)
        self._input_mean, self._input_var = [0.0] * features, [0.0] * features
        self._residual_mean, self._residual_var = [0.0] * targets, [0.0] * targets
        self._counts = [_zeros(len(f.proportions)) for f in reference.features]
        self._total = 0.0  # the histogram weight so far, shared by every feature's counts

    def update(self, values: Sequence[float], residuals: Sequence[float] | None = None) -> None:
        """Learn one sample (and its residuals, if known). Bad input raises InputError and changes nothing."""
        self._inputs.check(values, "value")
        if residuals is not None and self.reference.residuals:
            self._residuals.check(residuals, "residual")
        else:
            residuals = None
        window = self.window
        self.samples += 1
        n = self.samples
        # each new sample weighs 1/min(n, window) of the histogram: exact counts at first, then exponential decay
        weight = 1.0 if n <= window else self._total / (window - 1)
        self._total += weight
        features, counts, i = self.reference.features, self._counts, 0
        for value in values:
            counts[i][bisect_right(features[i].edges, value)] += weight
            i += 1
        if self._total > RESCALE_AT:
            self._rescale()
        self._inputs.learn(values, 1.0 / (n if n < window else window), self._input_mean, self._input_var)
        if residuals is not None:
            self.residual_samples += 1
            m = self.residual_samples
            rate = 1.0 / (m if m < window else window)
            self._residuals.learn(residuals, rate, self._residual_mean, self._residual_var)

    def _rescale(self) -> None:
        total = self._total
        for counts in self._counts:
            for b in range(len(counts)):
                counts[b] /= total
        self._total = 1.0

    def snapshot(self) -> dict[str, Any]:
        """The drift figures for a metrics message (4 significant digits), and whether any passes its limit.

        `reasons` lists each measure past its limit as a path into this dict, e.g. `features.temp.psi`.
        """
        limits = self.limits
        reasons: list[str] = []
        features: dict[str, Any] = {}
        for i, ref in enumerate(self.reference.features):
            if self.samples < self.window:
                features[ref.name] = {"mean_shift": None, "variance_ratio": None, "psi": None}
                continue
            ratio = self._input_var[i] + self._inputs.offset[i]
            features[ref.name] = _judge(f"features.{ref.name}", self._input_mean[i], ratio, limits, reasons)
            psi = self._psi(i)
            features[ref.name]["psi"] = _round(psi)
            if psi > limits.psi:
                reasons.append(f"features.{ref.name}.psi")
        residuals: dict[str, Any] = {}
        for i, ref in enumerate(self.reference.residuals):
            if ref.count == 0 or self.residual_samples < self.window:
                residuals[ref.name] = {"mean_shift": None, "variance_ratio": None}
                continue
            ratio = self._residual_var[i] + self._residuals.offset[i]
            residuals[ref.name] = _judge(f"residuals.{ref.name}", self._residual_mean[i], ratio, limits, reasons)
        return {
            "samples": self.samples,
            "residual_samples": self.residual_samples,
            "features": features,
            "residuals": residuals,
            "drifted": bool(reasons),
            "reasons": reasons,
        }

    def _psi(self, i: int) -> float:
        """Population stability index of the recent histogram against the training one."""
        total = self._total
        psi = 0.0
        for count, share in zip(self._counts[i], self.reference.features[i].proportions, strict=True):
            actual, expected = max(count / total, PSI_FLOOR), max(share, PSI_FLOOR)
            psi += (actual - expected) * math.log(actual / expected)
        return psi


def _judge(path: str, shift: float, ratio: float, limits: DriftLimits, reasons: list[str]) -> dict[str, Any]:
    if abs(shift) > limits.mean_shift:
        reasons.append(f"{path}.mean_shift")
    if not limits.variance_low <= ratio <= limits.variance_high:
        reasons.append(f"{path}.variance_ratio")
    return {"mean_shift": _round(shift), "variance_ratio": _round(ratio)}


def _zeros(size: int) -> array:
    return array("d", bytes(8 * size))  # 8 bytes a float, where a list of floats costs 32


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
