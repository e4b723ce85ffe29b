"""ETTh1 univariate (target OT), the standard protocol, with a model trained by `rnnedge train` itself.

Protocol (../shared/data/README.md): train rows [0, 8640), validation [8640, 11520), test [11520, 14400), each
extended left by the look-back; z-score fitted on the training rows; MSE and MAE on standardised values over all
stride-1 test windows. The trainer gets rows [0, 14400) with --split 0.6,0.2,0.2, which puts its split points at
exactly 8640 and 11520, and trains with its product settings: OT fed as the change since the previous sample
(--difference), the output as the change from the last observed value (relative_to_last), windows of L rows.

Two scores per horizon, on the same 2,880 - H + 1 target windows:
- protocol: each test window read from zero state (the model sees exactly its L look-back rows, as the
  published window models do), forecast taken after the last row;
- streaming: the product's way, one sample at a time from zero state at row 11520 - L, the state carried through
  the whole test split (what a device would have forecast at each row).
Persistence and a closed-form least-squares linear model on the same window (relative to its last value, the
DLinear-style reference from shared/notes/MODELING.md) are scored on the same windows.

Each horizon trains one model per seed (default 0, 1, 2) and keeps the one with the lowest validation error, as a
user would; the spread over seeds is reported too. An ablation feeds OT's level instead of its changes.

    .venv/bin/python benchmarks/etth1.py [--data DIR] [--horizons 24 96] [--units 16] [--window 96] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN_END, VAL_END, TEST_END = 8640, 11520, 14400
PUBLISHED_H96 = {"PatchTST/42": (0.055, 0.179), "DLinear": (0.056, 0.180), "Autoformer": (0.071, 0.206)}
PERSISTENCE = {24: (0.0343, 0.1394), 96: (0.0693, 0.2033)}


def read_ot(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    column = header.index("OT")
    return [r[0] for r in rows[1:]], np.array([float(r[column]) for r in rows[1:]])


def write_protocol_rows(dates: list[str], ot: np.ndarray, path: Path) -> None:
    """Rows [0, 14400) of date and OT, in a temporary file: the data itself is never copied into the repository."""
    lines = [f"{d},{float(v)!r}" for d, v in zip(dates[:TEST_END], ot[:TEST_END], strict=True)]
    path.write_text("date,OT\n" + "\n".join(lines) + "\n")


def test_window_ends(horizon: int) -> np.ndarray:
    """Row index of the first forecast row of each stride-1 test window."""
    return np.arange(VAL_END, TEST_END - horizon + 1)


def actual(z: np.ndarray, ends: np.ndarray, horizon: int) -> np.ndarray:
    return z[ends[:, None] + np.arange(horizon)[None, :]]


def scores(forecast: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    error = forecast - truth
    return {"mse": round(float(np.mean(error**2)), 5), "mae": round(float(np.mean(np.abs(error))), 5)}


def linear_reference(z: np.ndarray, look_back: int, horizon: int) -> np.ndarray:
    """Least squares from the window (relative to its last value) to the next H values (same reference)."""

    def design(ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = z[ends[:, None] - look_back + np.arange(look_back)[None, :]]
        last = z[ends - 1][:, None]
        x = np.concatenate([windows - last, np.ones((len(ends), 1))], axis=1)
        return x, last

    fit_ends = np.arange(look_back, TRAIN_END - horizon + 1)
    x, last = design(fit_ends)
    coef, *_ = np.linalg.lstsq(x, actual(z, fit_ends, horizon) - last, rcond=None)
    x, last = design(test_window_ends(horizon))
    return x @ coef + last


def protocol_forecasts(model, z: np.ndarray, look_back: int, horizon: int, diff: bool) -> np.ndarray:
    from trainer.dataset import model_inputs

    ends = test_window_ends(horizon)
    windows = z[ends[:, None] - look_back + np.arange(look_back)[None, :]].astype(np.float32)
    inputs = np.stack([model_inputs(w[:, None], [0] if diff else []) for w in windows])
    output = model.predict(inputs, batch_size=512, verbose=0)[:, -1, :]
    return output + z[ends - 1][:, None]


def streaming_forecasts(model, z: np.ndarray, look_back: int, horizon: int, diff: bool) -> np.ndarray:
    from trainer.dataset import model_inputs

    start = VAL_END - look_back
    stream = model_inputs(z[start:TEST_END, None].astype(np.float32), [0] if diff else [])
    output = model.predict(stream[None], verbose=0)[0]
    made_at = test_window_ends(horizon) - 1  # the forecast for rows e..e+H-1 is made after row e-1
    return output[made_at - start] + z[made_at][:, None]


def train_and_score(
    args: argparse.Namespace, data: Path, ot: np.ndarray, horizon: int, seed: int, differenced: bool, scratch: Path
) -> dict:
    """One `rnnedge train` run on the protocol rows, scored on every stride-1 test window."""
    import keras

    from export.bundle_export import ExportOptions, export_bundle
    from trainer.run_dir import RunConfig
    from trainer.train import TrainOptions, train

    run_dir = scratch / f"run_h{horizon}_s{seed}_{'diff' if differenced else 'level'}"
    options = TrainOptions(
        data,
        ("OT",),
        (),
        None,
        cell=args.cell,
        layers=tuple(args.units),
        window=args.window,
        horizon=horizon,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=seed,
        quiet=True,
        difference=("OT",) if differenced else (),
        split=(0.6, 0.2, 0.2),
        stride=args.stride,
        patience=args.patience,
        plots=False,
    )
    started = time.monotonic()
    metrics = train(options, run_dir)
    seconds = time.monotonic() - started
    config = RunConfig.load(run_dir)
    if config.split_rows != (TRAIN_END, VAL_END - TRAIN_END, TEST_END - VAL_END):
        raise SystemExit(f"etth1: the trainer split {config.split_rows}, not the protocol's rows")
    scale = config.scaler["OT"]
    mean, std = ot[:TRAIN_END].mean(), ot[:TRAIN_END].std()
    if abs(scale.mean - mean) > 1e-9 or abs(scale.std - std) > 1e-9:
        raise SystemExit("etth1: the z-score was not fitted on the training rows [0, 8640)")
    z = (ot - mean) / std
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    ends = test_window_ends(horizon)
    truth = actual(z, ends, horizon)
    bundle, parity = export_bundle(run_dir, scratch / f"bundle_{run_dir.name}", ExportOptions(("onnx",), ("float32",)))
    onnx_file = bundle.file(bundle.manifest.artifact("onnx", "float32").file)
    return {
        "horizon": horizon,
        "seed": seed,
        "windows": int(len(ends)),
        "model": {
            "cell": config.cell,
            "layers": list(config.layers),
            "look_back_and_training_window": config.window,
            "differenced_input": differenced,
            "relative_to_last": config.relative_to_last,
            "parameters": int(metrics["training"]["parameters"]),
            "onnx_step_bytes": onnx_file.stat().st_size,
            "parity": parity.summary(),
        },
        "training": {
            "seconds_including_evaluation": round(seconds, 1),
            "epochs": metrics["training"]["epochs"],
            "best_epoch": metrics["training"]["best_epoch"],
            "stopped_early": metrics["training"]["stopped_early"],
        },
        "validation_standardised_mse": round(metrics["validation"]["standardised_mse"], 5),
        "protocol": scores(protocol_forecasts(model, z, config.window, horizon, differenced), truth),
        "streaming": scores(streaming_forecasts(model, z, config.window, horizon, differenced), truth),
        "persistence": scores(np.repeat(z[ends - 1][:, None], horizon, axis=1), truth),
        "linear_reference": scores(linear_reference(z, config.window, horizon), truth),
    }


def summarise(runs: list[dict]) -> dict:
    """The seed a user would keep (lowest validation error: the test split plays no part) and the seed spread."""
    chosen = min(runs, key=lambda r: r["validation_standardised_mse"])
    spread = {
        kind: {
            metric: {
                "mean": round(float(np.mean([r[kind][metric] for r in runs])), 5),
                "min": min(r[kind][metric] for r in runs),
                "max": max(r[kind][metric] for r in runs),
            }
            for metric in ("mse", "mae")
        }
        for kind in ("protocol", "streaming")
    }
    return {"chosen_by_validation": chosen, "over_seeds": spread, "seeds": runs}


def _pair(result: dict, key: str) -> str:
    return f"{result[key]['mse']:.4f} / {result[key]['mae']:.4f}"


def markdown(summaries: list[dict], ablation: dict | None) -> str:
    lines = [
        "### ETTh1 univariate (OT), standard protocol",
        "",
        "MSE / MAE on standardised values over all stride-1 test windows (rows 11520-14400). *protocol*: each window "
        "read from zero state (as published window models are scored); *streaming*: the same targets forecast by "
        "the model streamed one sample at a time through the test split (what the device does). One model per "
        "seed; each row shows the seed with the lowest validation error, and the spread over all seeds.",
        "",
        "| H | model | params | ONNX step | protocol MSE / MAE | streaming MSE / MAE | protocol MSE over seeds "
        "(mean, min-max) | persistence | linear reference | train s (epochs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        r = summary["chosen_by_validation"]
        m = r["model"]
        spread = summary["over_seeds"]["protocol"]["mse"]
        name = f"{m['cell']} {m['layers']}, L={m['look_back_and_training_window']}, seed {r['seed']}, " + (
            "differenced input" if m["differenced_input"] else "level input"
        )
        lines.append(
            f"| {r['horizon']} | {name} | {m['parameters']} | {m['onnx_step_bytes']} B | {_pair(r, 'protocol')} | "
            f"{_pair(r, 'streaming')} | {spread['mean']:.4f} ({spread['min']:.4f}-{spread['max']:.4f}, "
            f"{len(summary['seeds'])} seeds) | {_pair(r, 'persistence')} | {_pair(r, 'linear_reference')} | "
            f"{r['training']['seconds_including_evaluation']} ({r['training']['epochs']}) |"
        )
    published = ", ".join(f"{k} {mse} / {mae}" for k, (mse, mae) in PUBLISHED_H96.items())
    lines += ["", f"Published at H=96 (MSE / MAE): {published}."]
    if ablation:
        lines += [
            "",
            f"Ablation, the same model and seed {ablation['seed']} reading OT's *level* instead of its changes "
            f"(H={ablation['horizon']}): protocol {_pair(ablation, 'protocol')}, streaming "
            f"{_pair(ablation, 'streaming')}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(os.environ.get("RNNEDGE_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data, help="shared data directory (holds ett/)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[24, 96])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--units", type=int, nargs="+", default=[16])
    parser.add_argument("--window", type=int, default=96, help="look-back L, also the training window")
    parser.add_argument("--stride", type=int, default=4, help="rows between training windows")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-ablation", action="store_true", help="skip the level-input run at the last horizon")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "etth1.json")
    args = parser.parse_args()
    source = args.data / "ett" / "ETTh1.csv"
    if not source.is_file():
        print(f"etth1: no ETTh1 under {source.parent} (set RNNEDGE_DATA or --data)", file=sys.stderr)
        return 2
    dates, ot = read_ot(source)
    summaries = []
    ablation = None
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        data = scratch / "etth1_ot.csv"
        write_protocol_rows(dates, ot, data)
        for horizon in args.horizons:
            runs = []
            for seed in args.seeds:
                runs.append(train_and_score(args, data, ot, horizon, seed, True, scratch))
                print(json.dumps(runs[-1]), flush=True)
            summaries.append(summarise(runs))
        if not args.no_ablation:
            ablation = train_and_score(args, data, ot, args.horizons[-1], args.seeds[0], False, scratch)
            print(json.dumps(ablation), flush=True)
    for summary in summaries:
        r = summary["chosen_by_validation"]
        expected = PERSISTENCE.get(r["horizon"])
        if expected and abs(r["persistence"]["mse"] - expected[0]) > 1e-4:
            raise SystemExit(f"etth1: persistence MSE {r['persistence']['mse']} != {expected[0]}: windowing is wrong")
    report = {
        "benchmark": "ETTh1 univariate OT, standard protocol",
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "horizons": summaries,
        "ablation_level_input": ablation,
        "published_h96": {k: {"mse": v[0], "mae": v[1]} for k, v in PUBLISHED_H96.items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(summaries, ablation))
    print(markdown(summaries, ablation))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
