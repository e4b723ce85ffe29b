"""Argument parsing for the device commands: `deploy` and `rollback` (workstation, over ssh), `device ...` (on
the device itself) and `bench`. Everything here runs with the base install. devices/README.md documents them."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import RnnedgeError

if TYPE_CHECKING:
    from edge_runtime.activation import BundleStore
    from edge_runtime.deploy_ssh import SshOptions, SshTarget

DEVICE_CONFIG = Path("/etc/rnnedge/device.toml")  # where devices/provision.sh puts them
DEFAULT_ROOT = Path("/var/lib/rnnedge/bundles")
DEFAULT_KEEP = 3
DEFAULT_REMOTE_RNNEDGE = "/opt/rnnedge/bin/rnnedge"
MAX_WAIT_S = 7 * 24 * 3600.0  # --timeout, --probation: a week is past any real wait, short of overflowing a clock


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def _print(args: argparse.Namespace, result: dict[str, Any], line: str) -> None:
    print(json.dumps(result, indent=2) if args.json else line)


def _check_seconds(flag: str, value: float, zero_means: str | None = None) -> None:
    """Refuse a wait that is nan, negative, 0 (unless `zero_means` says what 0 does) or beyond MAX_WAIT_S: argparse
    takes `nan` and `-1` without a word; paho refuses 0 with a traceback, and Python's clocks overflow on 1e300."""
    if not (math.isfinite(value) and (value >= 0 if zero_means else value > 0) and value <= MAX_WAIT_S):
        least = f">= 0 (0: {zero_means})" if zero_means else "above 0"
        raise RnnedgeError(f"{flag} must be {least} and at most {MAX_WAIT_S:g} seconds, got {value:g}")


# --- on the device ---------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace, create: bool = False) -> BundleStore:
    """The store at --root, trusting --verify-key or else the device config's `verify_key` (the key the runtime
    itself checks at start), and refusing a root the runtime does not read. Only activation may create the store:
    for every other action a missing root is a mistyped path, never an empty store."""
    from edge_runtime.activation import BundleStore
    from edge_runtime.config import load_config

    root = Path(args.root)
    if not create and not root.is_dir():
        raise RnnedgeError(
            f"--root {root}: no bundle store there (not a directory; 'rnnedge device activate' creates one)"
        )
    config_path = Path(args.config) if args.config else (DEVICE_CONFIG if DEVICE_CONFIG.is_file() else None)
    values = load_config(config_path) if config_path else {}
    key = Path(args.verify_key) if args.verify_key else values.get("verify_key")
    runtime_bundle = values.get("bundle")
    if runtime_bundle is not None and (
        runtime_bundle.name != "current" or runtime_bundle.parent.resolve() != root.resolve()
    ):
        raise RnnedgeError(
            f"{config_path} makes the runtime read {runtime_bundle}, but this activates {root / 'current'}: "
            'set bundle = "<root>/current" there or pass the matching --root'
        )
    return BundleStore(root, key, args.keep)


def _version_line(version: dict | None) -> str:
    return version["version"] if version else "none"


def _reload_quietly(command: str | None) -> None:
    """Reload after a rollback: a failure is logged, never allowed to hide why the rollback happened."""
    from edge_runtime.activation import run_reload

    if command:
        try:
            run_reload(command)
        except RnnedgeError as exc:
            logging.getLogger("rnnedge.device").error("%s", exc)


def _device_activate(args: argparse.Namespace) -> int:
    from edge_runtime.activation import ProbationFailed, run_reload

    _logging()
    _check_seconds("--probation", args.probation, zero_means="no probation")
    store = _store(args, create=True)
    upload = sys.stdin.buffer if args.source == "-" else Path(args.source)
    activation = store.activate(upload, args.probation)
    version = activation.version.version
    result: dict[str, Any] = {**asdict(activation), "reloaded": False, "probation": None}
    if activation.changed and args.reload:
        try:
            run_reload(args.reload)
        except RnnedgeError as exc:
            try:
                restored = store.rollback(f"reload failed: {exc}").version.version
            except RnnedgeError as nothing_earlier:
                raise RnnedgeError(f"{exc}; {nothing_earlier}") from None
            _reload_quietly(args.reload)
            raise RnnedgeError(f"{exc}; rolled back to {restored}") from None
        result["reloaded"] = True
    if activation.changed and args.probation and not args.no_wait:
        logging.getLogger("rnnedge.device").info(
            "probation: waiting up to %g s for the runtime to confirm %s", args.probation, version
        )
        verdict = store.wait_for_probation()
        status = store.status()
        if verdict is None:  # settled by someone else (the probation timer): read the outcome from the store
            verdict = "confirmed" if status.current and status.current.version == version else "rolled back"
        result["probation"] = verdict
        unconfirmed = f"{version} published no confirmed forecast within {args.probation:g} s"
        if verdict == "rolled back":
            _reload_quietly(args.reload)
            restored = status.current.version if status.current else "none"
            raise ProbationFailed(f"{unconfirmed}: rolled back to {restored}")
        if verdict == "failed, kept":
            raise ProbationFailed(f"{unconfirmed} and there is no earlier version: it stays active")
    verb = "activated" if activation.changed else "already active:"
    _print(
        args, result, f"{verb} {version} (previous: {_version_line(result['previous'])}); {result['version']['parity']}"
    )
    return 0


def _device_rollback(args: argparse.Namespace) -> int:
    from edge_runtime.activation import run_reload

    _logging()
    store = _store(args)
    activation = store.rollback("requested")
    result = {**asdict(activation), "reloaded": False}
    if args.reload:
        run_reload(args.reload)
        result["reloaded"] = True
    line = f"rolled back to {activation.version.version} (removed {activation.previous.version})"
    _print(args, result, line)
    return 0


def _device_status(args: argparse.Namespace) -> int:
    from edge_runtime.profiles import detect_profile, read_host

    store = _store(args)
    status = store.status().to_json()
    try:
        status["profile"] = detect_profile(read_host()).name
    except RnnedgeError as exc:
        status["profile"] = f"unsupported: {exc}"
    lines = [f"root: {status['root']}", f"profile: {status['profile']}"]
    for entry in reversed(status["versions"]):
        mark = "current " if entry == status["current"] else ("previous" if entry == status["previous"] else "        ")
        lines.append(f"{mark} {entry['version']}  activated {entry['activated']}  {entry['parity']}")
    if not status["versions"]:
        lines.append("no active bundle")
    if status["probation"]:
        lines.append(f"probation pending for {status['probation']['version']}")
    _print(args, status, "\n".join(lines))
    return 0


def _device_confirm(args: argparse.Namespace) -> int:
    from edge_runtime.activation import confirm

    store = _store(args)
    digest = args.digest or store.current().digest
    confirm(store.root, digest)
    verdict = store.settle_probation()
    _print(args, {"confirmed": digest, "probation": verdict}, f"confirmed {digest[:12]}")
    return 0


def _device_check(args: argparse.Namespace) -> int:
    _logging()
    store = _store(args)
    verdict = store.settle_probation()
    if verdict == "rolled back" and args.reload:
        from edge_runtime.activation import run_reload

        run_reload(args.reload)
    _print(args, {"probation": verdict}, f"probation: {verdict or 'none pending'}")
    return 0


def _device_profile(args: argparse.Namespace) -> int:
    from edge_runtime.profiles import PROFILES, detect_profile, read_host

    if args.list:
        profiles = [asdict(p) for p in PROFILES]
        _print(args, {"profiles": profiles}, "\n".join(f"{p['name']:16} {p['title']}" for p in profiles))
        return 0
    host = read_host()
    profile = detect_profile(host)
    result = {"host": asdict(host), "profile": asdict(profile)}
    line = (
        f"{profile.name}: {profile.title} ({host.model or host.machine}); backend = {profile.backend!r}, "
        f"threads = {profile.threads}, precision = {profile.precision!r}"
    )
    _print(args, result, line)
    return 0


# --- from the workstation --------------------------------------------------------------------------------------


def _ssh(args: argparse.Namespace) -> tuple[SshTarget, SshOptions]:
    from edge_runtime.deploy_ssh import SshOptions, SshTarget

    target = SshTarget.parse(args.to)
    options = SshOptions(Path(args.identity) if args.identity else None, tuple(args.ssh_option), args.remote_rnnedge)
    return target, options


def _deploy_mqtt(args: argparse.Namespace) -> int:
    from edge_runtime.mqtt_deploy import deploy_over_mqtt, split_target

    ssh_only = {
        "--identity": args.identity,
        "--ssh-option": args.ssh_option,
        "--device-config": args.device_config,
        "--verify-key": args.verify_key,
        "--reload": args.reload,
        "--probation": args.probation,
        "--keep": args.keep is not None,
    }
    given = [flag for flag, value in ssh_only.items() if value]
    if given:
        raise RnnedgeError(f"{', '.join(given)}: only for ssh:// deploys (over MQTT, the device's own config decides)")
    broker, prefix = split_target(args.to)
    result = deploy_over_mqtt(Path(args.bundle), broker, prefix, args.timeout)
    verb = "deployed" if result["changed"] else "already active:"
    previous = result["previous"][:12] if result["previous"] else "none"
    _print(args, result, f"{verb} {result['version']} to {prefix} over MQTT (previous: {previous}); {result['parity']}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from edge_runtime.deploy_ssh import deploy

    _logging()
    _check_seconds("--timeout", args.timeout)
    _check_seconds("--probation", args.probation, zero_means="no probation")
    if args.to.startswith(("mqtt://", "mqtts://")):
        return _deploy_mqtt(args)
    target, options = _ssh(args)
    result = deploy(
        Path(args.bundle),
        target,
        options,
        config=args.device_config,
        verify_key=args.verify_key,
        reload=args.reload,
        probation_s=args.probation,
        keep=args.keep,
    )
    version = result["version"]
    verb = "deployed" if result["changed"] else "already active:"
    probation = f"; probation {result['probation']}" if result["probation"] else ""
    line = (
        f"{verb} {version['version']} to {target.label}:{target.root} "
        f"(previous: {_version_line(result['previous'])}); {version['parity']}{probation}"
    )
    _print(args, result, line)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from edge_runtime.deploy_ssh import rollback

    _logging()
    target, options = _ssh(args)
    result = rollback(target, options, config=args.device_config, verify_key=args.verify_key, reload=args.reload)
    line = f"rolled back {target.label} to {result['version']['version']} (removed {result['previous']['version']})"
    _print(args, result, line)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from edge_runtime.bench import bench_bundle
    from edge_runtime.bundle import load_bundle

    try:
        batches = tuple(int(b) for b in args.batches.split(","))
    except ValueError:
        raise RnnedgeError(f"--batches {args.batches!r} is not a comma-separated list of integers") from None
    bundle = load_bundle(args.bundle, Path(args.verify_key) if args.verify_key else None)
    report = bench_bundle(bundle, batches, args.seconds, args.threads)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0 if all(r.status != "error" for r in report.results) else 1


# --- registration ----------------------------------------------------------------------------------------------


def _device_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help=f"the bundle store (default: {DEFAULT_ROOT})")
    parser.add_argument(
        "--config",
        metavar="TOML",
        help=f"device config whose verify_key is trusted (default: {DEVICE_CONFIG} if present)",
    )
    parser.add_argument("--verify-key", metavar="PUB", help="trust this ed25519 public key (overrides the config's)")
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"versions kept (default: {DEFAULT_KEEP})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _reload_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reload",
        metavar="CMD",
        help="command that makes the runtime load current, e.g. 'sudo systemctl reload-or-restart rnnedge'",
    )


def _add_device_commands(commands: argparse._SubParsersAction) -> None:
    device = commands.add_parser(
        "device", help="on a device: activate, roll back and inspect bundles (devices/README.md)"
    )
    actions = device.add_subparsers(dest="action", required=True, metavar="ACTION")

    activate = actions.add_parser("activate", help="verify a bundle (sha256, signature, parity) and make it current")
    activate.add_argument("source", help="bundle directory, or - for a tar stream on stdin (what deploy sends)")
    _device_target(activate)
    _reload_option(activate)
    activate.add_argument(
        "--probation",
        type=float,
        default=0.0,
        metavar="S",
        help="roll back unless the runtime confirms a published forecast within S seconds (default: off)",
    )
    activate.add_argument(
        "--no-wait",
        action="store_true",
        help="with --probation: return at once; 'rnnedge device check' (the systemd timer) decides later",
    )
    activate.set_defaults(handler=_device_activate)

    rollback = actions.add_parser("rollback", help="make the previous version current again")
    _device_target(rollback)
    _reload_option(rollback)
    rollback.set_defaults(handler=_device_rollback)

    status = actions.add_parser("status", help="current, previous and kept versions, pending probation, profile")
    _device_target(status)
    status.set_defaults(handler=_device_status)

    confirm = actions.add_parser("confirm", help="mark the running bundle healthy (what the runtime does itself)")
    confirm.add_argument("--digest", help="the bundle digest to confirm (default: the current one)")
    _device_target(confirm)
    confirm.set_defaults(handler=_device_confirm)

    check = actions.add_parser("check", help="roll back a version whose probation expired unconfirmed (for systemd)")
    _device_target(check)
    _reload_option(check)
    check.set_defaults(handler=_device_check)

    profile = actions.add_parser("profile", help="detect this board's profile (refuses a 32-bit OS, with the reason)")
    profile.add_argument("--list", action="store_true", help="list every known profile")
    profile.add_argument("--json", action="store_true", help="print the result as JSON")
    profile.set_defaults(handler=_device_profile)


def _add_remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="ssh://[user@]host[:port]/BUNDLE_ROOT on the device, or (deploy only) mqtt[s]://BROKER[:port]/TOPIC_PREFIX",
    )
    parser.add_argument("--identity", "-i", metavar="KEY", help="ssh private key (default: the ssh client's)")
    parser.add_argument(
        "--ssh-option", "-o", action="append", default=[], metavar="KEY=VALUE", help="extra ssh -o option (repeatable)"
    )
    parser.add_argument(
        "--remote-rnnedge",
        default=DEFAULT_REMOTE_RNNEDGE,
        metavar="CMD",
        help=f"rnnedge on the device (default: {DEFAULT_REMOTE_RNNEDGE})",
    )
    parser.add_argument("--device-config", metavar="TOML", help="device config path on the device (default: its own)")
    parser.add_argument(
        "--verify-key", metavar="PUB", help="trusted ed25519 public key, a path ON THE DEVICE (default: its config's)"
    )
    _reload_option(parser)
    parser.add_argument("--json", action="store_true", help="print the device's result as JSON")


def add_device_commands(commands: argparse._SubParsersAction) -> None:
    deploy = commands.add_parser(
        "deploy", help="ship a bundle over ssh; the device verifies, runs parity, activates (devices/README.md)"
    )
    deploy.add_argument("bundle", help="bundle directory")
    _add_remote_options(deploy)
    deploy.add_argument(
        "--probation",
        type=float,
        default=0.0,
        metavar="S",
        help="roll back unless the runtime confirms a published forecast within S seconds (default: off)",
    )
    deploy.add_argument("--keep", type=int, metavar="N", help=f"versions kept on the device (default: {DEFAULT_KEEP})")
    deploy.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="mqtt://: wait S seconds for the verdict (default: 60)"
    )
    deploy.set_defaults(handler=_deploy)

    rollback = commands.add_parser("rollback", help="over ssh: make the device's previous bundle current again")
    _add_remote_options(rollback)
    rollback.set_defaults(handler=_rollback)

    _add_device_commands(commands)

    bench = commands.add_parser("bench", help="load time, latency p50/p99 per batch size and peak RSS per artifact")
    bench.add_argument("bundle")
    bench.add_argument("--batches", default="1,16,256", help="batch sizes (streams per call), default 1,16,256")
    bench.add_argument("--seconds", type=float, default=0.5, help="timing budget per batch size (default: 0.5)")
    bench.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1, as the runtime)")
    bench.add_argument("--verify-key", metavar="PUB", help="refuse the bundle unless signed by this ed25519 public key")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.set_defaults(handler=_bench)
