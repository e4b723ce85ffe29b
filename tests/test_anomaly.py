"""The runtime's anomaly stage: residuals -> calibrated scores in [0, 1] -> one alarm per incident."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.anomaly import AlarmGate, AnomalyBank, AnomalyLikelihood, AnomalyParams, StreamAnomaly, ValueRange
from edge_runtime.errors import InputError

THRESHOLD = AnomalyParams().threshold


def gaussian(count: int, seed: int, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0.0, scale) for _ in range(count)]


def stream(params: AnomalyParams, residuals: list[float]) -> list:
    detector = StreamAnomaly(params)
    return [detector.update(r, 0.0) for r in residuals]


def test_a_residual_spike_scores_high_within_the_short_window_and_alarms_once() -> None:
    params = AnomalyParams.measure(gaussian(2000, seed=1), [])
    residuals = gaussian(3000, seed=2)
    for i in range(2000, 2030):  # a 30-sample incident: residuals of 6 sigma
        residuals[i] = 6.0 * (1 if i % 2 else -1)
    verdicts = stream(params, residuals)
    first_high = next(i for i, v in enumerate(verdicts) if v.score >= THRESHOLD)
    assert 2000 <= first_high < 2000 + params.short_window
    assert max(v.score for v in verdicts[2000:2030]) == pytest.approx(1.0)
    incident_alarms = [i for i, v in enumerate(verdicts[1990:2100], start=1990) if v.alarm]
    assert incident_alarms == [first_high]
    # the scores stay high through the incident: without the gate it would be one alarm per sample
    assert sum(v.score >= THRESHOLD for v in verdicts[2000:2040]) >= 25


def test_stationary_noise_rarely_alarms() -> None:
    params = AnomalyParams.measure(gaussian(2000, seed=3), [])
    verdicts = stream(params, gaussian(100_000, seed=4))
    # a score of 0.5 is a Gaussian tail of 1e-5; the mean of |noise| is a little skewed: measured 5 alarms
    assert sum(v.alarm for v in verdicts) <= 10
    assert sum(v.score for v in verdicts) / len(verdicts) < 0.06


def test_heavy_tailed_noise_alarms_far_less_often_than_it_crosses_the_threshold() -> None:
    rng = random.Random(5)
    laplace = [rng.expovariate(1.0) * rng.choice((-1.0, 1.0)) for _ in range(102_000)]
    params = AnomalyParams.measure(laplace[:2000], [])
    verdicts = stream(params, laplace[2000:])
    crossings = sum(v.score >= THRESHOLD for v in verdicts)
    alarms = sum(v.alarm for v in verdicts)
    assert crossings > 30  # measured 55
    assert alarms <= crossings / 2  # measured 18
    no_gate = stream(replace(params, rearm_after=0), laplace[2000:])
    assert sum(v.alarm for v in no_gate) == crossings


def test_scores_do_not_depend_on_the_residual_scale() -> None:
    prior, live = gaussian(1000, seed=6), gaussian(5000, seed=7)
    live[3000:3015] = [5.0] * 15
    unit = stream(AnomalyParams.measure(prior, []), live)
    kilo = stream(AnomalyParams.measure([r * 1000 for r in prior], []), [r * 1000 for r in live])
    assert [v.alarm for v in kilo] == [v.alarm for v in unit]
    assert max(abs(a.score - b.score) for a, b in zip(unit, kilo, strict=True)) < 1e-9
    assert sum(v.alarm for v in unit) >= 1


def test_without_a_prior_the_first_short_window_scores_zero_then_it_learns() -> None:
    params = AnomalyParams(short_window=10)
    likelihood = AnomalyLikelihood(params)
    scores = [likelihood.update(r) for r in gaussian(500, seed=8)]
    assert scores[:9] == [0.0] * 9
    assert 0.0 < sum(scores[10:]) / len(scores[10:]) < 0.1
    assert likelihood.update(50.0) > THRESHOLD


def test_with_a_prior_the_first_sample_is_already_judged() -> None:
    params = AnomalyParams.measure(gaussian(2000, seed=9), [])
    assert AnomalyLikelihood(params).update(0.5) < 0.1
    # one sample of 20 sigma in an otherwise empty short window: a mean of 1 sample may vary more, still extreme
    assert AnomalyLikelihood(params).update(20.0) == pytest.approx(1.0)


def test_constant_residuals_give_finite_scores_and_a_change_scores_one() -> None:
    for constant in (0.0, 5.0, -1e-300):
        likelihood = AnomalyLikelihood(AnomalyParams())
        scores = [likelihood.update(constant) for _ in range(100)]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert max(scores[10:]) < 0.1
        assert math.isfinite(likelihood.mean) and math.isfinite(likelihood.var)
        # the spread never falls below 5% of the mean: a jump of the mean magnitude to twice its level is extreme
        assert likelihood.update(abs(constant) * 11 + 10.0) == pytest.approx(1.0)


def test_score_one_peeks_without_learning() -> None:
    likelihood = AnomalyLikelihood(AnomalyParams.measure(gaussian(500, seed=10), []))
    for r in gaussian(50, seed=11):
        peek = likelihood.score_one(r)
        state = (likelihood.mean, likelihood.var, likelihood.weight, list(likelihood._window))
        assert likelihood.score_one(r) == peek
        assert (likelihood.mean, likelihood.var, likelihood.weight, list(likelihood._window)) == state
        assert likelihood.update(r) == peek


def test_a_non_finite_input_is_refused_and_changes_nothing() -> None:
    detector = StreamAnomaly(AnomalyParams.measure(gaussian(500, seed=12), [0.0, 1.0]))
    detector.update(0.1, 0.5)
    before = (detector.likelihood.mean, detector.likelihood.var, detector.range.low, detector.range.high)
    for residual, value in ((math.nan, 0.5), (math.inf, 0.5), (0.1, math.nan), (0.1, -math.inf)):
        with pytest.raises(InputError, match="not a finite number"):
            detector.update(residual, value)
    assert (detector.likelihood.mean, detector.likelihood.var, detector.range.low, detector.range.high) == before


def test_gate_hysteresis_needs_a_quiet_run_below_the_lower_threshold() -> None:
    gate = AlarmGate(AnomalyParams(threshold=0.5, rearm_below=0.3, rearm_after=3))
    scores = [0.6, 0.9, 0.4, 0.2, 0.2, 0.6, 0.1, 0.1, 0.1, 0.7, 0.7]
    # 0.4 is under the threshold but not under rearm_below: it breaks the quiet run, so 0.6 at index 5 is held
    assert [i for i, s in enumerate(scores) if gate.update(s)] == [0, 9]
    assert gate.alarms == 2


def test_gate_min_gap_and_no_deduplication() -> None:
    every = AlarmGate(AnomalyParams(rearm_after=0))
    assert [every.update(s) for s in (0.6, 0.6, 0.2, 0.6)] == [True, True, False, True]
    spaced = AlarmGate(AnomalyParams(rearm_after=0, min_gap=3))
    assert [i for i in range(10) if spaced.update(0.9)] == [0, 3, 6, 9]


def test_value_range_flags_values_beyond_five_percent_of_the_range() -> None:
    values = ValueRange(AnomalyParams(value_low=10.0, value_high=20.0))
    assert [values.update(v) for v in (20.4, 10.0, 9.4, 21.0, 21.4, 8.9)] == [False, False, True, True, False, False]
    assert (values.low, values.high) == (8.9, 21.4)
    assert not ValueRange(AnomalyParams(value_low=10.0, value_high=20.0, range_tolerance=None)).update(1e9)
    learnt = ValueRange(AnomalyParams())  # no training range: learnt from the stream
    assert [learnt.update(v) for v in (5.0, 5.0, 6.0, 9.0)] == [False, False, False, True]


def test_out_of_range_value_scores_one_and_alarms() -> None:
    detector = StreamAnomaly(AnomalyParams.measure(gaussian(500, seed=13), [0.0, 10.0]))
    quiet = detector.update(0.1, 10.4)
    assert quiet.score < 0.1 and not quiet.alarm and not quiet.out_of_range
    assert detector.update(0.1, 11.0) == (1.0, True, True)  # beyond 10.4 + 5% of [0, 10.4]


def test_params_round_trip_through_json_and_refuse_bad_fields() -> None:
    params = AnomalyParams.measure(gaussian(300, seed=14), [3.0, 7.5], threshold=0.6, min_gap=5)
    assert params.residual_count == 300 and (params.value_low, params.value_high) == (3.0, 7.5)
    assert AnomalyParams.from_json(json.loads(json.dumps(params.to_json()))) == params
    assert AnomalyParams.from_json({}) == AnomalyParams()
    for bad, message in (
        ({"threshhold": 0.5}, "unknown field 'threshhold'"),
        ({"short_window": 2.5}, "short_window = 2.5 is not a valid value"),
        ({"threshold": None}, "threshold = None"),
        ({"value_low": 1.0}, "value range"),
        ({"rearm_below": 0.7}, "rearm_below <= threshold"),
        ({"residual_std": -1.0}, "must be finite, >= 0"),
    ):
        with pytest.raises(InputError, match=message):
            AnomalyParams.from_json(bad)


def test_measure_describes_the_short_window_mean_of_residual_magnitudes() -> None:
    params = AnomalyParams.measure([1.0, -3.0] * 50, [], short_window=2)
    assert (params.residual_mean, params.residual_std, params.short_window) == (2.0, 0.0, 2)
    assert AnomalyParams.measure([1.0] * 5, []).residual_count == 0  # fewer than a short window: no prior


finite_residuals = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(residuals=finite_residuals, prior=st.one_of(st.none(), finite_residuals), short=st.integers(1, 12))
def test_scores_stay_in_unit_interval_for_any_finite_residuals(residuals, prior, short) -> None:
    params = AnomalyParams.measure(prior or [], [], short_window=short, long_window=50)
    likelihood = AnomalyLikelihood(params)
    for r in residuals:
        peek = likelihood.score_one(r)
        score = likelihood.update(r)
        assert 0.0 <= score <= 1.0 and score == peek
        assert math.isfinite(likelihood.mean) and math.isfinite(likelihood.var)


def test_bank_batched_one_by_one_and_reference_agree_to_the_last_bit() -> None:
    """`AnomalyBank.update` (a batch, numpy), `update_one` (Python floats) and `StreamAnomaly` (the readable
    reference) give the very same scores and alarms, and the bank's two paths the very same state, whatever the
    parameters: different short windows in one bank, no prior, no tolerance, no de-duplication, a minimum gap."""
    prior = gaussian(300, seed=20)
    params = [
        AnomalyParams.measure(prior, [-2.0, 2.0]),
        AnomalyParams(short_window=3, long_window=40),  # no prior: learns from the stream
        AnomalyParams.measure(prior, [], short_window=12, range_tolerance=None, rearm_after=0, min_gap=4),
        AnomalyParams.measure(prior, [0.0, 0.0], short_window=1, threshold=0.3, rearm_below=0.1, rearm_after=2),
    ]
    rng = random.Random(21)
    steps = 600
    residuals = [
        [rng.gauss(0, 1) * (8.0 if 200 <= t < 215 or t % 97 == 0 else 1.0) for t in range(steps)] for _ in params
    ]
    values = [[rng.uniform(-2.5, 2.5) * (3.0 if t % 131 == 0 else 1.0) for t in range(steps)] for _ in params]
    detectors = [StreamAnomaly(p) for p in params]
    reference = [
        [detector.update(r, v) for r, v in zip(rs, vs, strict=True)]
        for detector, rs, vs in zip(detectors, residuals, values, strict=True)
    ]
    one, batched = AnomalyBank(), AnomalyBank()
    assert [one.add(p) for p in params] == [batched.add(p) for p in params] == list(range(len(params)))
    by_one = [
        [one.update_one(row, residuals[row][t], values[row][t]) for t in range(steps)] for row in range(len(params))
    ]
    by_batch: list[list[tuple[float, bool]]] = [[] for _ in params]
    t_of = [0] * len(params)
    while min(t_of) < steps:  # random subsets of the rows, in random order, each row's samples in its own order
        rows = [row for row in range(len(params)) if t_of[row] < steps and rng.random() < 0.7]
        rng.shuffle(rows)
        if not rows:
            continue
        scores, alarms = batched.update(
            np.array(rows),
            np.array([residuals[row][t_of[row]] for row in rows]),
            np.array([values[row][t_of[row]] for row in rows]),
        )
        for row, score, alarm in zip(rows, scores.tolist(), alarms.tolist(), strict=True):
            by_batch[row].append((score, alarm))
            t_of[row] += 1
    for row in range(len(params)):
        expected = [(v.score, v.alarm) for v in reference[row]]
        assert by_one[row] == expected
        assert by_batch[row] == expected
    assert sum(alarm for row in reference for _, alarm, _ in row) >= 8  # the data exercises the gate
    assert sum(v.out_of_range for row in reference for v in row) >= 3
    for name in AnomalyBank._FIELDS:
        assert np.array_equal(one._arrays[name], batched._arrays[name], equal_nan=True), name
    assert np.array_equal(one._ring, batched._ring) and np.array_equal(one._armed, batched._armed)


def test_bank_refuses_a_non_finite_input_one_by_one_and_changes_nothing() -> None:
    bank = AnomalyBank()
    row = bank.add(AnomalyParams.measure(gaussian(500, seed=22), [0.0, 1.0]))
    bank.update_one(row, 0.1, 0.5)
    before = {name: values.copy() for name, values in bank._arrays.items()}
    for residual, value in ((math.nan, 0.5), (math.inf, 0.5), (0.1, math.nan)):
        with pytest.raises(InputError, match="not a finite number"):
            bank.update_one(row, residual, value)
    for name, values in bank._arrays.items():
        assert np.array_equal(values, before[name], equal_nan=True), name
