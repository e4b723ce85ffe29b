"""Payload parsing: every accepted form gives the exact values and time; everything else is a named rejection."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.payloads import parse_json_line, parse_payload, parse_timestamp, received_text
from edge_runtime.samples import Rejected, Sample

ONE = ("value",)
TWO = ("temperature", "pressure")
NOW = 1_714_564_800.25  # 2024-05-01T12:00:00.250Z, the "received at" time of every test message


def parse(payload: bytes | str, features: tuple[str, ...] = ONE, max_bytes: int = 4096) -> Sample | Rejected:
    data = payload.encode() if isinstance(payload, str) else payload
    return parse_payload(data, "s1", features, max_bytes, NOW, "sensors/s1")


@pytest.mark.parametrize(
    ("payload", "features", "ts", "ts_text", "values"),
    [
        ("23.5", ONE, NOW, "2024-05-01T12:00:00.250Z", (23.5,)),
        (" -7\n", ONE, NOW, "2024-05-01T12:00:00.250Z", (-7.0,)),
        ('{"ts": 1714564800, "value": 23.5}', ONE, 1714564800.0, "1714564800", (23.5,)),
        ('{"ts": 1714564800.5, "value": 1e-3}', ONE, 1714564800.5, "1714564800.5", (0.001,)),
        ('{"ts": 1714564800123, "value": 1}', ONE, 1714564800.123, "1714564800123", (1.0,)),
        ('{"ts": "1714564800", "value": 1}', ONE, 1714564800.0, "1714564800", (1.0,)),
        ('{"ts": "2024-05-01T12:00:00Z", "value": 2}', ONE, 1714564800.0, "2024-05-01T12:00:00Z", (2.0,)),
        ('{"ts": "2024-05-01 12:00:00", "value": 2}', ONE, 1714564800.0, "2024-05-01 12:00:00", (2.0,)),
        ('{"ts": "2024-05-01T14:00:00+02:00", "value": 2}', ONE, 1714564800.0, "2024-05-01T14:00:00+02:00", (2.0,)),
        ('{"ts": null, "value": 2}', ONE, NOW, "2024-05-01T12:00:00.250Z", (2.0,)),
        ('{"value": 2, "unit": "C", "battery": {"pct": 80}}', ONE, NOW, "2024-05-01T12:00:00.250Z", (2.0,)),
        ('{"ts": 1, "temperature": 4.5}', ("temperature",), 1.0, "1", (4.5,)),
        ('{"ts": 1, "temperature": 20.1, "pressure": 1.2}', TWO, 1.0, "1", (20.1, 1.2)),
        ('{"ts": 1, "pressure": 1.2, "temperature": 20.1}', TWO, 1.0, "1", (20.1, 1.2)),
        ('{"ts": 1, "values": [20.1, 1.2]}', TWO, 1.0, "1", (20.1, 1.2)),
        ('{"ts": 1, "values": [3]}', ONE, 1.0, "1", (3.0,)),
    ],
    ids=[
        "plain-number",
        "plain-number-whitespace",
        "epoch-seconds",
        "epoch-seconds-fraction",
        "epoch-milliseconds",
        "epoch-string",
        "iso-z",
        "iso-naive-is-utc",
        "iso-offset",
        "null-ts",
        "extra-fields-ignored",
        "feature-name",
        "multi-feature",
        "multi-feature-any-order",
        "values-list",
        "values-list-one",
    ],
)
def test_accepted_payloads(
    payload: str, features: tuple[str, ...], ts: float, ts_text: str, values: tuple[float, ...]
) -> None:
    assert parse(payload, features) == Sample("s1", ts, ts_text, values)


@pytest.mark.parametrize(
    ("payload", "features", "reason"),
    [
        ("x" * 5000, ONE, "payload too large: 5000 bytes, the limit is 4096"),
        (b"\xff\xfe2\x003\x00", ONE, "payload is not UTF-8 text"),
        ("23,5", ONE, "payload '23,5' is neither a number nor JSON"),
        ("{'value': 1}", ONE, "is neither a number nor JSON"),
        ("NaN", ONE, "the payload is nan: NaN and infinities are refused"),
        ('{"value": -Infinity}', ONE, "field 'value' is -inf: NaN and infinities are refused"),
        ('{"value": 1e999}', ONE, "field 'value' is inf: NaN and infinities are refused"),
        ('{"value": "23.5"}', ONE, "field 'value' is a string ('23.5'), not a number"),
        ('{"value": true}', ONE, "field 'value' is a boolean (true), not a number"),
        ('{"value": null}', ONE, "field 'value' is null, not a number"),
        ('{"value": [1]}', ONE, "field 'value' is a list, not a number"),
        ('{"value": {"v": 1}}', ONE, "field 'value' is an object, not a number"),
        ('{"value": ' + "9" * 400 + "}", ONE, "field 'value' is an integer too large for a float"),
        ('{"ts": 1}', ONE, "missing field 'value'"),
        ('{"ts": 1}', ("temperature",), "missing field 'temperature' (or 'value')"),
        ('{"temperature": 1}', TWO, "missing field 'pressure'"),
        ('{"value": 1}', TWO, "missing fields 'temperature', 'pressure' ('value' carries one feature only)"),
        ("3", TWO, "a plain number gives 1 of the 2 values the model takes ('temperature', 'pressure')"),
        ('{"values": [1, 2, 3]}', TWO, "'values' holds 3 numbers, the model takes 2 ('temperature', 'pressure')"),
        ('{"values": [1, "2"]}', TWO, "'values'[1] is a string ('2'), not a number"),
        ('{"values": 1}', ONE, "'values' is 1, not a list of numbers"),
        ("[1, 2]", TWO, "the payload is a list, not a number or a JSON object"),
        ('"23.5"', ONE, "the payload is a string ('23.5'), not a number or a JSON object"),
        ("null", ONE, "the payload is null, not a number or a JSON object"),
        ("", ONE, "payload '' is neither a number nor JSON"),
        ('{"ts": "yesterday", "value": 1}', ONE, "ts 'yesterday' is not an ISO-8601 time or epoch seconds/millis"),
        ('{"ts": "2024-13-01", "value": 1}', ONE, "ts '2024-13-01' is not an ISO-8601 time"),
        ('{"ts": true, "value": 1}', ONE, "ts is a boolean (true), not an ISO-8601 string or epoch"),
        ('{"ts": [1], "value": 1}', ONE, "ts is a list"),
        ('{"ts": 1.7e15, "value": 1}', ONE, "ts 1700000000000000.0 is out of range: epoch seconds (< 1e11) or milli"),
        ('{"ts": NaN, "value": 1}', ONE, "ts is nan: NaN and infinities are refused"),
        ('{"ts": "1e999", "value": 1}', ONE, "ts '1e999' is not a finite number"),
    ],
)
def test_rejected_payloads_name_the_problem(payload: str | bytes, features: tuple[str, ...], reason: str) -> None:
    result = parse(payload, features)
    assert isinstance(result, Rejected)
    assert reason in result.reason
    assert "\n" not in result.reason
    assert (result.stream, result.source) == ("s1", "sensors/s1")


def test_deep_nesting_and_huge_numbers_are_rejected_not_raised() -> None:
    assert "neither a number nor JSON" in parse("[" * 200_000, max_bytes=10**6).reason  # RecursionError inside
    assert "neither a number nor JSON" in parse("1" * 5000, max_bytes=10**6).reason  # int digit limit
    assert "out of range" in parse('{"ts": ' + "9" * 300 + ', "value": 1}', max_bytes=10**6).reason


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        (0, 0.0),
        (99_999_999_999, 99_999_999_999.0),  # just below 1e11: still seconds (year 5138)
        (100_000_000_000, 100_000_000.0),  # 1e11: milliseconds (March 1973)
        (-1_000, -1_000.0),
        ("99999999999999", 99_999_999_999.999),
        ("1970-01-01T00:00:00", 0.0),
        ("1970-01-01T01:00:00+01:00", 0.0),
        ("2024-05-01T12:00:00.123456Z", 1714564800.123456),
    ],
)
def test_timestamp_rule(stamp: object, seconds: float) -> None:
    ts, text = parse_timestamp(stamp)
    assert ts == pytest.approx(seconds, abs=1e-6)
    assert text == str(stamp)


def test_timestamp_rule_refuses_microseconds() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(100_000_000_000_000)


def test_received_text_is_iso_utc_with_milliseconds() -> None:
    assert received_text(NOW) == "2024-05-01T12:00:00.250Z"
    assert parse_timestamp(received_text(NOW))[0] == NOW


def test_json_lines_pick_their_stream() -> None:
    line = b'{"stream": "boiler-2", "ts": 5, "value": 1.5}'
    assert parse_json_line(line, "stdin", ONE, 4096, NOW, "stdin line 1") == Sample("boiler-2", 5.0, "5", (1.5,))
    assert parse_json_line(b"2.5", "stdin", ONE, 4096, NOW).stream == "stdin"
    bad = parse_json_line(b'{"stream": 7, "value": 1}', "stdin", ONE, 4096, NOW, "stdin line 3")
    assert bad == Rejected("stdin", "field 'stream' is 7, not a string", "stdin line 3")
    wildcard = parse_json_line(b'{"stream": "a/+", "value": 1}', "stdin", ONE, 4096, NOW)
    assert "contains an MQTT wildcard" in wildcard.reason
    assert "is empty" in parse_json_line(b'{"stream": "", "value": 1}', "stdin", ONE, 4096, NOW).reason


# --- fuzzing: never raises, and what is accepted is always well-formed -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
json_objects = st.fixed_dictionaries(
    {},
    optional={
        "ts": json_values | st.integers(-(10**15), 10**15) | st.datetimes().map(datetime.isoformat),
        "value": json_values,
        "temperature": json_values,
        "pressure": json_values,
        "values": json_values | st.lists(st.floats() | st.integers(), max_size=3),
        "stream": json_values,
    },
)


def well_formed(result: Sample | Rejected, features: tuple[str, ...]) -> None:
    assert isinstance(result, Sample | Rejected)
    if isinstance(result, Sample):
        assert len(result.values) == len(features)
        assert all(type(v) is float and math.isfinite(v) for v in result.values)
        assert type(result.ts) is float and math.isfinite(result.ts)
        assert isinstance(result.ts_text, str)
    else:
        assert result.reason and "\n" not in result.reason


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=300), features=st.sampled_from([ONE, TWO]))
def test_arbitrary_bytes_never_raise(payload: bytes, features: tuple[str, ...]) -> None:
    well_formed(parse_payload(payload, "s", features, 256, NOW), features)
    well_formed(parse_json_line(payload, "s", features, 256, NOW), features)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_values | json_objects, features=st.sampled_from([ONE, TWO, ("temperature",)]))
def test_arbitrary_json_never_raises(document: object, features: tuple[str, ...]) -> None:
    payload = json.dumps(document).encode()
    well_formed(parse_payload(payload, "s", features, 4096, NOW), features)
    well_formed(parse_json_line(payload, "s", features, 4096, NOW), features)


finite = st.floats(allow_nan=False, allow_infinity=False)
epoch_seconds = st.integers(-(10**11) + 1, 10**11 - 1) | st.floats(-1e11, 1e11, exclude_max=True, exclude_min=True)
iso_times = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    # ISO 8601 offsets are whole minutes (Python 3.11's fromisoformat drops an offset's microseconds, and
    # hypothesis found one: +00:00:00.000001)
    timezones=st.none()
    | st.just(UTC)
    | st.builds(timezone, st.integers(-23 * 60, 23 * 60).map(lambda minutes: timedelta(minutes=minutes))),
)


@settings(max_examples=300)
@given(values=st.lists(finite, min_size=2, max_size=2), stamp=epoch_seconds, named=st.booleans())
def test_valid_payloads_round_trip_exactly(values: list[float], stamp: float, named: bool) -> None:
    document = {"ts": stamp, **dict(zip(TWO, values, strict=True))} if named else {"ts": stamp, "values": values}
    result = parse(json.dumps(document), TWO)
    assert result == Sample("s1", float(stamp), json.dumps(stamp), tuple(values))


@settings(max_examples=300)
@given(value=finite, milliseconds=st.integers(10**11, 10**14 - 1))
def test_epoch_milliseconds_round_trip(value: float, milliseconds: int) -> None:
    result = parse(json.dumps({"ts": milliseconds, "value": value}))
    assert result == Sample("s1", milliseconds / 1000, str(milliseconds), (value,))


@settings(max_examples=300)
@given(value=finite, moment=iso_times)
def test_iso_timestamps_round_trip(value: float, moment: datetime) -> None:
    result = parse(json.dumps({"ts": moment.isoformat(), "value": value}))
    expected = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    assert result == Sample("s1", expected, moment.isoformat(), (value,))


@settings(max_examples=200)
@given(value=finite)
def test_plain_numbers_round_trip(value: float) -> None:
    assert parse(repr(value)).values == (value,)
