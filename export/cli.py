"""Argument parsing for `rnnedge export` and `rnnedge keygen`; TensorFlow is imported only when export runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.errors import ParityError, require_extra


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def _export(args: argparse.Namespace) -> int:
    require_extra("export", "train", ("tensorflow", "keras", "tf2onnx", "onnx"))
    from export.options import ExportOptions, check_output
    from trainer.run_dir import RunConfig

    options = ExportOptions(
        formats=_names(args.formats),
        precisions=_names(args.precision),
        window_model=args.window_model,
        opset=args.opset,
        signing_key=Path(args.sign) if args.sign else None,
    )
    # every mistake the user can make here is found before TensorFlow is imported (and prints its notices)
    options.validate()
    options.check_task(RunConfig.load(Path(args.run_dir)).task)
    check_output(Path(args.out))
    from export.bundle_export import export_bundle

    bundle, report = export_bundle(Path(args.run_dir), Path(args.out), options)
    files = ", ".join(f"{name} ({entry.bytes} B)" for name, entry in bundle.manifest.files.items())
    print(f"wrote bundle {bundle.path} ({bundle.digest[:12]}): {files}")
    for item in bundle.manifest.unsupported:
        print(f"unsupported: {item.kind} {item.format}/{item.precision}: {item.reason}")
    print(report.markdown())
    if not report.passed:
        raise ParityError(report.summary())
    print(report.summary())
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from edge_runtime.signing import generate_keypair, key_id, load_public_key

    private_path, public_path = generate_keypair(Path(args.stem))
    print(f"wrote {private_path} (keep secret) and {public_path} (key id {key_id(load_public_key(public_path))})")
    return 0


def add_export_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="export a trained run as a bundle and check parity (needs the 'train' extra)"
    )
    export.add_argument("run_dir", help="run directory written by 'rnnedge train'")
    export.add_argument("--out", required=True, help="bundle directory to write")
    export.add_argument(
        "--formats", default="onnx,tflite,numpy", help="onnx, tflite, numpy (default: onnx,tflite,numpy)"
    )
    export.add_argument(
        "--precision", default="float32,int8", help="float32, int8, int8-static (default: float32,int8)"
    )
    export.add_argument("--window-model", action="store_true", help="also export whole-window models")
    export.add_argument("--opset", type=int, default=15, help="ONNX opset, 11-18 (default: 15)")
    export.add_argument("--sign", metavar="KEY", help="ed25519 private key (from 'rnnedge keygen') to sign with")
    export.set_defaults(handler=_export)

    keygen = commands.add_parser("keygen", help="make an ed25519 key pair for signing bundles")
    keygen.add_argument("stem", help="writes STEM.key (private) and STEM.pub (public)")
    keygen.set_defaults(handler=_keygen)
