"""What the engine hands out: the forecasts of one `process` call, column by column, and their JSON messages.

Columns rather than a dict per message: at a thousand streams, building a dict for each forecast and walking it
with the standard encoder took more time than the model, the anomaly scores and the drift monitors together.
The message schema is fixed (docs/runtime.md), so `Forecasts.texts` fills one precomputed template per row and
writes byte for byte what `json.dumps(message, separators=(",", ":"))` writes for `Forecasts.messages()`; a row
holding a number JSON has no literal for (a NaN forecast from a broken model) is written by `json.dumps` itself,
with `null` for that number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _text  # json.dumps' default, ensure_ascii=True
from typing import Any, NamedTuple

import numpy as np

FORECAST_KEYS = ("stream", "boot", "seq", "ts", "observed", "forecast", "residual", "score", "alarm", "bundle")


class ForecastLayout(NamedTuple):
    """What every forecast of one engine shares."""

    boot: int
    bundle: str
    targets: tuple[str, ...]
    observed: tuple[str, ...]  # the targets that are also inputs: the ones with an observed value and a residual


class Forecasts:
    """Row i is one forecast message: stream, seq, ts; observed values (one per observed target), forecast [T][H]
    in sensor units, residuals (one per observed target; None on a stream's first forecast after a start, reset or
    model swap), score (None then too) and alarm."""

    __slots__ = ("layout", "streams", "seq", "ts", "observed", "forecast", "residual", "score", "alarm", "irregular")

    def __init__(self, layout: ForecastLayout) -> None:
        self.layout = layout
        self.streams: list[str] = []
        self.seq: list[int] = []
        self.ts: list[str] = []
        self.observed: list[list[float]] = []
        self.forecast: list[list[list[float]]] = []
        self.residual: list[list[float] | None] = []
        self.score: list[float | None] = []
        self.alarm: list[bool] = []
        self.irregular: set[int] = set()  # rows holding NaN or an infinity: json.dumps writes those

    def __len__(self) -> int:
        return len(self.streams)

    def add(
        self,
        stream: str,
        seq: int,
        ts: str,
        observed: list[float],
        forecast: list[list[float]],
        residual: list[float] | None,
        score: float | None,
        alarm: bool,
    ) -> None:
        """One row, from Python values (the engine's batch-of-one path)."""
        if not all_finite([value for row in forecast for value in row] + (residual or [])):
            self.irregular.add(len(self.streams))
        self.streams.append(stream)
        self.seq.append(seq)
        self.ts.append(ts)
        self.observed.append(observed)
        self.forecast.append(forecast)
        self.residual.append(residual)
        self.score.append(score)
        self.alarm.append(alarm)

    def extend(
        self,
        streams: list[str],
        ts: list[str],
        seq: list[int],
        observed: np.ndarray,
        forecast: np.ndarray,
        residual: np.ndarray,
        known: np.ndarray,
        score: np.ndarray,
        alarm: np.ndarray,
    ) -> None:
        """Rows from arrays: observed (n, observed targets), forecast (n, H, T), residual (n, observed targets),
        score (n,) and alarm (n,); residual and score count only where `known` (n,) is true."""
        bad = ~np.isfinite(forecast).all(axis=(1, 2)) | (known & ~np.isfinite(residual).all(axis=1))
        if bad.any():
            self.irregular.update((len(self.streams) + np.flatnonzero(bad)).tolist())
        self.streams += streams
        self.seq += seq
        self.ts += ts
        self.observed += observed.tolist()
        self.forecast += forecast.transpose(0, 2, 1).tolist()
        if known.all():
            self.residual += residual.tolist()
            self.score += score.tolist()
        else:
            flags = known.tolist()
            self.residual += [r if k else None for r, k in zip(residual.tolist(), flags, strict=True)]
            self.score += [s if k else None for s, k in zip(score.tolist(), flags, strict=True)]
        self.alarm += alarm.tolist()

    def message(self, i: int) -> dict[str, Any]:
        """Row i as a dict. NaN and infinities (a broken model's forecast, and the residual it leads to) become
        None: JSON has no literal for them, and strict parsers refuse json.dumps' `NaN`."""
        layout = self.layout
        residual, forecast = self.residual[i], self.forecast[i]
        if i in self.irregular:
            forecast = [[_json_number(v) for v in steps] for steps in forecast]
            residual = None if residual is None else [_json_number(v) for v in residual]
        residuals: dict[str, float | None] = dict.fromkeys(layout.targets)
        if residual is not None:
            residuals.update(zip(layout.observed, residual, strict=True))
        return {
            "stream": self.streams[i],
            "boot": layout.boot,
            "seq": self.seq[i],
            "ts": self.ts[i],
            "observed": dict(zip(layout.observed, self.observed[i], strict=True)),
            "forecast": dict(zip(layout.targets, forecast, strict=True)),
            "residual": residuals,
            "score": self.score[i],
            "alarm": self.alarm[i],
            "bundle": layout.bundle,
        }

    def messages(self) -> list[dict[str, Any]]:
        return [self.message(i) for i in range(len(self))]

    def texts(self) -> list[str]:
        """The compact JSON of each row's message."""
        layout = self.layout
        if layout.observed == layout.targets and len(layout.targets) == 1:
            texts = self._univariate_texts()
        else:
            known, first = _templates(layout)
            texts = []
            for stream, seq, ts, observed, forecast, residual, score, alarm in self._rows():
                steps = [",".join(map(repr, values)) for values in forecast]
                flag = "true" if alarm else "false"
                if residual is None:
                    texts.append(first % (_text(stream), seq, _text(ts), *observed, *steps, flag))
                else:
                    texts.append(known % (_text(stream), seq, _text(ts), *observed, *steps, *residual, score, flag))
        for i in self.irregular:
            texts[i] = json.dumps(self.message(i), separators=(",", ":"))
        return texts

    def _rows(self) -> Iterator[tuple]:
        return zip(
            self.streams, self.seq, self.ts, self.observed, self.forecast, self.residual, self.score, self.alarm,
            strict=True,
        )  # fmt: skip

    def _univariate_texts(self) -> list[str]:
        """One target that is also an input, the usual case: an f-string, a third faster than a template."""
        layout = self.layout
        key = _text(layout.targets[0])
        head, tail = f',"boot":{layout.boot:d},"seq":', f',"bundle":{_text(layout.bundle)}}}'
        return [
            f'{{"stream":{_text(stream)}{head}{seq:d},"ts":{_text(ts)},"observed":{{{key}:{observed[0]!r}}},'
            f'"forecast":{{{key}:[{",".join(map(repr, forecast[0]))}]}},'
            f'"residual":{{{key}:{"null" if residual is None else repr(residual[0])}}},'
            f'"score":{"null" if score is None else repr(score)},"alarm":{"true" if alarm else "false"}{tail}'
            for stream, seq, ts, observed, forecast, residual, score, alarm in self._rows()
        ]


def all_finite(values: Sequence[float]) -> bool:
    """No NaN nor infinity among `values`: one C-level sum in the common case (finite unless a value is not, or
    the sum overflowed)."""
    total = sum(values)
    return total - total == 0.0 or all(map(math.isfinite, values))


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


@lru_cache(maxsize=8)
def _templates(layout: ForecastLayout) -> tuple[str, str]:
    """%-templates of a message with residuals and score, and of one without (a stream's first forecast).
    `%r` of a finite float is what json.dumps writes for it."""

    def template(known: bool) -> str:
        text, number = "\0", "\1"  # placeholders no key can contain: _text escapes control characters
        observed = ",".join(f"{_text(t)}:{number}" for t in layout.observed)
        forecast = ",".join(f"{_text(t)}:[{text}]" for t in layout.targets)
        residual = ",".join(
            f"{_text(t)}:{number if known and t in layout.observed else 'null'}" for t in layout.targets
        )
        whole = (
            f'{{"stream":{text},"boot":{layout.boot:d},"seq":{text},"ts":{text},"observed":{{{observed}}},'
            f'"forecast":{{{forecast}}},"residual":{{{residual}}},"score":{number if known else "null"},'
            f'"alarm":{text},"bundle":{_text(layout.bundle)}}}'
        )
        return whole.replace("%", "%%").replace(text, "%s").replace(number, "%r")

    return template(True), template(False)


class Classifications:
    """A classifier's messages (class probabilities): few and small, written by json.dumps."""

    __slots__ = ("streams", "rows")

    def __init__(self) -> None:
        self.streams: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.streams)

    def append(self, stream: str, message: dict[str, Any]) -> None:
        self.streams.append(stream)
        self.rows.append(message)

    def messages(self) -> list[dict[str, Any]]:
        return self.rows

    def texts(self) -> list[str]:
        return [json.dumps(message, separators=(",", ":")) for message in self.rows]
