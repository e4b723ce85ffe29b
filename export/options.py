"""What `rnnedge export` is asked to do, checked before anything heavy is imported: a mistake in the options, the
run directory or the output directory is one line, with no TensorFlow start-up notices before it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.bundle import FORMATS, MANIFEST_NAME, PRECISIONS
from edge_runtime.errors import RnnedgeError
from edge_runtime.signing import load_private_key

DEFAULT_OPSET = 15
SUPPORTED_OPSETS = range(11, 19)  # tf2onnx 1.17 refuses 19 and later


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = ("onnx", "tflite", "numpy")
    precisions: tuple[str, ...] = ("float32", "int8")
    window_model: bool = False
    opset: int = DEFAULT_OPSET
    signing_key: Path | None = None

    def check_task(self, task: str) -> None:
        """Refuse what this run (`RunConfig.task`) cannot be exported as."""
        if self.window_model and task == "classify":
            raise RnnedgeError("--window-model is for forecasters: a classifier's window model is not exported")

    def validate(self) -> None:
        for name in self.formats:
            if name not in FORMATS:
                raise RnnedgeError(f"unknown format {name!r} (supported: {', '.join(FORMATS)})")
        for name in self.precisions:
            if name not in PRECISIONS:
                raise RnnedgeError(f"unknown precision {name!r} (supported: {', '.join(PRECISIONS)})")
        if not self.formats or not self.precisions:
            raise RnnedgeError("choose at least one format and one precision")
        if self.opset not in SUPPORTED_OPSETS:
            raise RnnedgeError(
                f"ONNX opset {self.opset} is not supported "
                f"(supported: {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1})"
            )
        if self.signing_key is not None:
            if self.signing_key.is_dir():
                raise RnnedgeError(f"{self.signing_key} is a directory, not a key file (from 'rnnedge keygen')")
            if not self.signing_key.is_file():
                raise RnnedgeError(f"{self.signing_key}: no such key file (make one with 'rnnedge keygen')")
            load_private_key(self.signing_key)  # a public key or any other file: refused before TensorFlow starts


def check_output(out: Path) -> None:
    """Export only into a new or empty directory, or over an earlier bundle (replaced once the new one is whole)."""
    check_directory(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise RnnedgeError(f"{out} exists and is not a bundle: choose an empty or new directory")


def check_directory(path: Path, flag: str) -> None:
    """A directory to write into: refuse a file there, or a file on the way to it (making it would fail late, after
    the training or the conversion)."""
    if path.exists() and not path.is_dir():
        raise RnnedgeError(f"{flag} {path} exists and is not a directory")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RnnedgeError(f"{flag} {path}: {ancestor} is a file, not a directory")
