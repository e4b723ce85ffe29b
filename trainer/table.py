"""Reading a training CSV as it is: numeric columns with their missing cells, and the raw timestamps.

Unlike the device's row reader, an empty cell is not an error here but a missing value, which cleaning then
interpolates or cuts around. Text that is not a number is still an error naming its line.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.csv_source import guess_time_column
from edge_runtime.errors import InputError


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    values: np.ndarray  # (rows, columns) float64, NaN where a cell was empty
    stamps: list[str]  # the time column's text, or the row number when there is none
    lines: np.ndarray  # (rows,) file line of each row, for error messages
    time_column: str | None
    labels: list[str] | None  # the label column's text (classification), '' when empty


def _number(text: str, path: Path, line: int, name: str) -> float:
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}: line {line}: column {name!r} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise InputError(
            f"{path}: line {line}: column {name!r} holds {text!r}, not a finite number "
            "(leave the cell empty to mark a missing value)"
        )
    return value


def _index(path: Path, header: list[str], name: str) -> int:
    if name not in header:
        raise InputError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
    return header.index(name)


def read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if header is None or not any(cell.strip() for cell in header):
        raise InputError(f"{path}: the file is empty (expected a header row)")
    return [cell.strip() for cell in header]


def read_table(path: Path, columns: tuple[str, ...], time_column: str | None, label: str | None = None) -> Table:
    """Read named numeric columns (and a text label column); `time_column` None means guess it from the header."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InputError(f"{path}: the file is empty (expected a header row)")
        header = [cell.strip() for cell in header]
        resolved_time = time_column or guess_time_column(header)
        time_index = _index(path, header, resolved_time) if resolved_time else None
        indexes = [_index(path, header, name) for name in columns]
        label_index = _index(path, header, label) if label else None
        stamps, lines, rows, labels = [], [], [], []
        for line, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            cells = [cell.strip() for cell in cells] + [""] * (len(header) - len(cells))
            rows.append([_number(cells[i], path, line, name) for i, name in zip(indexes, columns, strict=True)])
            if time_index is not None:
                if not cells[time_index]:
                    raise InputError(f"{path}: line {line}: the timestamp ({resolved_time!r}) is empty")
                stamps.append(cells[time_index])
            else:
                stamps.append(str(len(lines)))
            if label_index is not None:
                labels.append(cells[label_index])
            lines.append(line)
    if not rows:
        raise InputError(f"{path}: no data rows (only a header)")
    return Table(
        columns,
        np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns)),
        stamps,
        np.asarray(lines),
        resolved_time,
        labels if label_index is not None else None,
    )
