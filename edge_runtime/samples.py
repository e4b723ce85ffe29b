"""What sources hand to the engine: a sample, a rejected input with its reason, or the end of a source."""

from __future__ import annotations

from dataclasses import dataclass

MAX_STREAM_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of every model feature for one stream.

    `ts` is seconds since the epoch (UTC) whatever the input's format, so the engine can compare any two
    timestamps of a stream; `ts_text` is the timestamp as it was received, echoed in output messages.
    """

    stream: str
    ts: float
    ts_text: str
    values: tuple[float, ...]  # raw (unscaled) values in the bundle's feature order, all finite


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that did not become a sample: counted and logged by the engine, never fatal."""

    stream: str | None  # None when the stream could not be told (e.g. an unmatched topic)
    reason: str  # one line naming the problem
    source: str  # where it came from: a topic, "data.csv line 12", "stdin line 3"


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The last item a source puts in the queue: it has nothing more to give (end of file, stopped, failed)."""

    source: str
    error: str | None = None  # one line when the source ended because of a problem


def stream_id_problem(stream: str) -> str | None:
    """Why `stream` cannot be a stream id, or None. Ids appear in output topics: no wildcards, no NUL."""
    if not stream:
        return "the stream id is empty"
    if len(stream) > MAX_STREAM_ID_CHARS:
        return f"the stream id {stream[:40]!r}... is longer than {MAX_STREAM_ID_CHARS} characters"
    if "+" in stream or "#" in stream or "\0" in stream:
        return f"the stream id {stream!r} contains an MQTT wildcard (+, #) or NUL"
    return None
