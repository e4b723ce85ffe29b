"""Argument parsing for `rnnedge train` and `rnnedge demo`; TensorFlow is imported only when they run."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.errors import require_extra

TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx")


def _columns(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _train(args: argparse.Namespace) -> int:
    require_extra("train", "train", TRAIN_MODULES)
    from trainer.train import TrainOptions, train

    options = TrainOptions(
        csv=Path(args.csv),
        targets=_columns(args.target),
        features=_columns(args.features or ""),
        time_column=args.time_column,
        cell=args.cell,
        layers=tuple(args.units),
        window=args.window,
        horizon=args.horizon,
        epochs=args.epochs,
        seed=args.seed,
        quiet=args.quiet,
    )
    metrics = train(options, Path(args.out))
    test = metrics["test"]
    print(
        f"trained {args.cell} {list(options.layers)} in {metrics['training']['seconds']} s; "
        f"test MAE {test['model']['mae']:.4g} (persistence {test['persistence']['mae']:.4g}) "
        f"over {test['rows_scored']} rows -> {args.out}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    require_extra("demo", "train", TRAIN_MODULES + ("matplotlib", "amqtt"))
    from trainer.demo import run_demo

    run_demo(Path(args.out), args.mqtt, args.epochs)
    return 0


def add_trainer_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a recurrent forecaster on a CSV (needs the 'train' extra)")
    train.add_argument("csv", help="CSV with a header row; a timestamp column and numeric sensor columns")
    train.add_argument("--target", required=True, help="column(s) to forecast, comma-separated")
    train.add_argument("--features", help="input columns, comma-separated (default: the targets)")
    train.add_argument("--time-column", help="timestamp column (default: one named timestamp/time/date/ts)")
    train.add_argument("--cell", default="lstm", help="simplernn, lstm or gru (default: lstm)")
    train.add_argument(
        "--units",
        type=int,
        nargs="+",
        default=[32],
        help="units per stacked layer, e.g. --units 32 16 (default: 32)",
    )
    train.add_argument("--window", type=int, default=64, help="training sequence length (default: 64)")
    train.add_argument("--horizon", type=int, default=1, help="forecast steps ahead (default: 1)")
    train.add_argument("--epochs", type=int, default=50, help="maximum epochs; early stopping decides (default: 50)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.add_argument("--out", required=True, help="run directory to write")
    train.set_defaults(handler=_train)

    demo = commands.add_parser(
        "demo",
        help="train, export, check parity and stream the shipped sample to MQTT (needs the 'train' extra)",
    )
    demo.add_argument("--out", default="demo-out", help="where the run, bundle and plot go (default: demo-out)")
    demo.add_argument("--mqtt", metavar="URL", help="use this broker instead of the embedded one")
    demo.add_argument("--epochs", type=int, default=50)
    demo.set_defaults(handler=_demo)
