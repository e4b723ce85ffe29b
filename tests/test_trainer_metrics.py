"""The error measures against values worked out by hand or by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.metrics import classification_metrics, mae_ratio, per_step, roc_auc, roc_curve, seasonal_naive


def brute_force_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pairs = list(itertools.product(scores[positive], scores[~positive]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


@settings(max_examples=80, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40))
def test_roc_auc_equals_the_pairwise_definition(data) -> None:
    scores = np.array([s for s, _ in data], dtype=float)  # few distinct values: plenty of ties
    positive = np.array([p for _, p in data])
    expected = brute_force_auc(scores, positive) if 0 < positive.sum() < len(positive) else None
    assert roc_auc(scores, positive) == (None if expected is None else pytest.approx(expected))


def test_roc_curve_ends_at_the_corners_and_matches_auc() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2])
    positive = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    fpr, tpr = roc_curve(scores, positive)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpr, fpr) == roc_auc(scores, positive) == 0.75


def test_per_step_metrics_by_hand() -> None:
    actual = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    forecast = actual + np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 3.0]])
    m = per_step(forecast, actual, scale=2.0)
    assert m["mae"] == [1.0, 1.0] and m["mse"] == [1.0, 3.0]
    np.testing.assert_allclose(m["rmse"], [1.0, np.sqrt(3)])
    np.testing.assert_allclose(m["r2"], [1 - 3 / 8, 1 - 9 / 8])  # SSE / SST per step
    assert m["mse_std"] == [0.25, 0.75] and m["mae_std"] == [0.5, 0.5]
    assert mae_ratio(m, {"mae": [2.0, 0.0]}) == [0.5, None]


def test_seasonal_naive_uses_the_same_phase_one_season_back() -> None:
    values = np.arange(100.0)[:, None]
    rows = np.array([50, 60])
    naive = seasonal_naive(values, rows, horizon=5, season=4)
    # made at row 50 for rows 51..55: one season back for 51..54 (47..50), two seasons back for 55 (47)
    np.testing.assert_array_equal(naive[0, :, 0], [47, 48, 49, 50, 47])
    np.testing.assert_array_equal(seasonal_naive(values, rows, 3, 1)[:, :, 0], [[50, 50, 50], [60, 60, 60]])


def test_binary_classification_metrics_by_hand() -> None:
    classes = ("fault", "normal")
    actual = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p_fault = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.2])
    probabilities = np.stack([p_fault, 1 - p_fault], axis=1)
    m = classification_metrics(probabilities, actual, classes, positive=0)
    # predicted fault: rows 0, 1, 3 -> TP 2, FP 1, FN 1
    assert m["positive_class"] == "fault"
    assert (m["precision"], m["recall"], m["f1"]) == (2 / 3, 2 / 3, 2 / 3)
    assert m["accuracy"] == 6 / 8
    assert m["roc_auc"] == brute_force_auc(p_fault, actual == 0)
    assert m["confusion"]["rows_actual_columns_predicted"] == [[2, 1], [1, 4]]


def test_multiclass_metrics_are_macro_averages() -> None:
    classes = ("a", "b", "c")
    actual = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    m = classification_metrics(probabilities, actual, classes, positive=0)
    assert m["average"] == "macro" and m["accuracy"] == 0.75
    assert m["precision"] == (1 + 0.5 + 1) / 3 and m["recall"] == (1 + 1 + 0.5) / 3
