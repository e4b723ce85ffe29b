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
    import logging
    from dataclasses import replace

    from edge_runtime.bundle import load_bundle
    from edge_runtime.config import build_config, load_config, parse_sources
    from edge_runtime.mqtt_client import MqttSettings
    from edge_runtime.runner import check_delivered, run

    file_values = load_config(Path(args.config)) if args.config else {}
    overrides: dict = {
        "bundle": Path(args.bundle) if args.bundle else None,
        "backend": args.backend,
        "precision": args.precision,
        "verify_key": _key(args),
        "stream": args.stream,
        "pace": args.pace,
        "topic_prefix": args.topic_prefix,
        "time_column": args.time_column,
        "device_id": args.device_id,
        "spool_path": Path(args.spool) if args.spool else None,
        "metrics_interval": args.metrics_interval,
        "drain_timeout": args.drain_timeout,
        "max_streams": args.max_streams,
        "gap_factor": args.gap_factor,
        "home_assistant": True if args.home_assistant else None,
    }
    overrides.update(parse_sources(args.source or []))
    if args.mqtt:
        mqtt = file_values.get("mqtt") or MqttSettings(url=args.mqtt)
        overrides["mqtt"] = replace(mqtt, url=args.mqtt)
    if args.mqtt_protocol and (overrides.get("mqtt") or file_values.get("mqtt")):
        overrides["mqtt"] = replace(overrides.get("mqtt") or file_values["mqtt"], protocol=args.mqtt_protocol)
    config = build_config(file_values, overrides)
    bundle = load_bundle(config.bundle, config.verify_key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rnnedge %(levelname)s %(message)s", stream=sys.stderr)
    stats = run(config, bundle)
    latency = f"median {stats.median_step_us} us, p99 {stats.p99_step_us} us per sample"
    refused = sum(stats.refused.values())
    print(
        f"streamed {stats.samples} samples ({refused} refused), {stats.forecasts} forecasts, {stats.alarms} alarms, "
        f"{stats.gap_resets} gap resets; {latency}",
        file=sys.stderr,
    )
    if stats.rejected_by_broker:
        print(f"the broker refused {stats.rejected_by_broker} publishes (check its ACL)", file=sys.stderr)
    check_delivered(stats, config)
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
    run = commands.add_parser("run", help="stream samples through a bundle and publish forecasts (docs/runtime.md)")
    run.add_argument("bundle", nargs="?", help="bundle directory (or 'bundle' in the config file)")
    run.add_argument("--config", metavar="TOML", help="device config file (example: devices/device.toml)")
    run.add_argument(
        "--source",
        action="append",
        help="csv:PATH, stdin, or mqtt:TOPIC_FILTER[=STREAM] (only mqtt: may be repeated, for several subscriptions)",
    )
    run.add_argument("--pace", type=float, help="csv replay speed: 1 = real time, 10 = ten times faster (default: max)")
    run.add_argument(
        "--mqtt", metavar="URL", help="mqtt[s]://[USER:PASS@]HOST[:PORT]; without a broker: JSON lines out"
    )
    run.add_argument("--mqtt-protocol", choices=["3.1.1", "5"], help="MQTT protocol version (default: 3.1.1)")
    run.add_argument("--stream", help="stream id of a csv/stdin source (default: the CSV file's name / stdin)")
    run.add_argument("--device-id", help="device id in topics and client id (default: the hostname)")
    run.add_argument("--topic-prefix", help="topic prefix (default: rnnedge/<device id>)")
    run.add_argument("--time-column", help="timestamp column of a CSV (default: the one recorded in the bundle)")
    run.add_argument("--backend", choices=sorted(BACKEND_FORMATS), help="inference backend (default: onnxruntime)")
    run.add_argument("--precision", help="float32, int8 or int8-static (default: float32)")
    run.add_argument("--verify-key", metavar="PUB", help="refuse the bundle unless signed by this ed25519 public key")
    run.add_argument(
        "--spool", metavar="PATH", help="durable outbox (default: ~/.local/state/rnnedge/<client id>.spool)"
    )
    run.add_argument("--metrics-interval", type=float, help="seconds between metrics messages (default: 10)")
    run.add_argument("--drain-timeout", type=float, help="seconds to publish the spool at exit (default: 30)")
    run.add_argument("--max-streams", type=int, help="refuse samples of new streams beyond this many (default: 1000)")
    run.add_argument("--gap-factor", type=float, help="reset a stream after a gap of this many intervals (default: 3)")
    run.add_argument("--home-assistant", action="store_true", help="publish Home Assistant MQTT discovery")
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
    from edge_runtime.device_cli import add_device_commands
    from export.cli import add_export_commands
    from trainer.cli import add_trainer_commands
    from trainer.evaluation.cli import add_eval_commands

    parser = argparse.ArgumentParser(
        prog="rnnedge",
        description="Compact recurrent forecasters from a sensor CSV to a Raspberry Pi.",
    )
    parser.add_argument("--version", action="version", version=f"rnnedge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_trainer_commands(commands)
    add_export_commands(commands)
    add_eval_commands(commands)
    _add_runtime_commands(commands)
    add_device_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RnnedgeError as exc:
        print(f"rnnedge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path that cannot be read or written, a refused connection: the user's to fix
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rnnedge: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"rnnedge: error: a file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
