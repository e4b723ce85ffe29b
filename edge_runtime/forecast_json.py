"""The JSON text of a forecast message, byte for byte what `json.dumps(message, separators=(",", ":"))` gives.

One message per sample is the runtime's hottest output: the standard encoder walks the nested dicts generically
and takes about 5 us for a one-target forecast, more than the model step. The schema is fixed (docs/runtime.md),
so it is written here with one format string (about 2 us). Anything else (a classifier's message, a field this
does not know) goes through `json.dumps`, so the output never depends on which path wrote it.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _text  # json.dumps' default, ensure_ascii=True
from typing import Any

FORECAST_KEYS = ("stream", "boot", "seq", "ts", "observed", "forecast", "residual", "score", "alarm", "bundle")
_float_repr = float.__repr__


def _number(value: float | int | None) -> str:
    if type(value) is float and value - value == 0.0:  # finite (nan - nan and inf - inf are nan)
        return _float_repr(value)
    return "null" if value is None else json.dumps(value)  # ints, NaN, Infinity as json writes them


def _numbers(values: dict[str, Any]) -> str:
    return ",".join([f"{_text(name)}:{_number(value)}" for name, value in values.items()])


def _lists(values: dict[str, list[float]]) -> str:
    return ",".join([f"{_text(name)}:[{','.join([_number(v) for v in value])}]" for name, value in values.items()])


def dumps_message(message: dict[str, Any]) -> str:
    """Compact JSON of an engine message; forecasts take the fast path."""
    if tuple(message) != FORECAST_KEYS or type(message["alarm"]) is not bool:
        return json.dumps(message, separators=(",", ":"))
    return (
        f'{{"stream":{_text(message["stream"])},"boot":{message["boot"]:d},"seq":{message["seq"]:d},'
        f'"ts":{_text(message["ts"])},"observed":{{{_numbers(message["observed"])}}},'
        f'"forecast":{{{_lists(message["forecast"])}}},"residual":{{{_numbers(message["residual"])}}},'
        f'"score":{_number(message["score"])},"alarm":{"true" if message["alarm"] else "false"},'
        f'"bundle":{_text(message["bundle"])}}}'
    )
