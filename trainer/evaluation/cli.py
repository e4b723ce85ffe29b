"""Argument parsing for `rnnedge eval nab` and `rnnedge eval etth1`; TensorFlow is imported only when they run."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.errors import InputError, require_extra

TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx")


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InputError(f"--{name} {value}: must be at least 1")


def _nab(args: argparse.Namespace) -> int:
    require_extra("eval nab", "train", TRAIN_MODULES)
    for name in ("files", "jobs", "units", "window", "epochs"):
        _positive(name, getattr(args, name))
    from trainer.evaluation.nab_eval import DetectorSettings, run_nab, summary_markdown

    settings = DetectorSettings(args.cell, args.units, args.window, args.epochs, args.seed)
    summary = run_nab(Path(args.data), Path(args.out), settings, args.files, args.jobs, progress=not args.quiet)
    print(summary_markdown(summary))
    print(f"wrote {summary['files']} results files and summary.json / summary.md to {args.out}")
    return 0


def _etth1(args: argparse.Namespace) -> int:
    require_extra("eval etth1", "train", TRAIN_MODULES)
    for name in ("units", "window", "epochs", "stride", "patience"):
        _positive(name, getattr(args, name))
    for horizon in args.horizons:
        _positive("horizons", horizon)
    from trainer.evaluation.etth1 import Etth1Settings, run_etth1, summary_markdown

    source = Path(args.data)
    if source.is_dir():
        source = source / "ETTh1.csv"
    settings = Etth1Settings(
        tuple(args.horizons),
        args.cell,
        args.units,
        args.window,
        args.stride,
        args.epochs,
        args.patience,
        tuple(args.seeds),
    )
    summary = run_etth1(source, Path(args.out), settings, progress=not args.quiet)
    print(summary_markdown(summary))
    print(f"wrote summary.json / summary.md to {args.out}")
    return 0


def add_eval_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval", help="score rnnedge on public benchmarks: NAB anomalies, ETTh1 forecasts (needs the 'train' extra)"
    )
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")

    nab = benchmarks.add_parser(
        "nab",
        help="the NAB v1.1 anomaly benchmark under its rules: train per file on the probationary period, stream "
        "the file through the runtime, score the three profiles",
        description="Per NAB file: train on the probationary period only (no labels), export the ONNX step model, "
        "stream the whole file through the edge runtime's engine; the row score is the engine's anomaly score "
        "where it raises an alarm, 0 elsewhere. Writes NAB results files (timestamp,value,anomaly_score,label) "
        "and summary.json / summary.md with the normalised scores next to the published ones.",
    )
    nab.add_argument("--data", required=True, help="NAB corpus directory (holds data/, labels/, config/, results/)")
    nab.add_argument("--out", required=True, help="directory for the results files and the summary")
    nab.add_argument(
        "--files",
        type=int,
        metavar="N",
        help="only the N smallest files, for a quick look: the scores are NOT comparable with published ones",
    )
    nab.add_argument("--jobs", type=int, default=2, help="worker processes, one core each (default: 2)")
    nab.add_argument("--cell", default="lstm", help="simplernn, lstm or gru (default: lstm)")
    nab.add_argument("--units", type=int, default=16, help="units of the forecaster (default: 16)")
    nab.add_argument(
        "--window", type=int, default=32, help="longest training window; short files get less (default: 32)"
    )
    nab.add_argument("--epochs", type=int, default=50, help="at most this many epochs per file (default: 50)")
    nab.add_argument("--seed", type=int, default=0)
    nab.add_argument("--quiet", action="store_true", help="no line per file")
    nab.set_defaults(handler=_nab)

    etth1 = benchmarks.add_parser(
        "etth1",
        help="ETTh1 univariate (OT) forecasting under the standard protocol, next to persistence and published results",
        description="Train on rows [0, 8640) (validation [8640, 11520)), score every stride-1 test window of rows "
        "[11520, 14400) on z-scored values: the Keras model per window and the exported step model streamed "
        "through the runtime; writes summary.json / summary.md.",
    )
    etth1.add_argument("--data", required=True, help="ETTh1.csv, or the directory holding it")
    etth1.add_argument("--out", required=True, help="directory for the summary")
    etth1.add_argument("--horizons", type=int, nargs="+", default=[24, 96], help="(default: 24 96)")
    etth1.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one model per seed (default: 0 1 2)")
    etth1.add_argument("--cell", default="lstm", help="simplernn, lstm or gru (default: lstm)")
    etth1.add_argument("--units", type=int, default=16, help="(default: 16)")
    etth1.add_argument("--window", type=int, default=96, help="look-back, also the training window (default: 96)")
    etth1.add_argument("--stride", type=int, default=4, help="rows between training windows (default: 4)")
    etth1.add_argument("--epochs", type=int, default=60, help="at most this many epochs (default: 60)")
    etth1.add_argument("--patience", type=int, default=6, help="early-stopping patience (default: 6)")
    etth1.add_argument("--quiet", action="store_true", help="no line per trained model")
    etth1.set_defaults(handler=_etth1)
