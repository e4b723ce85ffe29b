"""Argument parsing for `rnnedge train`, `rnnedge sweep` and `rnnedge demo`; TensorFlow is imported only when
they run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.errors import InputError, require_extra

if TYPE_CHECKING:
    from trainer.train import TrainOptions

TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx")


def _columns(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--split {text!r} is not three fractions like 0.7,0.1,0.2") from None


def _gap(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def _options(args: argparse.Namespace, layers: tuple[int, ...], window: int) -> TrainOptions:
    from trainer.train import TrainOptions

    return TrainOptions(
        csv=Path(args.csv),
        targets=_columns(args.target or ""),
        features=_columns(args.features or ""),
        time_column=args.time_column,
        cell=args.cell,
        layers=layers,
        window=window,
        horizon=args.horizon,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        quiet=args.quiet,
        dropout=args.dropout,
        recurrent_dropout=args.recurrent_dropout,
        difference=_columns(args.difference or ""),
        scaler=args.scaler,
        split=_fractions(args.split),
        resample=args.resample,
        max_gap=_gap(args.max_gap),
        season=_gap(args.season) if args.season else None,
        patience=args.patience,
        stride=args.stride,
        task=args.task,
        label=args.label,
        positive=args.positive,
        bidirectional=getattr(args, "bidirectional", False),
        plots=not args.no_plots,
    )


def _check_out(out: Path) -> None:
    """Refuse an --out that is a file or a bundle before TensorFlow is imported: runs written there would fail
    late with a raw OS error, or mix into the bundle's files without a word. An earlier run directory is reused."""
    from edge_runtime.bundle import MANIFEST_NAME
    from export.options import check_directory

    check_directory(out, "--out")
    if (out / MANIFEST_NAME).is_file():
        raise InputError(f"--out {out} is a bundle (it holds {MANIFEST_NAME}): choose another directory for the run")


def _train(args: argparse.Namespace) -> int:
    require_extra("train", "train", TRAIN_MODULES)
    from trainer.train import train

    _check_out(Path(args.out))
    options = _options(args, tuple(args.units), args.window)
    metrics = train(options, Path(args.out))
    test = metrics["test"]
    done = f"trained {args.cell} {list(options.layers)} in {metrics['training']['seconds']} s"
    if options.task == "classify":
        auc = "n/a" if test["roc_auc"] is None else f"{test['roc_auc']:.3f}"
        print(f"{done}; test accuracy {test['accuracy']:.3f}, F1 {test['f1']:.3f}, ROC-AUC {auc} -> {args.out}")
    else:
        print(
            f"{done}; test MAE {test['model']['mae']:.4g} (persistence {test['persistence']['mae']:.4g}) "
            f"over {test['rows_scored']} rows -> {args.out} (report.md)"
        )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    require_extra("sweep", "train", TRAIN_MODULES)
    import itertools
    from dataclasses import replace

    from trainer.options import check_options, parse_layers
    from trainer.prepare import prepare

    _check_out(Path(args.out))
    base = replace(_options(args, (1,), args.windows[0]), quiet=True)
    layer_options = tuple(parse_layers(u) for u in args.units)
    for cell, layers, window in itertools.product(args.cells, layer_options, args.windows):
        check_options(replace(base, cell=cell, layers=layers, window=window))
    # The file and its columns are the same for every candidate: a mistake there is one line, before TensorFlow
    # is imported and before a run directory is made; the shortest window needs the fewest rows.
    prepare(replace(base, window=min(args.windows)))
    from trainer.sweep import Budget, sweep

    budget = Budget(args.tolerance, args.max_latency_us, args.max_bytes, args.max_params)
    chosen = sweep(base, tuple(args.cells), layer_options, tuple(args.windows), Path(args.out), budget)
    out = Path(args.out)
    print(
        f"chosen {chosen.candidate.name}: {chosen.run_dir} (bundle {chosen.bundle_dir}); "
        f"leaderboard {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}; {out / 'best'} links to the run"
    )
    return 0


def _check_demo(args: argparse.Namespace) -> None:
    """Every argument, and that the given broker answers, before a minute of training is spent."""
    import socket

    from edge_runtime.mqtt_client import MqttSettings
    from export.options import check_directory

    if args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {args.epochs}")
    check_directory(Path(args.out), "--out")
    if args.mqtt:
        address = MqttSettings(args.mqtt).check().address
        try:
            socket.create_connection((address.host, address.port), timeout=10).close()
        except OSError as exc:
            raise InputError(f"cannot reach the broker {address}: {exc.strerror or exc}") from None


def _demo(args: argparse.Namespace) -> int:
    require_extra("demo", "train", TRAIN_MODULES + ("matplotlib", "amqtt"))
    _check_demo(args)
    from trainer.demo import run_demo

    run_demo(Path(args.out), args.mqtt, args.epochs)
    return 0


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("csv", help="CSV with a header row; a timestamp column and numeric sensor columns")
    data.add_argument("--target", help="column(s) to forecast, comma-separated")
    data.add_argument(
        "--features", help="input columns, comma-separated (default: the targets; when classifying: every column)"
    )
    data.add_argument("--time-column", help="timestamp column (default: one named timestamp/time/date/datetime/ts)")
    data.add_argument("--resample", metavar="INTERVAL", help="put samples on a fixed grid first, e.g. 5min, 1h")
    data.add_argument(
        "--max-gap",
        default="3",
        help="longest gap (rows, or a duration like 15min) filled by interpolation; longer gaps split the series "
        "(default: 3)",
    )
    data.add_argument(
        "--split", default="0.7,0.1,0.2", help="train,validation,test fractions, in time order (default: 0.7,0.1,0.2)"
    )
    data.add_argument(
        "--scaler", default="zscore", help="zscore or minmax, fitted on the training rows (default: zscore)"
    )
    data.add_argument(
        "--difference",
        metavar="COLUMNS",
        help="feed these inputs (or 'all') as the change since the previous sample: robust to level shifts",
    )
    data.add_argument(
        "--season", help="seasonal-naive baseline period, rows or a duration (default: one day, or inferred)"
    )
    task = parser.add_argument_group("task")
    task.add_argument("--task", default="forecast", help="forecast or classify (default: forecast)")
    task.add_argument("--label", help="classify: the column holding each row's class")
    task.add_argument("--positive", help="classify, two classes: the class scored as positive (default: the rarer)")


def _add_training_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    model = parser.add_argument_group("model and training")
    model.add_argument("--horizon", type=int, default=1, help="forecast steps ahead (default: 1)")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout after each recurrent layer (default: 0)")
    model.add_argument(
        "--recurrent-dropout", type=float, default=0.0, help="dropout on the recurrent state (default: 0)"
    )
    model.add_argument("--epochs", type=int, default=50, help="maximum epochs; early stopping decides (default: 50)")
    model.add_argument(
        "--patience", type=int, default=5, help="epochs without improvement before stopping (default: 5)"
    )
    model.add_argument("--batch-size", type=int, default=64)
    model.add_argument("--learning-rate", type=float, default=1e-3)
    model.add_argument("--stride", type=int, help="rows between training windows (default: window / 8)")
    model.add_argument("--seed", type=int, default=0)
    model.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    model.add_argument(
        "--out",
        required=True,
        help="directory to write; the files of an earlier run there are overwritten (a bundle directory is refused)",
    )
    return model


def add_trainer_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a recurrent forecaster or classifier on a CSV (needs 'train')")
    _add_data_arguments(train)
    model = _add_training_arguments(train)
    model.add_argument("--cell", default="lstm", help="simplernn, lstm or gru (default: lstm)")
    model.add_argument(
        "--units", type=int, nargs="+", default=[32], help="units per stacked layer, 1-3 layers, e.g. --units 32 16"
    )
    model.add_argument("--window", type=int, default=64, help="training sequence length (default: 64)")
    model.add_argument(
        "--bidirectional", action="store_true", help="refused: a bidirectional layer cannot stream (says why)"
    )
    model.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.set_defaults(handler=_train)

    sweep = commands.add_parser(
        "sweep", help="train, export and measure a grid of models; pick one by validation error and budget"
    )
    _add_data_arguments(sweep)
    grid = sweep.add_argument_group("grid and selection")
    grid.add_argument("--cells", nargs="+", default=["lstm", "gru"], help="cells to try (default: lstm gru)")
    grid.add_argument(
        "--units", nargs="+", default=["16", "32", "64"], help="layer sizes to try; 32-16 is two stacked layers"
    )
    grid.add_argument("--windows", type=int, nargs="+", default=[64], help="window lengths to try (default: 64)")
    grid.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="choose the fewest parameters within this relative distance of the best validation error "
        "(default: 0.02; 0 chooses the best)",
    )
    grid.add_argument("--max-latency-us", type=float, help="only models whose measured step takes at most this")
    grid.add_argument("--max-bytes", type=int, help="only models whose ONNX step file is at most this large")
    grid.add_argument("--max-params", type=int, help="only models with at most this many parameters")
    _add_training_arguments(sweep)
    sweep.set_defaults(handler=_sweep, quiet=True, cell="lstm")

    demo = commands.add_parser(
        "demo",
        help="train, export, check parity and stream the shipped sample to MQTT (needs the 'train' extra)",
    )
    demo.add_argument("--out", default="demo-out", help="where the run, bundle and plot go (default: demo-out)")
    demo.add_argument("--mqtt", metavar="URL", help="use this broker instead of the embedded one")
    demo.add_argument("--epochs", type=int, default=50)
    demo.set_defaults(handler=_demo)
