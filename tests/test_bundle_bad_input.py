"""Bad bundles, manifests and device/bench/deploy options give one line naming the problem, exit 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedBundle, copy_bundle

from edge_runtime.cli import main


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnedge: error: ")
    return lines[0]


def rehash(bundle: Path) -> None:
    """Re-seal the manifest's sha256 entries over the files as they now are, as a careless re-signer would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"garbage\n", "golden.npz: not a golden-vector file (not an npz archive)"),
        ({"inputs": np.zeros(3)}, "golden.npz: golden array 'inputs' has shape (3,) float64"),
        ({"inputs": np.zeros((2, 32, 1), np.float32)}, "golden.npz: golden array 'forecast' is missing"),
    ],
    ids=["not-npz", "wrong-shape", "missing-array"],
)
def test_parity_refuses_rehashed_garbage_golden_vectors(
    tiny_bundle: TrainedBundle, tmp_path: Path, capsys, content: bytes | dict, expected: str
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    if isinstance(content, bytes):
        (bundle / "golden.npz").write_bytes(content)
    else:
        with (bundle / "golden.npz").open("wb") as handle:
            np.savez(handle, **content)
    rehash(bundle)
    assert expected in one_line_error(capsys, ["parity", str(bundle)])
