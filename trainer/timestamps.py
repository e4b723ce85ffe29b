"""Timestamps and intervals as numbers, so cleaning can sort, de-duplicate, resample and find gaps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edge_runtime.errors import InputError

_UNITS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|h|d)\s*$")


def _epoch_seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _iso_seconds(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:  # naive times are taken as UTC: only their differences matter here
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_timestamps(stamps: Sequence[str], lines: Sequence[int], path: Path) -> np.ndarray:
    """Seconds since the epoch for every row: ISO-8601 ('2024-01-31 12:00:00', 'T', offsets) or epoch seconds.

    The first row decides the format; a row in another format is an error naming its line, never a guess.
    """
    if not stamps:
        return np.zeros(0)
    epoch = _epoch_seconds(stamps[0]) is not None
    parse = _epoch_seconds if epoch else _iso_seconds
    seconds = np.empty(len(stamps))
    for i, text in enumerate(stamps):
        value = parse(text)
        if value is None:
            expected = "epoch seconds like the first row" if epoch else "an ISO-8601 time like '2024-01-31 12:00:00'"
            raise InputError(f"{path}: line {lines[i]}: timestamp {text!r} is not {expected}")
        seconds[i] = value
    return seconds


def parse_interval(text: str) -> float:
    """'30s', '5min', '1h', '1d' -> seconds."""
    match = _INTERVAL.match(text)
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"interval {text!r} is not understood (examples: 30s, 5min, 1h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_interval(seconds: float) -> str:
    """The shortest exact spelling: 300 -> '5min', 3600 -> '1h', 90 -> '90s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
