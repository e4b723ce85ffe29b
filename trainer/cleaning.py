"""Turning a sensor table as recorded into gap-free segments, and saying exactly what was done.

Order of the steps: sort by time, merge duplicate timestamps, optionally resample to a fixed interval, fill
short gaps (missing rows and empty cells) by interpolation, and cut the series where a gap is longer than
`max_gap` rows. What comes out has no NaN, and its segments never span a gap, so a window cut inside one
segment never sees invented data beyond `max_gap` interpolated rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.errors import InputError
from trainer.table import Table
from trainer.timestamps import format_interval, format_time, parse_interval, parse_timestamps

GAP_FACTOR = 1.5  # a step this many intervals long or more leaves at least one missing row
IRREGULAR_TOLERANCE = 0.1  # a step more than 10% off the interval counts as irregular sampling


def _rows(count: int, noun: str = "row") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass
class CleaningReport:
    """Counts of everything cleaning changed; `lines()` says it in words for the report and the console."""

    rows_read: int
    columns: tuple[str, ...]
    rows_out_of_order: int = 0
    duplicate_rows: int = 0
    conflicting_duplicates: int = 0
    interval: float | None = None
    irregular_steps: int = 0
    resampled_to: float | None = None
    empty_bins: int = 0
    max_gap_rows: int = 0
    gaps_filled: int = 0
    rows_inserted: int = 0
    cells_interpolated: dict[str, int] = field(default_factory=dict)
    long_gaps: list[tuple[str, str, int]] = field(default_factory=list)  # (last time before, first after, rows)
    long_gap_count: int = 0
    rows_dropped: int = 0
    dropped_columns: list[str] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)  # rows in each gap-free segment

    def lines(self) -> list[str]:
        out = []
        if self.rows_out_of_order:
            out.append(f"{_rows(self.rows_out_of_order)} earlier than the row before: sorted by time")
        if self.duplicate_rows:
            conflict = (
                f", {self.conflicting_duplicates} of the timestamps with different values (averaged)"
                if self.conflicting_duplicates
                else " (identical values)"
            )
            out.append(f"{_rows(self.duplicate_rows)} repeating an earlier timestamp: merged{conflict}")
        if self.resampled_to is not None:
            out.append(
                f"resampled to {format_interval(self.resampled_to)} (mean of the samples in each interval; "
                f"{self.empty_bins} intervals held no sample and are gaps)"
            )
        elif self.irregular_steps:
            out.append(
                f"{self.irregular_steps} time steps differ from the usual interval "
                f"{format_interval(self.interval or 0)} by more than {IRREGULAR_TOLERANCE:.0%}: rows are used as "
                "consecutive samples (use --resample to put them on a fixed grid)"
            )
        if self.gaps_filled:
            out.append(
                f"{_rows(self.gaps_filled, 'short time gap')} ({_rows(self.rows_inserted, 'missing row')}, at most "
                f"{self.max_gap_rows} each) filled by linear interpolation"
            )
        filled = {name: n for name, n in self.cells_interpolated.items() if n}
        if filled:
            cells = ", ".join(f"{name} {n}" for name, n in filled.items())
            out.append(f"empty cells interpolated (runs of at most {self.max_gap_rows} rows): {cells}")
        if self.long_gap_count:
            shown = "; ".join(f"{a} -> {b} ({n} rows)" for a, b, n in self.long_gaps)
            more = (
                f" and {self.long_gap_count - len(self.long_gaps)} more"
                if self.long_gap_count > len(self.long_gaps)
                else ""
            )
            out.append(
                f"{_rows(self.long_gap_count, 'time gap')} longer than {self.max_gap_rows} rows split the series: "
                f"{shown}{more}"
            )
        if self.rows_dropped:
            out.append(
                f"{_rows(self.rows_dropped)} dropped: empty cells in runs longer than {self.max_gap_rows} rows "
                "or at the edge of a segment (the series is split there)"
            )
        if self.dropped_columns:
            out.append(f"constant on the training split, dropped from the inputs: {', '.join(self.dropped_columns)}")
        if len(self.segments) > 1:
            out.append(f"{len(self.segments)} gap-free segments (rows: {', '.join(map(str, self.segments))})")
        return out or ["nothing to clean: sorted, no duplicate timestamps, no gaps, no empty cells"]


@dataclass(frozen=True)
class CleanSeries:
    times: np.ndarray | None  # (N,) seconds since the epoch; None when the file has no time column
    read_times: np.ndarray | None  # every row read, sorted: the split points are quantiles of these
    values: np.ndarray  # (N, C) float64, no NaN
    segments: tuple[tuple[int, int], ...]  # [start, stop) row ranges with no gap inside
    source_rows: np.ndarray  # (N,) index of the data row in the file; -1 for rows cleaning created
    report: CleaningReport

    @property
    def rows(self) -> int:
        return len(self.values)

    def timestamp(self, row: int) -> str:
        return format_time(self.times[row]) if self.times is not None else f"row {row}"


def gap_rows(max_gap: int | str, interval: float | None) -> int:
    """`--max-gap` as rows: a count ('3') or a duration ('15min') divided by the sampling interval."""
    if isinstance(max_gap, int) or str(max_gap).strip().isdigit():
        return int(max_gap)
    if interval is None:
        raise InputError(f"--max-gap {max_gap!r} is a duration, but the data has no time column: give a row count")
    return int(parse_interval(str(max_gap)) // interval)


def _group_last(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return values[starts + counts - 1]


def _group_mean(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    present = ~np.isnan(values)
    sums = np.add.reduceat(np.where(present, values, 0.0), starts, axis=0)
    counts = np.add.reduceat(present.astype(np.int64), starts, axis=0)
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def _merge_groups(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, hold: list[int]) -> np.ndarray:
    """Numeric columns: mean of the group's present values. Held columns (labels): the group's last value."""
    merged = _group_mean(values, starts)
    if hold:
        merged[:, hold] = _group_last(values[:, hold], starts, counts)
    return merged


def _merge_duplicates(times, values, source, hold, report):
    unique, starts, counts = np.unique(times, return_index=True, return_counts=True)
    if len(unique) == len(times):
        return times, values, source
    report.duplicate_rows = int(len(times) - len(unique))
    repeated = counts > 1
    spread = np.fmax.reduceat(values, starts, axis=0) - np.fmin.reduceat(values, starts, axis=0)
    report.conflicting_duplicates = int(np.sum(repeated & np.any(spread > 0, axis=1)))
    return unique, _merge_groups(values, starts, counts, hold), source[starts]


def _resample(times, values, source, hold, interval, report):
    """Aggregate into fixed intervals; intervals with no sample become time gaps, filled or split like any other."""
    origin = np.floor(times[0] / interval) * interval
    bins = np.floor((times - origin) / interval).astype(np.int64)
    used, starts, counts = np.unique(bins, return_index=True, return_counts=True)
    report.resampled_to = interval
    report.empty_bins = int(used[-1] + 1 - len(used))
    return origin + used * interval, _merge_groups(values, starts, counts, hold), source[starts]


def _fill_time_gaps(times, values, source, interval, max_gap, report):
    """Insert NaN rows for short gaps (interpolated later); return the row indices a long gap comes before."""
    steps = np.diff(times)
    missing = np.where(steps >= GAP_FACTOR * interval, np.rint(steps / interval).astype(np.int64) - 1, 0)
    report.irregular_steps = int(np.sum((np.abs(steps - interval) > IRREGULAR_TOLERANCE * interval) & (missing == 0)))
    short = (missing > 0) & (missing <= max_gap)
    long = missing > max_gap
    report.long_gap_count = int(np.sum(long))
    report.long_gaps = [
        (format_time(times[i]), format_time(times[i + 1]), int(missing[i])) for i in np.flatnonzero(long)[:5]
    ]
    report.gaps_filled = int(np.sum(short))
    report.rows_inserted = int(np.sum(missing[short]))
    if report.rows_inserted:
        after = np.flatnonzero(short)
        counts = missing[after]
        at = np.repeat(after + 1, counts)
        offsets = np.concatenate([np.arange(1, c + 1) for c in counts])
        new_times = np.repeat(times[after], counts) + offsets * interval
        times = np.insert(times, at, new_times)
        values = np.insert(values, at, np.nan, axis=0)
        source = np.insert(source, at, -1)
        long = np.insert(long, at - 1, False)  # `long[i]` marks the step after row i; inserted rows start none
    breaks = np.zeros(len(times), dtype=bool)
    breaks[1:] = long
    return times, values, source, breaks


def _runs(mask: np.ndarray) -> Iterable[tuple[int, int]]:
    """[start, stop) of every run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)


def _interpolate(values, position, breaks, columns, hold, max_gap, report) -> None:
    """Fill runs of NaN of at most `max_gap` rows that have a value on both sides within the same segment."""
    bounds = np.concatenate([[0], np.flatnonzero(breaks), [len(values)]])
    report.cells_interpolated = dict.fromkeys(columns, 0)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        for col, name in enumerate(columns):
            segment = values[start:stop, col]
            for a, b in _runs(np.isnan(segment)):
                if a == 0 or b == len(segment) or b - a > max_gap:
                    continue
                if col in hold:
                    segment[a:b] = segment[a - 1]
                else:
                    x = position[start:stop]
                    segment[a:b] = np.interp(x[a:b], [x[a - 1], x[b]], [segment[a - 1], segment[b]])
                report.cells_interpolated[name] += int(b - a)


def clean(
    table: Table,
    path: Path,
    resample: str | None = None,
    max_gap: int | str = 3,
    hold_columns: tuple[int, ...] = (),
) -> CleanSeries:
    """Sort, merge duplicates, resample, interpolate short gaps and split at long ones; see the module doc."""
    report = CleaningReport(rows_read=len(table.stamps), columns=table.columns)
    values = table.values.copy()
    source = np.arange(len(values))
    hold = list(hold_columns)
    if table.time_column is None:
        if resample:
            raise InputError(f"{path}: --resample needs a time column, and none was found or given")
        times, read_times, interval = None, None, None
        report.max_gap_rows = gap_rows(max_gap, None)
        breaks = np.zeros(len(values), dtype=bool)
    else:
        times = parse_timestamps(table.stamps, table.lines, path)
        report.rows_out_of_order = int(np.sum(np.diff(times) < 0))
        order = np.argsort(times, kind="stable")
        times, values, source = times[order], values[order], source[order]
        read_times = times
        times, values, source = _merge_duplicates(times, values, source, hold, report)
        if resample:
            interval = parse_interval(resample)
            times, values, source = _resample(times, values, source, hold, interval, report)
        else:
            steps = np.diff(times)
            interval = float(np.median(steps)) if len(steps) else None
        report.interval = interval
        report.max_gap_rows = gap_rows(max_gap, interval)
        breaks = np.zeros(len(values), dtype=bool)
        if interval is not None and len(times) > 1:
            times, values, source, breaks = _fill_time_gaps(
                times, values, source, interval, report.max_gap_rows, report
            )
    position = times if times is not None else np.arange(len(values), dtype=np.float64)
    _interpolate(values, position, breaks, table.columns, hold, report.max_gap_rows, report)

    missing = np.isnan(values).any(axis=1)
    report.rows_dropped = int(np.sum(missing & (source >= 0)))
    cut = np.cumsum(missing | breaks)
    kept = np.flatnonzero(~missing)
    if len(kept) == 0:
        raise InputError(f"{path}: no row is left with a value in every column after cleaning")
    new_segment = np.concatenate([[True], cut[kept[1:]] - cut[kept[:-1]] > 0])
    starts = np.flatnonzero(new_segment)
    stops = np.concatenate([starts[1:], [len(kept)]])
    segments = tuple((int(a), int(b)) for a, b in zip(starts, stops, strict=True))
    report.segments = [b - a for a, b in segments]
    return CleanSeries(
        None if times is None else times[kept],
        read_times,
        values[kept],
        segments,
        source[kept],
        report,
    )
