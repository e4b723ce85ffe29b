"""`rnnedge sweep`: train a grid of cell x units x window, export each, measure it, rank it and pick one.

Ranking is by validation error only (the test split stays a final check, never a selection criterion). Size
and latency are measured on the exported ONNX step model, the artefact that runs on the device.
"""

from __future__ import annotations

import csv
import itertools
import os
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edge_runtime.bundle import Bundle
from edge_runtime.errors import InputError, ParityError
from edge_runtime.onnx_backend import OnnxStepBackend
from export.bundle_export import ExportOptions, export_bundle
from trainer.train import TrainOptions, train

LATENCY_CALLS = 2000
LATENCY_WARMUP_CALLS = 200
# What a sweep measures: the float32 ONNX step model, the artefact the runtime runs by default.
SWEEP_EXPORT = ExportOptions(formats=("onnx",), precisions=("float32",))


@dataclass(frozen=True)
class Candidate:
    cell: str
    layers: tuple[int, ...]
    window: int

    @property
    def name(self) -> str:
        return f"{self.cell}-{'-'.join(map(str, self.layers))}-w{self.window}"


@dataclass(frozen=True)
class Budget:
    """Selection: the fewest parameters within `tolerance` (relative) of the best validation error, among the
    candidates that fit every given limit. tolerance 0 picks the best."""

    tolerance: float = 0.0
    max_latency_us: float | None = None
    max_bytes: int | None = None
    max_params: int | None = None

    def fits(self, entry: Entry) -> bool:
        return (
            (self.max_latency_us is None or entry.latency_us <= self.max_latency_us)
            and (self.max_bytes is None or entry.onnx_bytes <= self.max_bytes)
            and (self.max_params is None or entry.parameters <= self.max_params)
        )

    def describe(self) -> str:
        limits = [
            f"{label} {value}"
            for label, value in (
                ("latency <=", f"{self.max_latency_us} us" if self.max_latency_us is not None else None),
                ("ONNX size <=", f"{self.max_bytes} bytes" if self.max_bytes is not None else None),
                ("parameters <=", self.max_params),
            )
            if value is not None
        ]
        rule = (
            f"the fewest parameters within {self.tolerance:.1%} of the best validation error"
            if self.tolerance
            else "the best validation error"
        )
        return rule + (f", among candidates with {', '.join(limits)}" if limits else "")


@dataclass
class Entry:
    candidate: Candidate
    run_dir: Path
    bundle_dir: Path
    val_error: float
    parameters: int
    onnx_bytes: int
    latency_us: float
    parity_error: float
    test: dict[str, float]
    epochs: int
    train_seconds: float
    within_budget: bool = True
    chosen: bool = False


def step_latency_us(bundle: Bundle, calls: int = LATENCY_CALLS) -> float:
    """Median wall time of one ONNX Runtime step at batch 1, state fed back as a device streams it."""
    backend = OnnxStepBackend(bundle.file(bundle.manifest.artifact("onnx", "float32").file), bundle.manifest)
    inputs = bundle.golden()["inputs"][0]
    states = backend.zero_state(1)
    timings = []
    for i in range(LATENCY_WARMUP_CALLS + calls):
        x = inputs[i % len(inputs)][None, :]
        started = time.perf_counter_ns()
        _, states = backend.step(x, states)
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings[LATENCY_WARMUP_CALLS:]) / 1000


def _test_summary(metrics: dict) -> dict[str, float]:
    test = metrics["test"]
    if metrics["task"] == "classify":
        return {"test_f1": test["f1"], "test_roc_auc": test["roc_auc"], "test_accuracy": test["accuracy"]}
    return {"test_mae": test["model"]["mae"], "test_persistence_mae": test["persistence"]["mae"]}


def evaluate_candidate(base: TrainOptions, candidate: Candidate, out: Path) -> Entry:
    options = replace(base, cell=candidate.cell, layers=candidate.layers, window=candidate.window)
    run_dir = out / "runs" / candidate.name
    bundle_dir = out / "bundles" / candidate.name
    metrics = train(options, run_dir)
    bundle, parity = export_bundle(run_dir, bundle_dir, SWEEP_EXPORT)
    if not parity.passed:
        raise ParityError(f"{candidate.name}: {parity.summary()}")
    validation = metrics["validation"]
    return Entry(
        candidate=candidate,
        run_dir=run_dir,
        bundle_dir=bundle_dir,
        val_error=float(validation["log_loss"] if metrics["task"] == "classify" else validation["standardised_mse"]),
        parameters=int(metrics["training"]["parameters"]),
        onnx_bytes=bundle.file(bundle.manifest.artifact("onnx", "float32").file).stat().st_size,
        latency_us=step_latency_us(bundle),
        parity_error=max(r.worst.max_abs_error for r in parity.results if r.worst is not None),
        test=_test_summary(metrics),
        epochs=int(metrics["training"]["epochs"]),
        train_seconds=float(metrics["training"]["seconds"]),
    )


def select(entries: list[Entry], budget: Budget) -> Entry:
    for entry in entries:
        entry.within_budget = budget.fits(entry)
    eligible = [e for e in entries if e.within_budget]
    if not eligible:
        raise InputError(
            f"no candidate fits the budget ({budget.describe()}); fastest {min(e.latency_us for e in entries):.1f} "
            f"us, smallest {min(e.onnx_bytes for e in entries)} bytes / {min(e.parameters for e in entries)} "
            "parameters"
        )
    best = min(e.val_error for e in eligible)
    close = [e for e in eligible if e.val_error <= best * (1 + budget.tolerance)]
    chosen = min(close, key=lambda e: (e.parameters, e.val_error))
    chosen.chosen = True
    return chosen


COLUMNS = (
    "rank",
    "name",
    "cell",
    "units",
    "window",
    "val_error",
    "parameters",
    "onnx_bytes",
    "step_latency_us",
    "parity_max_abs_error",
    "epochs",
    "train_seconds",
    "within_budget",
    "chosen",
)


def _rows(entries: list[Entry]) -> list[dict[str, object]]:
    rows = []
    for rank, e in enumerate(sorted(entries, key=lambda e: e.val_error), start=1):
        row = {
            "rank": rank,
            "name": e.candidate.name,
            "cell": e.candidate.cell,
            "units": " ".join(map(str, e.candidate.layers)),
            "window": e.candidate.window,
            "val_error": e.val_error,
            "parameters": e.parameters,
            "onnx_bytes": e.onnx_bytes,
            "step_latency_us": round(e.latency_us, 2),
            "parity_max_abs_error": e.parity_error,
            "epochs": e.epochs,
            "train_seconds": e.train_seconds,
            "within_budget": e.within_budget,
            "chosen": e.chosen,
        }
        row.update(e.test)
        row["run_dir"] = str(e.run_dir)
        row["bundle_dir"] = str(e.bundle_dir)
        rows.append(row)
    return rows


def write_leaderboard(out: Path, entries: list[Entry], budget: Budget, error_name: str, failed: dict[str, str]) -> None:
    rows = _rows(entries)
    with (out / "leaderboard.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    chosen = next(e for e in entries if e.chosen)
    test_keys = list(chosen.test)
    header = ["rank", "model", f"val {error_name}", "params", "ONNX bytes", "us/step", *test_keys, "parity"]
    lines = [
        "# Sweep leaderboard",
        "",
        f"Ranked by validation {error_name} (the test columns are shown, never used to choose). Latency: median "
        f"of {LATENCY_CALLS} ONNX Runtime step calls at batch 1, one thread, on this machine.",
        "",
        f"Selection: {budget.describe()}. **Chosen: `{chosen.candidate.name}`** -> `{chosen.run_dir}` "
        f"(bundle `{chosen.bundle_dir}`; `best` links to the run).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        name = (
            f"**{row['name']}**" if row["chosen"] else row["name"] + ("" if row["within_budget"] else " (over budget)")
        )
        cells = [row["rank"], name, f"{row['val_error']:.4g}", row["parameters"], row["onnx_bytes"]]
        cells += [
            f"{row['step_latency_us']:.1f}",
            *(f"{row[k]:.4g}" if row[k] is not None else "n/a" for k in test_keys),
        ]
        cells.append(f"{row['parity_max_abs_error']:.1e}")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if failed:
        lines += ["", "Not trained:"] + [f"- `{name}`: {reason}" for name, reason in failed.items()]
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(target, link.parent), link)


def sweep(
    base: TrainOptions,
    cells: tuple[str, ...],
    layer_options: tuple[tuple[int, ...], ...],
    windows: tuple[int, ...],
    out: Path,
    budget: Budget,
) -> Entry:
    """Train, export and measure every candidate; write the leaderboard; link `best` to the chosen run."""
    candidates = [Candidate(c, u, w) for c, u, w in itertools.product(cells, layer_options, windows)]
    out.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    failed: dict[str, str] = {}
    for number, candidate in enumerate(candidates, start=1):
        started = time.monotonic()
        try:
            entry = evaluate_candidate(base, candidate, out)
        except InputError as exc:  # e.g. a window too long for the validation split: the others may still fit
            failed[candidate.name] = str(exc)
            print(f"[{number}/{len(candidates)}] {candidate.name}: not trained: {exc}", flush=True)
            continue
        entries.append(entry)
        print(
            f"[{number}/{len(candidates)}] {candidate.name}: val {entry.val_error:.4g}, {entry.parameters} params, "
            f"{entry.onnx_bytes} B, {entry.latency_us:.1f} us/step ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    if not entries:
        raise InputError(f"no candidate could be trained: {'; '.join(f'{k}: {v}' for k, v in failed.items())}")
    chosen = select(entries, budget)
    error_name = "log loss" if base.task == "classify" else "standardised MSE"
    write_leaderboard(out, entries, budget, error_name, failed)
    _link(out / "best", chosen.run_dir)
    _link(out / "best-bundle", chosen.bundle_dir)
    return chosen
