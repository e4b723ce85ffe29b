"""Small synthetic sensor files for the trainer tests: two related sensors, a fault label, and real-world mess."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

START = datetime(2024, 3, 1)


def sensor_rows(rows: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Minute samples: `temp` follows a 48-minute cycle, `load` leads it; `state` is 'fault' when temp runs hot."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    load = np.sin(2 * np.pi * t / 48) + 0.05 * rng.normal(size=rows)
    temp = 20 + 2 * np.sin(2 * np.pi * (t - 3) / 48) + 0.1 * rng.normal(size=rows) + 0.001 * t
    stamps = [(START + timedelta(minutes=int(i))).strftime("%Y-%m-%d %H:%M:%S") for i in t]
    state = ["fault" if v > 21.5 else "normal" for v in temp]
    return stamps, temp, load, state


def write_sensor_csv(
    path: Path,
    rows: int = 600,
    empty_cells: tuple[int, ...] = (),
    drop_rows: tuple[int, ...] = (),
    swap_rows: tuple[int, ...] = (),
    duplicate_rows: tuple[int, ...] = (),
) -> Path:
    """A CSV of `sensor_rows`, with cells of `temp` left empty, rows missing (time gaps), adjacent rows swapped
    (out of order) and rows written twice (duplicate timestamps)."""
    stamps, temp, load, state = sensor_rows(rows)
    lines = []
    for i in range(rows):
        if i in drop_rows:
            continue
        value = "" if i in empty_cells else f"{temp[i]:.4f}"
        line = f"{stamps[i]},{value},{load[i]:.4f},{state[i]}"
        lines.append(line)
        if i in duplicate_rows:
            lines.append(line)
    for i in swap_rows:
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    path.write_text("timestamp,temp,load,state\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path
