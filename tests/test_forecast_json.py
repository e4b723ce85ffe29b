"""The fast forecast serialiser writes exactly what json.dumps writes, for any message the engine can make."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.forecast_json import dumps_message

names = st.text(min_size=1, max_size=12)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)


@st.composite
def forecast_messages(draw: st.DrawFn) -> dict:
    targets = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    horizon = draw(st.integers(1, 4))
    return {
        "stream": draw(names),
        "boot": draw(st.integers(0, 2**40)),
        "seq": draw(st.integers(0, 2**40)),
        "ts": draw(st.text(max_size=30)),
        "observed": {t: draw(numbers) for t in draw(st.lists(st.sampled_from(targets), unique=True))},
        "forecast": {t: draw(st.lists(numbers, min_size=horizon, max_size=horizon)) for t in targets},
        "residual": {t: draw(st.none() | numbers) for t in targets},
        "score": draw(st.none() | st.floats(0, 1)),
        "alarm": draw(st.booleans()),
        "bundle": draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
    }


def standard(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


@given(forecast_messages())
def test_forecasts_are_written_exactly_as_json_dumps_writes_them(message: dict) -> None:
    assert dumps_message(message) == standard(message)


def test_a_real_forecast_round_trips_through_json() -> None:
    message = {
        "stream": 'boiler-\u00e9 "2"',
        "boot": 1795315000,
        "seq": 41,
        "ts": "2026-11-22T03:00:00Z",
        "observed": {"value": 93.3269},
        "forecast": {"value": [92.31429649048536, 92.90138360653233]},
        "residual": {"value": None},
        "score": None,
        "alarm": True,
        "bundle": "ab" * 32,
    }
    text = dumps_message(message)
    assert text == standard(message)
    assert json.loads(text) == message
    assert '"stream":"boiler-\\u00e9 \\"2\\""' in text


def test_other_messages_take_the_standard_path() -> None:
    classified = {"stream": "s", "boot": 0, "seq": 3, "probabilities": {"ok": 0.25, "fault": 0.75}, "class": "fault"}
    reordered = {"seq": 1, "stream": "s"}
    for message in (classified, reordered, {}):
        assert dumps_message(message) == standard(message)
