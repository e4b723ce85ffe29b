"""The engine's columnar forecasts write exactly what json.dumps writes for their messages, whichever way a row
was added (Python values or arrays), with NaN and infinities, odd names and a missing residual."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.forecasts import FORECAST_KEYS, Classifications, ForecastLayout, Forecasts

names = st.text(min_size=1, max_size=12)
numbers = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def forecast_rows(draw: st.DrawFn) -> tuple[Forecasts, list[tuple]]:
    targets = tuple(draw(st.lists(names, min_size=1, max_size=3, unique=True)))
    observed = tuple(t for t in targets if draw(st.booleans()))
    horizon = draw(st.integers(1, 4))
    layout = ForecastLayout(
        draw(st.integers(0, 2**40)),
        draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
        targets,
        observed,
    )
    forecasts = Forecasts(layout)
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        known = draw(st.booleans())
        row = (
            draw(names),
            draw(st.integers(0, 2**40)),
            draw(st.text(max_size=30)),
            [draw(finite) for _ in observed],
            [[draw(numbers) for _ in range(horizon)] for _ in targets],
            [draw(numbers) for _ in observed] if known else None,
            draw(st.floats(0, 1)) if known else None,
            draw(st.booleans()),
        )
        forecasts.add(*row)
        rows.append(row)
    return forecasts, rows


def standard(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


@given(forecast_rows())
def test_texts_are_exactly_what_json_dumps_writes(case: tuple[Forecasts, list[tuple]]) -> None:
    forecasts, rows = case
    messages = forecasts.messages()
    texts = forecasts.texts()
    assert texts == [standard(m) for m in messages]
    for text in texts:  # strict JSON: no NaN nor Infinity literal, null instead
        json.loads(text, parse_constant=pytest.fail)
    for message, (stream, seq, _, observed, forecast, residual, score, alarm) in zip(messages, rows, strict=True):
        assert tuple(message) == FORECAST_KEYS
        assert (message["stream"], message["seq"], message["score"], message["alarm"]) == (stream, seq, score, alarm)
        assert list(message["observed"].values()) == observed
        assert list(message["forecast"].values()) == [[v if math.isfinite(v) else None for v in f] for f in forecast]
        observed_residuals = dict(zip(forecasts.layout.observed, residual or [], strict=False))
        assert message["residual"] == {
            t: None
            if t not in observed_residuals or not math.isfinite(observed_residuals[t])
            else observed_residuals[t]
            for t in forecasts.layout.targets
        }


def test_rows_from_arrays_equal_rows_from_python_values() -> None:
    layout = ForecastLayout(7, "ab" * 32, ("temp", "flow"), ("temp",))
    observed = np.array([[20.5], [21.0], [-3.25]])
    forecast = np.array([[[20.6, 1.0], [20.7, 2.0]], [[np.nan, 1.5], [21.2, 2.5]], [[-3.0, 0.0], [-2.5, np.inf]]])
    residual = np.array([[0.1], [np.nan], [0.25]])
    known = np.array([True, True, False])
    score, alarm = np.array([0.5, 0.0, 0.9]), np.array([False, True, False])
    from_arrays = Forecasts(layout)
    from_arrays.extend(
        ["a", "b", "c"], ["t0", "t1", "t2"], [0, 1, 2], observed, forecast, residual, known, score, alarm
    )
    one_by_one = Forecasts(layout)
    for i, stream in enumerate("abc"):
        k = bool(known[i])
        one_by_one.add(
            stream,
            i,
            f"t{i}",
            observed[i].tolist(),
            forecast[i].T.tolist(),
            residual[i].tolist() if k else None,
            float(score[i]) if k else None,
            bool(alarm[i]),
        )
    assert from_arrays.texts() == one_by_one.texts() == [standard(m) for m in from_arrays.messages()]
    assert from_arrays.irregular == {1, 2}  # NaN residual and forecast, infinite forecast: json.dumps writes them
    second, third = (json.loads(text) for text in from_arrays.texts()[1:])
    assert second["forecast"]["temp"] == [None, 21.2] and second["residual"]["temp"] is None
    assert third["forecast"]["flow"] == [0.0, None]
    first = json.loads(from_arrays.texts()[0])
    assert first["forecast"] == {"temp": [20.6, 20.7], "flow": [1.0, 2.0]}
    assert first["residual"] == {"temp": 0.1, "flow": None}
    assert json.loads(from_arrays.texts()[2])["score"] is None


def test_a_real_forecast_round_trips_through_json() -> None:
    forecasts = Forecasts(ForecastLayout(1795315000, "ab" * 32, ("value",), ("value",)))
    forecasts.add(
        'boiler-\u00e9 "2"', 41, "2026-11-22T03:00:00Z", [93.3269], [[92.31429649048536, 92.9]], None, None, True
    )
    (text,) = forecasts.texts()
    assert json.loads(text) == forecasts.message(0)
    assert '"stream":"boiler-\\u00e9 \\"2\\""' in text
    assert '"forecast":{"value":[92.31429649048536,92.9]},"residual":{"value":null},"score":null,"alarm":true' in text


def test_classifications_are_written_by_json_dumps() -> None:
    classified = Classifications()
    message = {"stream": "s", "boot": 0, "seq": 3, "probabilities": {"ok": 0.25, "fault": 0.75}, "class": "fault"}
    classified.append("s", message)
    assert (classified.streams, classified.texts(), classified.messages()) == (["s"], [standard(message)], [message])
