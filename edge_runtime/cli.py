"""The `rnnedge` command. Subcommands that need TensorFlow are registered here but import it only when run."""

from __future__ import annotations

import argparse
import sys

from edge_runtime import __version__
from edge_runtime.errors import ParityError, RnnedgeError


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.runner import run

    bundle = load_bundle(args.bundle)
    stats = run(bundle, args.source, args.mqtt, args.stream, args.topic_prefix, args.time_column)
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
    from edge_runtime.parity import check_float_parity

    report = check_float_parity(load_bundle(args.bundle))
    print(report.markdown())
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
    run.set_defaults(handler=_run)

    parity = commands.add_parser("parity", help="check a bundle's model against its golden Keras outputs")
    parity.add_argument("bundle")
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
