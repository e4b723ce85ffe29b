"""Helpers shared by the tests/test_devices_* files (this module holds no tests itself)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from edge_runtime.bundle import Bundle, load_bundle, write_bundle
from edge_runtime.signing import load_private_key, sign_manifest

# The full `rnnedge` command with the device commands registered, whether or not edge_runtime/cli.py already
# registers them itself (then this changes nothing). It is what the ssh tests run "on the device" too.
_WRAPPER = """\
import argparse
import sys

from edge_runtime import cli
from edge_runtime.device_cli import add_device_commands

_build = cli.build_parser


def build_parser():
    parser = _build()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "device" not in commands.choices:
        add_device_commands(commands)
    return parser


cli.build_parser = build_parser
sys.exit(cli.main())
"""


def rnnedge_command(directory: Path) -> list[str]:
    """argv prefix that runs `rnnedge ...` with the device commands, in a fresh process."""
    script = directory / "rnnedge-with-devices"
    if not script.exists():
        script.write_text(f"#!{sys.executable}\n{_WRAPPER}")
        script.chmod(0o755)
    return [str(script)]


def rnnedge(directory: Path, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*rnnedge_command(directory), *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def bundle_variant(source: Path, destination: Path, tag: str, signing_key: Path | None = None) -> Bundle:
    """A copy of a bundle re-sealed with another provenance: same model, different digest (a new version)."""
    shutil.copytree(source, destination)
    (destination / "manifest.sig").unlink(missing_ok=True)
    manifest = load_bundle(destination).manifest
    bundle = write_bundle(destination, replace(manifest, provenance={**manifest.provenance, "variant": tag}))
    if signing_key:
        sign_manifest(destination, load_private_key(signing_key))
    return bundle
