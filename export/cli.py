"""Argument parsing for `rnnedge export`; TensorFlow is imported only when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.errors import ParityError, require_extra


def _export(args: argparse.Namespace) -> int:
    require_extra("export", "train", ("tensorflow", "keras", "tf2onnx", "onnx"))
    from edge_runtime.parity import check_float_parity
    from export.bundle_export import export_bundle

    bundle = export_bundle(Path(args.run_dir), Path(args.out), args.opset)
    files = ", ".join(f"{name} ({entry.bytes} B)" for name, entry in bundle.manifest.files.items())
    print(f"wrote bundle {bundle.path} ({bundle.digest[:12]}): {files}")
    report = check_float_parity(bundle)
    print(report.markdown())
    if not report.passed:
        raise ParityError(report.summary())
    print(report.summary())
    return 0


def add_export_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="export a trained run as a bundle and check parity (needs the 'train' extra)"
    )
    export.add_argument("run_dir", help="run directory written by 'rnnedge train'")
    export.add_argument("--out", required=True, help="bundle directory to write")
    export.add_argument("--opset", type=int, default=15, help="ONNX opset, 11-18 (default: 15)")
    export.set_defaults(handler=_export)
