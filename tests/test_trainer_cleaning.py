"""Cleaning: what it does to messy files, that it says so, and that no NaN or gap ever reaches a window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trainer_fixtures import write_sensor_csv

from edge_runtime.bundle import ColumnScale
from edge_runtime.errors import InputError
from edge_runtime.scaling import Scaler
from trainer.cleaning import clean
from trainer.dataset import forecast_arrays, load_data, split_series, windows
from trainer.table import Table, read_table
from trainer.timestamps import format_interval, parse_interval, parse_timestamps


def test_timestamps_iso_space_t_offset_and_epoch() -> None:
    lines = [2, 3, 4]
    iso = parse_timestamps(["2024-01-01 00:00:00", "2024-01-01T00:05:00", "2024-01-01T00:10:00+00:00"], lines, Path())
    np.testing.assert_allclose(np.diff(iso), [300, 300])
    epoch = parse_timestamps(["1700000000", "1700000060.5", "1700000120"], lines, Path())
    np.testing.assert_allclose(epoch, [1700000000, 1700000060.5, 1700000120])


def test_unparseable_timestamp_names_line_and_value() -> None:
    with pytest.raises(InputError, match=r"f.csv: line 3: timestamp '03/01/2024 10:00' is not an ISO-8601 time"):
        parse_timestamps(["2024-03-01 09:00:00", "03/01/2024 10:00"], [2, 3], Path("f.csv"))


def test_intervals_round_trip() -> None:
    assert [parse_interval(t) for t in ("30s", "5min", "1h", "1d", "1.5h")] == [30, 300, 3600, 86400, 5400]
    assert [format_interval(s) for s in (30, 300, 3600, 86400, 90)] == ["30s", "5min", "1h", "1d", "90s"]
    with pytest.raises(InputError, match="interval '5 parsecs' is not understood"):
        parse_interval("5 parsecs")


def test_messy_file_is_sorted_merged_filled_split_and_reported(tmp_path: Path) -> None:
    csv = write_sensor_csv(
        tmp_path / "messy.csv",
        rows=300,
        empty_cells=(10, 11, 200, 201, 202, 203, 204, 205),
        drop_rows=(50, 51, *range(100, 130)),
        swap_rows=(20,),
        duplicate_rows=(60,),
    )
    table = read_table(csv, ("temp", "load"), None)
    assert table.time_column == "timestamp" and len(table.stamps) == 300 - 32 + 1
    series = clean(table, csv, max_gap=3)
    report = series.report
    assert report.rows_out_of_order == 1
    assert report.duplicate_rows == 1 and report.conflicting_duplicates == 0
    assert (report.gaps_filled, report.rows_inserted) == (1, 2)  # rows 50-51: interpolated
    assert report.long_gap_count == 1 and report.long_gaps[0][2] == 30  # rows 100-129: a split
    assert report.cells_interpolated["temp"] == 2 + 2  # empty cells 10-11, and the two inserted rows
    assert report.rows_dropped == 6  # empty run 200-205 is longer than max_gap
    assert [b - a for a, b in series.segments] == [100, 70, 94]
    assert not np.isnan(series.values).any()
    text = "\n".join(report.lines())
    for phrase in (
        "sorted by time",
        "merged (identical values)",
        "1 short time gap",
        "split the series",
        "6 rows dropped",
    ):
        assert phrase in text
    # the interpolated cells lie on the straight line between their neighbours
    times = series.times
    row = int(np.searchsorted(times, times[0] + 10 * 60))
    np.testing.assert_allclose(
        series.values[row, 0], np.interp(times[row], times[[row - 1, row + 2]], series.values[[row - 1, row + 2], 0])
    )


def test_resampling_averages_each_interval(tmp_path: Path) -> None:
    csv = write_sensor_csv(tmp_path / "minute.csv", rows=120)
    table = read_table(csv, ("temp", "load"), None)
    series = clean(table, csv, resample="5min")
    assert series.rows == 24 and series.report.resampled_to == 300
    np.testing.assert_allclose(series.values[0], table.values[:5].mean(axis=0))
    assert np.all(np.diff(series.times) == 300)


def test_file_without_time_column_is_numbered(tmp_path: Path) -> None:
    csv = tmp_path / "plain.csv"
    csv.write_text("a,b\n1,1\n2,2\n,3\n\n5,4\n")
    table = read_table(csv, ("a", "b"), None)
    assert table.time_column is None and table.stamps == ["0", "1", "2", "3"]
    series = clean(table, csv)
    np.testing.assert_allclose(series.values, [[1, 1], [2, 2], [3.5, 3], [5, 4]])
    with pytest.raises(InputError, match="--resample needs a time column"):
        clean(table, csv, resample="1min")


def test_labels_are_held_not_interpolated(tmp_path: Path) -> None:
    csv = write_sensor_csv(tmp_path / "labels.csv", rows=200, drop_rows=(30,))
    data = load_data(csv, ("temp", "load"), ("temp",), None, "state", None, 3)
    assert data.classes == ("fault", "normal")
    codes = data.series.values[:, -1]
    assert set(np.unique(codes)) <= {0.0, 1.0}
    assert codes[30] == codes[29]


# --- property: whatever the mess, a training window holds no NaN and never spans a gap -------------------------


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(60, 200),
    empty=st.lists(st.integers(0, 199), max_size=40),
    dropped=st.lists(st.integers(1, 199), max_size=40),
    max_gap=st.integers(0, 4),
    window=st.integers(2, 12),
    horizon=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_no_nan_and_no_gap_reaches_a_window(rows, empty, dropped, max_gap, window, horizon, seed) -> None:
    rng = np.random.default_rng(seed)
    keep = np.setdiff1d(np.arange(rows), dropped)
    values = rng.normal(size=(rows, 2)).cumsum(axis=0)
    values[[e for e in empty if e < rows], rng.integers(0, 2)] = np.nan
    values = values[keep]
    order = rng.permutation(len(keep))  # rows arrive in any order
    table = Table(
        ("a", "b"),
        values[order],
        [str(1_700_000_000 + 60 * int(k)) for k in keep[order]],
        np.arange(len(keep)) + 2,
        "timestamp",
        None,
    )
    try:
        series = clean(table, Path("p.csv"), max_gap=max_gap)
        splits = split_series(series, (0.6, 0.2, 0.2), window + horizon, "window", Path("p.csv"))
    except InputError:
        return  # too little data left: refused, never silently used
    assert not np.isnan(series.values).any()
    scaler = Scaler(("a", "b"), ("a",), {"a": ColumnScale(0, 1), "b": ColumnScale(0, 1)}, True, horizon)
    for piece in splits.pieces:
        steps = np.diff(series.times[piece.start : piece.stop])
        assert np.all(steps == 60), "a piece spans a gap"
        arrays = forecast_arrays(
            series.values[piece.start : piece.stop], series.values[piece.start : piece.stop, :1], scaler, []
        )
        if len(arrays.targets) < window:
            continue
        x, y = windows(arrays.inputs, arrays.targets, window, 1, [])
        assert np.isfinite(x).all() and np.isfinite(y).all()
