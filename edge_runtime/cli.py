"""The `rnnedge` command. Subcommands that need TensorFlow are registered here but import it only when run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_runtime import __version__
from edge_runtime.errors import ParityError, RnnedgeError

BACKEND_FORMATS = {"onnxruntime": "onnx", "litert": "tflite", "numpy": "numpy"}


def _key(args: argparse.Namespace) -> Path | None:
    return Path(args.verify_key) if args.verify_key else None


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.runner import run

    bundle = load_bundle(args.bundle, _key(args))
    stats = run(
        bundle,
        args.source,
        args.mqtt,
        args.stream,
        args.topic_prefix,
        args.time_column,
        format=BACKEND_FORMATS[args.backend],
        precision=args.precision,
    )
    print(
        f"streamed {stats.rows} rows ({stats.skipped} skipped), published {stats.forecasts} forecasts, "
        f"median {stats.median_step_us:.1f} us per sample",
        file=sys.stderr,
    )
    for reason in stats.skip_reasons:
        print(f"skipped {reason}", file=sys.stderr)
    return 0


def _parity(args: argparse.Namespace) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.parity import check_bundle

    report = check_bundle(load_bundle(args.bundle, _key(args)))
    print(report.markdown())
    if args.json:
        report.write_json(Path(args.json))
    if args.junit:
        report.write_junit(Path(args.junit))
    if not report.passed:
        raise ParityError(report.summary())
    print(report.summary())
    return 0


def _add_runtime_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="stream a source through a bundle and publish forecasts")
    run.add_argument("bundle", help="bundle directory made by 'rnnedge export'")
    run.add_argument("--source", required=True, help="csv:PATH (rows replayed as fast as possible)")
    run.add_argument("--mqtt", metavar="URL", help="mqtt://[USER:PASS@]HOST[:PORT]; without it, JSON lines on stdout")
    run.add_argument("--stream", help="stream id in topics and messages (default: the CSV file's name)")
    run.add_argument("--topic-prefix", help="topic prefix (default: rnnedge/<hostname>)")
    run.add_argument("--time-column", help="timestamp column (default: the one recorded in the bundle)")
    run.add_argument(
        "--backend",
        choices=sorted(BACKEND_FORMATS),
        default="onnxruntime",
        help="inference backend (default: onnxruntime)",
    )
    run.add_argument("--precision", default="float32", help="float32, int8 or int8-static (default: float32)")
    run.add_argument("--verify-key", metavar="PUB", help="refuse the bundle unless signed by this ed25519 public key")
    run.set_defaults(handler=_run)

    parity = commands.add_parser(
        "parity", help="check every artifact of a bundle against its golden Keras outputs (exit 1 on failure)"
    )
    parity.add_argument("bundle")
    parity.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parity.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report for CI systems")
    parity.add_argument(
        "--verify-key", metavar="PUB", help="refuse the bundle unless signed by this ed25519 public key"
    )
    parity.set_defaults(handler=_parity)


def build_parser() -> argparse.ArgumentParser:
    from export.cli import add_export_commands
    from trainer.cli import add_trainer_commands

    parser = argparse.ArgumentParser(
        prog="rnnedge",
        description="Compact recurrent forecasters from a sensor CSV to a Raspberry Pi.",
    )
    parser.add_argument("--version", action="version", version=f"rnnedge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_trainer_commands(commands)
    add_export_commands(commands)
    _add_runtime_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RnnedgeError as exc:
        print(f"rnnedge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
