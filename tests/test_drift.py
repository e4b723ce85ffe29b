"""Drift: training statistics recorded at export, a streaming monitor per stream, flags past configured limits."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.drift import MAX_Z, PSI_FLOOR, RESCALE_AT, DriftBank, DriftLimits, DriftMonitor, DriftReference
from edge_runtime.errors import InputError

WINDOW = 1000


def normal_reference(seed: int = 0) -> DriftReference:
    """One feature `value` ~ N(20, 4²) on 5,000 training rows; its residuals ~ N(0, 0.5²) on 2,000 validation rows."""
    rng = np.random.default_rng(seed)
    return DriftReference.measure(rng.normal(20.0, 4.0, (5000, 1)), ["value"], rng.normal(0, 0.5, (2000, 1)), ["value"])


def feed(monitor: DriftMonitor, values: list[float], residuals: list[float] | None = None) -> None:
    for i, value in enumerate(values):
        monitor.update((value,), None if residuals is None else (residuals[i],))


def first_flag(monitor: DriftMonitor, values: list[float], reason: str) -> int | None:
    """Index of the first sample after which `reason` is in the snapshot's reasons."""
    for i, value in enumerate(values):
        monitor.update((value,))
        if reason in monitor.snapshot()["reasons"]:
            return i
    return None


def test_measure_records_moments_and_a_decile_histogram() -> None:
    rng = np.random.default_rng(1)
    train = np.column_stack([rng.normal(5.0, 2.0, 10_000), rng.integers(0, 3, 10_000)])
    residuals = rng.normal(0.1, 0.3, (500, 1))
    residuals[::5] = np.nan  # rows without an actual value to compare with are left out
    ref = DriftReference.measure(train, ["flow", "mode"], residuals, ["flow"])
    flow, mode = ref.features
    assert (flow.mean, flow.std, flow.count) == pytest.approx((5.0, 2.0, 10_000), rel=0.03)
    assert len(flow.edges) == 9 and flow.proportions == pytest.approx([0.1] * 10, abs=1e-3)
    assert flow.edges[4] == pytest.approx(5.0, abs=0.1)  # the median
    # three distinct values: the tied decile edges merge into 0, 1, 2, so each value has its own bin, and the
    # bin below the smallest is empty (a live value below everything seen in training moves the PSI a lot)
    assert mode.edges == (0.0, 1.0, 2.0)
    assert mode.proportions == pytest.approx([0.0] + [np.mean(train[:, 1] == k) for k in range(3)])
    assert ref.residuals[0].count == 400
    assert ref.residuals[0].mean == pytest.approx(0.1, abs=0.05)
    assert ref.feature_names == ("flow", "mode") and ref.target_names == ("flow",)


def test_json_round_trip_is_exact() -> None:
    ref = normal_reference()
    doc = json.loads(json.dumps(ref.to_json()))
    assert DriftReference.from_json(doc) == ref
    assert set(doc["features"][0]) == {"name", "mean", "std", "count", "edges", "proportions"}
    assert set(doc["residuals"][0]) == {"name", "mean", "std", "count"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["features"][0].update(std=-1.0), "std -1.0 must be finite, std >= 0"),
        (lambda d: d["features"][0].update(mean="hot"), "features[0].mean = 'hot' is not a number"),
        (lambda d: d["features"][0].pop("edges"), "features[0] must have the fields"),
        (lambda d: d["features"][0].update(colour=1), "features[0] must have the fields"),
        (lambda d: d["features"][0]["edges"].reverse(), "edges must be finite and strictly ascending"),
        (lambda d: d["features"][0]["proportions"].pop(), "9 proportions for 9 edges (need one more)"),
        (lambda d: d["features"][0]["proportions"].__setitem__(0, 0.5), "proportions must be >= 0 and sum to 1"),
        (lambda d: d["residuals"][0].update(count=2.5), "residuals[0].count = 2.5 is not an integer"),
        (lambda d: d["residuals"].append(dict(d["residuals"][0])), "names must be distinct"),
        (lambda d: d.update(features={}), "features must be a list, got dict"),
        (lambda d: d.update(extra=1), "need an object with 'features'"),
    ],
)
def test_bad_reference_fields_are_refused_in_one_line(change, message: str) -> None:
    doc = json.loads(json.dumps(normal_reference().to_json()))
    change(doc)
    with pytest.raises(InputError) as error:
        DriftReference.from_json(doc)
    assert message in str(error.value)
    assert "\n" not in str(error.value) and str(error.value).startswith("drift reference: ")


def test_measure_refuses_shapes_and_non_finite_training_values() -> None:
    with pytest.raises(InputError, match=r"train_features must be \(rows >= 1, 2\), got \(10, 1\)"):
        DriftReference.measure(np.zeros((10, 1)), ["a", "b"], np.zeros((0, 1)), ["a"])
    with pytest.raises(InputError, match=r"val_residuals must be \(rows, 1\), got \(5, 2\)"):
        DriftReference.measure(np.zeros((10, 1)), ["a"], np.zeros((5, 2)), ["a"])
    with pytest.raises(InputError, match="training column 'a' has non-finite values"):
        DriftReference.measure(np.array([[1.0], [np.nan]]), ["a"], np.zeros((0, 1)), ["a"])


def test_limits_from_a_config_table() -> None:
    assert DriftLimits.from_json({"psi": 0.25, "variance_high": math.inf}) == DriftLimits(
        psi=0.25, variance_high=math.inf
    )
    with pytest.raises(InputError, match="unknown field 'shift'"):
        DriftLimits.from_json({"shift": 1})
    with pytest.raises(InputError, match="need mean_shift > 0"):
        DriftLimits.from_json({"variance_low": 1.5})
    with pytest.raises(InputError, match="drift window must be an integer >= 2"):
        DriftMonitor(normal_reference(), window=1)


def test_before_a_full_window_measures_are_none_and_nothing_flags() -> None:
    monitor = DriftMonitor(normal_reference(), window=100)
    feed(monitor, [100.0] * 99, [5.0] * 99)  # wildly off, but too few samples to judge
    snap = monitor.snapshot()
    assert snap["features"]["value"] == {"mean_shift": None, "variance_ratio": None, "psi": None}
    assert snap["residuals"]["value"] == {"mean_shift": None, "variance_ratio": None}
    assert (snap["drifted"], snap["reasons"], snap["samples"], snap["residual_samples"]) == (False, [], 99, 99)
    monitor.update((100.0,), (5.0,))
    assert monitor.snapshot()["reasons"] == [
        "features.value.mean_shift",
        "features.value.variance_ratio",
        "features.value.psi",
        "residuals.value.mean_shift",
        "residuals.value.variance_ratio",
    ]


def test_after_exactly_one_window_the_measures_are_the_exact_window_statistics() -> None:
    ref = normal_reference()
    feature = ref.features[0]
    rng = random.Random(2)
    values = [rng.gauss(22.0, 2.0) for _ in range(WINDOW)]
    monitor = DriftMonitor(ref, window=WINDOW)
    feed(monitor, values)
    snap = monitor.snapshot()["features"]["value"]
    assert snap["mean_shift"] == pytest.approx((np.mean(values) - feature.mean) / feature.std, rel=1e-3)
    assert snap["variance_ratio"] == pytest.approx(np.var(values) / feature.std**2, rel=1e-3)
    actual = np.bincount(np.searchsorted(feature.edges, values, side="right"), minlength=10) / WINDOW
    actual, expected = np.maximum(actual, PSI_FLOOR), np.maximum(feature.proportions, PSI_FLOOR)
    assert snap["psi"] == pytest.approx(np.sum((actual - expected) * np.log(actual / expected)), rel=1e-3)


def test_a_stream_from_the_training_distribution_is_never_flagged() -> None:
    ref = normal_reference()
    monitor = DriftMonitor(ref, window=WINDOW)
    rng = random.Random(3)
    flagged, psis = 0, []
    for _ in range(60):  # 60 windows, judged at the end of each
        feed(monitor, [rng.gauss(20.0, 4.0) for _ in range(WINDOW)], [rng.gauss(0.0, 0.5) for _ in range(WINDOW)])
        snap = monitor.snapshot()
        flagged += snap["drifted"]
        psis.append(snap["features"]["value"]["psi"])
    assert flagged == 0
    # sampling noise of a PSI over ~2 windows' worth of samples: about (bins - 1) / (2 * window)
    assert 0.001 < np.mean(psis) < 0.015 and max(psis) < 0.05


def test_a_level_shift_of_one_std_flags_mean_shift_within_the_window() -> None:
    monitor = DriftMonitor(normal_reference(), window=WINDOW)
    rng = random.Random(4)
    feed(monitor, [rng.gauss(20.0, 4.0) for _ in range(2 * WINDOW)])
    assert monitor.snapshot()["drifted"] is False
    first = first_flag(monitor, [rng.gauss(24.0, 4.0) for _ in range(WINDOW)], "features.value.mean_shift")
    # an exponential mean crosses half the step after ln(2) * window samples
    assert first is not None and 550 <= first <= 850
    assert "features.value.variance_ratio" not in monitor.snapshot()["reasons"]
    feed(monitor, [rng.gauss(24.0, 4.0) for _ in range(2 * WINDOW)])
    snap = monitor.snapshot()
    assert snap["features"]["value"]["mean_shift"] == pytest.approx(1.0, abs=0.1)
    assert snap["features"]["value"]["psi"] > 0.5  # the histogram sees it too: measured 0.81
    assert snap["reasons"] == ["features.value.mean_shift", "features.value.psi"]


def test_a_doubled_variance_flags_variance_ratio() -> None:
    """A doubled variance sits right at the default upper limit (2): measured ~2, it flags past a limit of 1.5."""
    rng = random.Random(5)
    values = [rng.gauss(20.0, 4.0 * math.sqrt(2.0)) for _ in range(3 * WINDOW)]
    monitor = DriftMonitor(normal_reference(), window=WINDOW, limits=DriftLimits(variance_high=1.5))
    feed(monitor, values)
    snap = monitor.snapshot()
    assert snap["features"]["value"]["variance_ratio"] == pytest.approx(2.0, rel=0.12)
    assert abs(snap["features"]["value"]["mean_shift"]) < 0.1
    assert "features.value.variance_ratio" in snap["reasons"]


@pytest.mark.parametrize(("variance_factor", "flagged"), [(0.25, True), (0.7, False), (1.4, False), (3.0, True)])
def test_variance_ratio_with_the_default_limits(variance_factor: float, flagged: bool) -> None:
    rng = random.Random(6)
    monitor = DriftMonitor(normal_reference(), window=WINDOW)
    feed(monitor, [rng.gauss(20.0, 4.0 * math.sqrt(variance_factor)) for _ in range(3 * WINDOW)])
    snap = monitor.snapshot()
    assert snap["features"]["value"]["variance_ratio"] == pytest.approx(variance_factor, rel=0.12)
    assert ("features.value.variance_ratio" in snap["reasons"]) is flagged


def test_a_shape_change_with_equal_mean_and_std_raises_only_psi() -> None:
    rng = random.Random(7)
    spread = 0.3 * 4.0  # two modes at 20 ± a with noise s, a² + s² = 4²: same mean and variance as training
    offset = math.sqrt(4.0**2 - spread**2)
    bimodal = [20.0 + rng.choice((-offset, offset)) + rng.gauss(0.0, spread) for _ in range(3 * WINDOW)]
    monitor = DriftMonitor(normal_reference(), window=WINDOW)
    feed(monitor, bimodal)
    snap = monitor.snapshot()
    measures = snap["features"]["value"]
    assert abs(measures["mean_shift"]) < 0.1 and 0.85 < measures["variance_ratio"] < 1.15
    assert measures["psi"] > 0.25  # measured 1.04
    assert snap["reasons"] == ["features.value.psi"]


def test_residual_bias_and_worse_forecasts_flag_the_residuals() -> None:
    rng = random.Random(8)
    values = [rng.gauss(20.0, 4.0) for _ in range(2 * WINDOW)]
    biased = DriftMonitor(normal_reference(), window=WINDOW)
    feed(biased, values, [rng.gauss(0.4, 0.5) for _ in values])  # a bias of 0.8 residual std
    assert biased.snapshot()["reasons"] == ["residuals.value.mean_shift"]
    assert biased.snapshot()["residuals"]["value"]["mean_shift"] == pytest.approx(0.8, abs=0.1)
    noisier = DriftMonitor(normal_reference(), window=WINDOW)
    feed(noisier, values, [rng.gauss(0.0, 1.0) for _ in values])  # residual variance x4
    assert noisier.snapshot()["reasons"] == ["residuals.value.variance_ratio"]
    assert noisier.snapshot()["residuals"]["value"]["variance_ratio"] == pytest.approx(4.0, rel=0.12)


def test_residuals_count_separately_and_a_target_without_validation_residuals_is_never_judged() -> None:
    rng = np.random.default_rng(9)
    ref = DriftReference.measure(rng.normal(0, 1, (100, 2)), ["a", "b"], np.full((50, 1), np.nan), ["a"])
    assert ref.residuals[0].count == 0
    monitor = DriftMonitor(ref, window=10)
    for i in range(30):
        monitor.update((0.0, 0.0), (50.0,) if i % 2 else None)
    snap = monitor.snapshot()
    assert (snap["samples"], snap["residual_samples"]) == (30, 15)
    assert snap["residuals"] == {"a": {"mean_shift": None, "variance_ratio": None}}
    assert not any(reason.startswith("residuals") for reason in snap["reasons"])


def test_a_constant_training_column_is_handled_without_dividing_by_zero() -> None:
    train = np.column_stack([np.full(500, 7.5), np.random.default_rng(10).normal(0, 1, 500)])
    ref = DriftReference.measure(train, ["setpoint", "temp"], np.zeros((0, 0)), [])
    assert ref.features[0].std == 0.0 and ref.features[0].edges == (7.5,)
    same = DriftMonitor(ref, window=50)
    feed_pairs = [(7.5, float(x)) for x in np.random.default_rng(11).normal(0, 1, 100)]
    for pair in feed_pairs:
        same.update(pair)
    assert same.snapshot()["features"]["setpoint"] == {"mean_shift": 0.0, "variance_ratio": 1.0, "psi": 0.0}
    assert same.snapshot()["drifted"] is False
    moved = DriftMonitor(ref, window=50)
    for _, temp in feed_pairs:
        moved.update((7.4, temp))
    measures = moved.snapshot()["features"]["setpoint"]
    assert all(math.isfinite(v) for v in measures.values())
    assert measures["mean_shift"] < -1000 and measures["variance_ratio"] == 1.0 and measures["psi"] > 5
    assert moved.snapshot()["reasons"] == ["features.setpoint.mean_shift", "features.setpoint.psi"]
    wobbling = DriftMonitor(ref, window=50)
    for k, (_, temp) in enumerate(feed_pairs):
        wobbling.update((7.5 + (0.1 if k % 2 else -0.1), temp))
    assert "features.setpoint.variance_ratio" in wobbling.snapshot()["reasons"]


def test_the_exponential_histogram_stays_exact_through_renormalisation() -> None:
    ref = normal_reference()
    feature = ref.features[0]
    monitor = DriftMonitor(ref, window=2)  # weights double every sample: renormalised every ~660 samples
    for k in range(5000):
        monitor.update((feature.edges[k % 2] + 0.01,))  # alternates between bins 1 and 2
    # weights 1/2, 1/4, ...: the last sample's bin (2) holds 2/3 of the histogram, the other 1/3
    actual = np.full(10, PSI_FLOOR)
    actual[1], actual[2] = 1 / 3, 2 / 3
    expected = np.maximum(feature.proportions, PSI_FLOOR)
    psi = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert monitor.snapshot()["features"]["value"]["psi"] == pytest.approx(psi, rel=1e-3)


def test_bad_samples_are_refused_and_change_nothing() -> None:
    monitor = DriftMonitor(normal_reference(), window=10)
    feed(monitor, [20.0 + k for k in range(10)], [0.1] * 10)
    before = monitor.snapshot()
    for values, residuals, message in [
        ((float("nan"),), (0.0,), "value nan for 'value' is not a finite number"),
        ((20.0,), (float("inf"),), "residual inf for 'value' is not a finite number"),
        ((20.0, 1.0), None, "expected 1 values, got 2"),
        (("20",), None, "are not all numbers"),
        ((20.0,), (), "expected 1 residuals, got 0"),
    ]:
        with pytest.raises(InputError, match=message):
            monitor.update(values, residuals)
    assert monitor.snapshot() == before
    monitor.update((1e308,), (-1e308,))  # finite: counted as very far away, never inf
    snap = monitor.snapshot()
    assert snap["samples"] == 11 and snap["drifted"] is True


def numbers(snapshot: dict) -> list[float]:
    found = []
    for section in ("features", "residuals"):
        for measures in snapshot[section].values():
            found += [v for v in measures.values() if v is not None]
    return found


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    train=st.lists(st.tuples(finite.filter(lambda x: abs(x) <= 1e150), st.just(3.0)), min_size=1, max_size=40),
    residuals=st.lists(finite.filter(lambda x: abs(x) <= 1e150), max_size=20),
    live=st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=30),
    window=st.integers(2, 8),
)
def test_snapshot_values_are_finite_for_any_finite_input(train, residuals, live, window) -> None:
    ref = DriftReference.measure(np.array(train), ["x", "constant"], np.array(residuals)[:, None], ["x"])
    monitor = DriftMonitor(ref, window=window)
    for x, constant, residual in live:
        monitor.update((x, constant), (residual,))
    snap = monitor.snapshot()
    values = numbers(snap)
    assert all(math.isfinite(v) for v in values)
    assert len(values) == (0 if len(live) < window else 8 if residuals else 6)
    assert all(measures["variance_ratio"] >= 0 for measures in snap["features"].values() if len(live) >= window)
    json.dumps(snap, allow_nan=False)  # a metrics message must be strict JSON


def mixed_reference() -> DriftReference:
    """Features with 10, 2 (a constant training column) and 4 bins; one target with residuals, one without."""
    rng = np.random.default_rng(12)
    train = np.column_stack([rng.normal(20.0, 4.0, 300), np.full(300, 7.5), rng.integers(0, 3, 300)])
    residuals = np.column_stack([rng.normal(0.0, 0.5, 100), np.full(100, np.nan)])
    return DriftReference.measure(train, ["temp", "setpoint", "mode"], residuals, ["temp", "mode"])


def random_stream(rng: np.random.Generator, length: int) -> list[tuple[list[float], list[float] | None]]:
    """Samples (values, residuals or None), a few of them far outside the training range."""
    samples = []
    for _ in range(length):
        values = [
            rng.normal(21.0, 5.0),
            7.5 if rng.random() < 0.7 else rng.normal(7.5, 0.1),
            float(rng.integers(-1, 5)),
        ]
        if rng.random() < 0.05:
            values[rng.integers(3)] = float(rng.choice([-1.0, 1.0]) * 10.0 ** rng.uniform(100, 300))
        residuals = [rng.normal(0.2, 0.6), rng.normal(0.0, 1.0)] if rng.random() < 0.7 else None
        samples.append((values, residuals))
    return samples


@pytest.mark.parametrize("window", [2, 7])
def test_batched_and_single_updates_give_bit_identical_state(window: int) -> None:
    """A bank fed one sample at a time (`update_one`), one fed batches of distinct rows in varying orders and
    subsets (`update`), and one mixing both hold exactly the same state and snapshots."""
    rng = np.random.default_rng(13)
    ref = mixed_reference()
    streams = [random_stream(rng, int(rng.integers(700, 900))) for _ in range(6)]  # window 2: rescaled every ~660
    streams[0].append(([1e300, 7.5, 1.0], None))  # z 2.5e299, clipped to MAX_Z
    single, batched, mixed = (DriftBank(ref, window=window) for _ in range(3))
    for bank in (single, batched, mixed):
        assert [bank.add() for _ in streams] == list(range(len(streams)))
    for row, stream in enumerate(streams):
        for values, residuals in stream:
            single.update_one(row, values, residuals)
    position = [0] * len(streams)
    while any(p < len(s) for p, s in zip(position, streams, strict=True)):
        waiting = [row for row, stream in enumerate(streams) if position[row] < len(stream)]
        rows = rng.permutation(waiting)[: rng.integers(1, len(waiting) + 1)]
        batch = [streams[row][position[row]] for row in rows]
        for row in rows:
            position[row] += 1
        values = np.array([v for v, _ in batch])
        known = np.array([r is not None for _, r in batch])
        residuals = np.array([r if r is not None else [np.nan, np.nan] for _, r in batch])
        if not known.any():
            residuals, known = None, None
        elif known.all() and rng.random() < 0.5:
            known = None  # every row's residuals are known
        batched.update(rows.astype(np.intp), values, residuals, known)
        if rng.random() < 0.5:
            mixed.update(rows.astype(np.intp), values, residuals, known)
        else:
            for row, (v, r) in zip(rows, batch, strict=True):
                mixed.update_one(int(row), v, r)
    state = single._state[: single.rows]
    for other in (batched, mixed):
        assert other._state[: other.rows].tobytes() == state.tobytes()  # every bit, the sign of zeros too
        assert [other.snapshot(row) for row in range(len(streams))] == [single.snapshot(row) for row in range(6)]
    # what the streams were meant to reach: the histogram renormalised, z clipped, both paths through the window
    assert state[:, 0].tolist() == [len(s) for s in streams]
    assert np.all(state[:, 2] <= RESCALE_AT)  # window 2: the weights double, 2^700 without renormalising
    assert MAX_Z / (window + 1) < state[0, 3] <= MAX_Z and np.all(np.isfinite(state))
    assert single.snapshot(0)["residuals"]["mode"] == {"mean_shift": None, "variance_ratio": None}
    assert single.snapshot(0)["features"]["setpoint"]["psi"] is not None


def test_a_row_added_after_storage_grew_starts_fresh() -> None:
    """Rows added while others have state get none of it, and every row is updated in the new storage after a
    growth: the bank ends as one sized once before any update (`twin`)."""
    ref = mixed_reference()
    rng = np.random.default_rng(14)
    bank, twin = DriftBank(ref, window=5), DriftBank(ref, window=5)
    assert [twin.add() for _ in range(5)] == list(range(5))
    for row in range(3):  # storage 1, 2, then 4 rows
        assert bank.add() == row
        for values, residuals in random_stream(rng, 20):
            bank.update_one(row, values, residuals)
            twin.update_one(row, values, residuals)
    before = bank._state[:3].copy()
    assert bank.add() == 3 and bank.add() == 4  # the second doubles storage to 8 rows
    assert len(bank._state) == 8 and bank._state[:3].tobytes() == before.tobytes()
    assert not bank._state[3:].any()
    fresh = DriftMonitor(ref, window=5)
    assert bank.snapshot(4) == fresh.snapshot()
    for values, residuals in random_stream(rng, 10):  # both paths, old rows and new, after the growth
        for target in (bank, twin):
            target.update_one(4, values, residuals)
            target.update_one(0, values, residuals)
            target.update(np.array([3, 1], np.intp), np.array([values, values]))
        fresh.update(values, residuals)
    assert bank.snapshot(4) == fresh.snapshot() and fresh.snapshot()["samples"] == 10
    assert bank.snapshot(3)["samples"] == 10 and bank.snapshot(3)["residual_samples"] == 0
    assert bank.snapshot(0)["samples"] == 30 and bank._state[2].tobytes() == before[2].tobytes()
    assert bank._state[:5].tobytes() == twin._state[:5].tobytes()
