"""What `rnnedge train` can be asked to do, and the settings it refuses before touching any data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import InputError
from trainer.dataset import SCALER_KINDS

TASKS = ("forecast", "classify")
CELLS = ("simplernn", "lstm", "gru")  # names only: the options are checked before Keras is imported
MAX_LAYERS = 3


@dataclass(frozen=True)
class TrainOptions:
    csv: Path
    targets: tuple[str, ...]  # forecasting: the columns to forecast; empty when classifying
    features: tuple[str, ...]  # empty: the targets (forecasting) or every other column (classifying)
    time_column: str | None  # None: the column named timestamp/time/date/datetime/ts, if any
    cell: str = "lstm"
    layers: tuple[int, ...] = (32,)
    window: int = 64
    horizon: int = 1
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    quiet: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    difference: tuple[str, ...] = ()  # features fed as changes since the previous sample; ("all",) for every one
    scaler: str = "zscore"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    resample: str | None = None  # e.g. "5min": put the samples on a fixed grid first
    max_gap: int | str = 3  # rows (or a duration like "15min") a gap may span and still be interpolated
    season: int | str | None = None  # seasonal-naive baseline: rows or a duration; None: one day, or inferred
    patience: int = 5
    min_delta: float = 1e-3  # relative validation-loss gain that counts as an improvement
    stride: int | None = None  # between training windows; None: window // 8
    task: str = "forecast"
    label: str | None = None
    positive: str | None = None  # classification with two classes: the class precision/recall refer to
    bidirectional: bool = False  # refused (a bidirectional model cannot stream); kept so the refusal says why
    plots: bool = True


def check_options(options: TrainOptions) -> None:
    """Refuse impossible settings before reading any data."""
    problems = []
    if options.cell not in CELLS:
        problems.append(f"unknown cell {options.cell!r} (supported: {', '.join(CELLS)})")
    if not 1 <= len(options.layers) <= MAX_LAYERS or min(options.layers, default=0) < 1:
        problems.append(f"--units takes 1 to {MAX_LAYERS} positive layer sizes, got {list(options.layers)}")
    if options.window < 2 or options.horizon < 1:
        problems.append("window must be at least 2 and horizon at least 1")
    if not (0 <= options.dropout < 1 and 0 <= options.recurrent_dropout < 1):
        problems.append("dropout rates must be in [0, 1)")
    if options.scaler not in SCALER_KINDS:
        problems.append(f"unknown scaler {options.scaler!r} (supported: {', '.join(SCALER_KINDS)})")
    if len(options.split) != 3 or min(options.split) <= 0 or abs(sum(options.split) - 1) > 1e-6:
        problems.append(f"--split needs three positive fractions that add up to 1, got {list(options.split)}")
    if options.stride is not None and options.stride < 1:
        problems.append(f"--stride must be at least 1 row, got {options.stride}")
    if not options.learning_rate > 0:
        problems.append(f"--learning-rate must be above 0, got {options.learning_rate}")
    if options.epochs < 1 or options.batch_size < 1 or options.patience < 1:
        problems.append("epochs, batch size and patience must be at least 1")
    if options.task not in TASKS:
        problems.append(f"unknown task {options.task!r} (supported: {', '.join(TASKS)})")
    elif options.task == "classify" and not options.label:
        problems.append("--task classify needs --label COLUMN")
    elif options.task == "forecast" and not options.targets:
        problems.append("forecasting needs --target COLUMN[,COLUMN...]")
    if problems:
        raise InputError("; ".join(problems))


def parse_layers(text: str) -> tuple[int, ...]:
    """'32' -> (32,); '32-16' (or '32x16' / '32,16') -> two stacked layers."""
    parts = [p for p in text.replace("x", "-").replace(",", "-").split("-") if p]
    try:
        layers = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"units {text!r} is not a layer size like 32 or stacked sizes like 32-16") from None
    if not layers or min(layers) < 1:
        raise InputError(f"units {text!r} is not a layer size like 32 or stacked sizes like 32-16")
    return layers
