"""Reading named numeric columns from a sensor CSV, shared by the trainer and the CSV replay source."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.errors import InputError

TIME_COLUMN_NAMES = ("timestamp", "time", "date", "datetime", "ts")


@dataclass(frozen=True)
class CsvRow:
    line: int
    timestamp: str
    values: tuple[float, ...] | None  # None when a value was not a finite number
    problem: str = ""


@dataclass(frozen=True)
class CsvColumns:
    timestamps: list[str]
    values: np.ndarray  # (rows, columns) float64
    time_column: str | None


def _open_reader(path: Path, errors: str = "strict") -> tuple[csv.reader, list[str], object]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    handle = path.open(newline="", encoding="utf-8", errors=errors)
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        handle.close()
        raise InputError(f"{path}: the file is empty (expected a header row)")
    return reader, [cell.strip() for cell in header], handle


def guess_time_column(header: Sequence[str]) -> str | None:
    """The first column whose name says it holds time, or None (rows are then numbered)."""
    for name in header:
        if name.lower() in TIME_COLUMN_NAMES:
            return name
    return None


def _column_index(path: Path, header: list[str], name: str) -> int:
    if name not in header:
        raise InputError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
    return header.index(name)


def _parse_row(cells: list[str], indexes: list[int], names: Sequence[str]) -> tuple[tuple[float, ...] | None, str]:
    values = []
    for index, name in zip(indexes, names, strict=True):
        text = cells[index].strip() if index < len(cells) else ""
        try:
            value = float(text)
        except ValueError:
            return None, f"column {name!r} holds {text!r}, not a number"
        if not math.isfinite(value):
            return None, f"column {name!r} holds {text!r}, not a finite number"
        values.append(value)
    return tuple(values), ""


def iter_rows(path: Path, columns: Sequence[str], time_column: str | None = "auto") -> Iterator[CsvRow]:
    """Yield every data row; a row with a bad value is yielded with values=None and the problem named."""
    with CsvRows(path, columns, time_column, errors="strict") as rows:
        yield from rows


class CsvRows:
    """An open CSV file whose header and columns are checked on opening (InputError before anything is read);
    iterate for its rows, then close it. The replay source's reader.

    With errors="replace", bytes that are not UTF-8 become U+FFFD: they spoil the value or timestamp they are in
    (that row is then reported as bad) instead of ending a replay that has good rows after them.
    """

    def __init__(self, path: Path, columns: Sequence[str], time_column: str | None = "auto", errors: str = "replace"):
        self.path = path
        self.columns = tuple(columns)
        self._reader, header, self._handle = _open_reader(path, errors)
        try:
            self.time_column = guess_time_column(header) if time_column == "auto" else time_column
            self._time_index = _column_index(path, header, self.time_column) if self.time_column else None
            self._indexes = [_column_index(path, header, name) for name in columns]
        except InputError:
            self.close()
            raise

    def __iter__(self) -> Iterator[CsvRow]:
        time_index = self._time_index
        for number, cells in enumerate(self._reader, start=2):
            if not cells or not any(cell.strip() for cell in cells):
                continue
            stamp = cells[time_index].strip() if time_index is not None and time_index < len(cells) else str(number - 2)
            values, problem = _parse_row(cells, self._indexes, self.columns)
            yield CsvRow(number, stamp, values, problem)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_columns(path: Path, columns: Sequence[str], time_column: str | None = "auto") -> CsvColumns:
    """Read whole numeric columns for training; any non-numeric or missing value is an error naming its line."""
    reader, header, handle = _open_reader(path)
    handle.close()
    resolved_time = guess_time_column(header) if time_column == "auto" else time_column
    stamps: list[str] = []
    rows: list[tuple[float, ...]] = []
    for row in iter_rows(path, columns, resolved_time):
        if row.values is None:
            raise InputError(f"{path}: line {row.line}: {row.problem}")
        stamps.append(row.timestamp)
        rows.append(row.values)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return CsvColumns(stamps, values, resolved_time)
