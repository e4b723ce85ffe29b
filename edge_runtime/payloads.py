"""Turning one message (MQTT payload, stdin line) into a `Sample`, or a `Rejected` that names the problem.

Accepted payloads (UTF-8, at most `max_bytes` bytes):
- a plain number, `23.5`, when the model has one feature;
- a JSON object. Its values, in this order of precedence:
  `"values": [..]`, one number per feature in the bundle's feature order; else one field per feature named like
  the feature (`{"temperature": 20.1, "pressure": 1.2}`); else, for a one-feature model only, `"value"`.
  Other fields are ignored (devices often add units or battery levels). In JSON lines (`parse_json_line`),
  `"stream": "..."` names the object's stream.
  Values must be JSON numbers: strings, booleans, null, lists, objects, NaN and infinities are refused.

`"ts"`, optional, is the sample's time:
- an ISO-8601 string (`2024-05-01T12:00:00Z`, `2024-05-01 12:00:00+02:00`, ...); without a zone it is UTC;
- a number (or a string holding one): epoch seconds when its magnitude is below 1e11 (the year 5138), epoch
  milliseconds below 1e14 (1e11 ms is March 1973), refused above (microseconds and nanoseconds are not guessed);
- absent or null: the time the message was received, and `ts_text` is that time in ISO-8601 UTC.

Nothing here raises, whatever the bytes: every problem becomes a `Rejected` with a one-line reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from edge_runtime.samples import Rejected, Sample, stream_id_problem

EPOCH_MILLISECONDS_FROM = 1e11
EPOCH_LIMIT = 1e14
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_decode_json = json.JSONDecoder().decode


class _Invalid(Exception):
    """A reason to reject the payload; caught in this module only."""


def _excerpt(text: str, limit: int = 40) -> str:
    """A short quoted excerpt for a reason: repr() escapes newlines, so reasons stay one line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, str):
        return f"a string ({_excerpt(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return str(value)


def _number(value: object, name: str) -> float:
    """A finite float from a JSON number; anything else is refused naming the field."""
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Invalid(f"{name} is {value}: NaN and infinities are refused")
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise _Invalid(f"{name} is an integer too large for a float") from None
    raise _Invalid(f"{name} is {_kind(value)}, not a number")


def _epoch(number: float, text: str) -> float:
    magnitude = abs(number)
    if magnitude < EPOCH_MILLISECONDS_FROM:
        return number
    if magnitude < EPOCH_LIMIT:
        return number / 1000.0
    raise _Invalid(f"ts {text} is out of range: epoch seconds (< 1e11) or milliseconds (< 1e14) expected")


def parse_timestamp(stamp: object) -> tuple[float, str]:
    """(seconds since the epoch, the stamp as text) for an ISO-8601 string or epoch seconds / milliseconds.

    Raises ValueError naming the problem; shared by every source so that all timestamps follow one rule.
    """
    try:
        return _timestamp(stamp)
    except _Invalid as problem:
        raise ValueError(str(problem)) from None


def _timestamp(stamp: object) -> tuple[float, str]:
    kind = type(stamp)
    if kind is str:
        if _NUMBER_TEXT.fullmatch(stamp):
            number = float(stamp)
            if not math.isfinite(number):
                raise _Invalid(f"ts {_excerpt(stamp)} is not a finite number")
            return _epoch(number, stamp), stamp
        try:
            moment = datetime.fromisoformat(stamp)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp(), stamp
        except (ValueError, OverflowError):
            raise _Invalid(f"ts {_excerpt(stamp)} is not an ISO-8601 time or epoch seconds/milliseconds") from None
    if kind is int or kind is float:
        number = _number(stamp, "ts")
        text = str(stamp)
        return _epoch(number, text), text
    raise _Invalid(f"ts is {_kind(stamp)}, not an ISO-8601 string or epoch seconds/milliseconds")


def received_text(received_at: float) -> str:
    """The reception time as ISO-8601 UTC with milliseconds: `ts_text` of a sample that carried no `ts`."""
    return datetime.fromtimestamp(received_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _values(document: dict, features: Sequence[str]) -> tuple[float, ...]:
    listed = document.get("values")
    if listed is not None:
        if type(listed) is not list:
            raise _Invalid(f"'values' is {_kind(listed)}, not a list of numbers")
        if len(listed) != len(features):
            raise _Invalid(
                f"'values' holds {len(listed)} numbers, the model takes {len(features)} ({_names(features)})"
            )
        return tuple([_number(v, f"'values'[{i}]") for i, v in enumerate(listed)])
    if len(features) == 1:
        name = features[0]
        if name in document:
            return (_number(document[name], f"field {name!r}"),)
        if "value" in document:
            return (_number(document["value"], "field 'value'"),)
        raise _Invalid(f"missing field {name!r}" + ("" if name == "value" else " (or 'value')"))
    missing = [name for name in features if name not in document]
    if missing:
        single = " ('value' carries one feature only)" if "value" in document else ""
        raise _Invalid(f"missing field{'s' if len(missing) > 1 else ''} {_names(missing)}{single}")
    return tuple([_number(document[name], f"field {name!r}") for name in features])


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _sample(document: object, stream: str, features: Sequence[str], received_at: float) -> Sample:
    kind = type(document)
    if kind is dict:
        stamp = document.get("ts")
        values = _values(document, features)
        if stamp is None:
            return Sample(stream, received_at, received_text(received_at), values)
        ts, ts_text = _timestamp(stamp)
        return Sample(stream, ts, ts_text, values)
    if kind is float or kind is int:
        if len(features) != 1:
            raise _Invalid(f"a plain number gives 1 of the {len(features)} values the model takes ({_names(features)})")
        return Sample(stream, received_at, received_text(received_at), (_number(document, "the payload"),))
    raise _Invalid(f"the payload is {_kind(document)}, not a number or a JSON object")


def _decode(payload: bytes, max_bytes: int) -> object:
    if len(payload) > max_bytes:
        raise _Invalid(f"payload too large: {len(payload)} bytes, the limit is {max_bytes}")
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise _Invalid("payload is not UTF-8 text") from None
    try:
        return _decode_json(text)
    except (ValueError, RecursionError):
        raise _Invalid(f"payload {_excerpt(text)} is neither a number nor JSON") from None


def parse_payload(
    payload: bytes, stream: str, features: Sequence[str], max_bytes: int, received_at: float, source: str = ""
) -> Sample | Rejected:
    """One message for `stream` -> a `Sample` with values in `features` order, or a `Rejected` saying why."""
    try:
        return _sample(_decode(payload, max_bytes), stream, features, received_at)
    except _Invalid as problem:
        return Rejected(stream, str(problem), source)


def parse_json_line(
    line: bytes, default_stream: str, features: Sequence[str], max_bytes: int, received_at: float, source: str = ""
) -> Sample | Rejected:
    """Like `parse_payload`, and an object's optional `"stream"` field names its stream (multiplexed input)."""
    stream = default_stream
    try:
        document = _decode(line, max_bytes)
        if type(document) is dict and "stream" in document:
            named = document["stream"]
            if type(named) is not str:
                raise _Invalid(f"field 'stream' is {_kind(named)}, not a string")
            problem = stream_id_problem(named)
            if problem:
                raise _Invalid(problem)
            stream = named
        return _sample(document, stream, features, received_at)
    except _Invalid as problem:
        return Rejected(stream, str(problem), source)
