"""Authenticity: bundles signed at export are verified by the runtime; tampered or unsigned ones are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import RNNEDGE, TrainedBundle, copy_bundle, write_rows
from cryptography.exceptions import InvalidSignature

from edge_runtime.bundle import load_bundle
from edge_runtime.errors import BundleError, RnnedgeError
from edge_runtime.signing import generate_keypair, load_private_key, load_public_key, sign_manifest


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "fleet")


@pytest.fixture
def signed(tiny_bundle: TrainedBundle, keys: tuple[Path, Path], tmp_path: Path) -> Path:
    directory = copy_bundle(tiny_bundle, tmp_path / "signed")
    sign_manifest(directory, load_private_key(keys[0]))
    return directory


def test_keygen_writes_a_private_key_only_its_owner_can_read(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert os.stat(private).st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    with pytest.raises(RnnedgeError, match="already exists"):
        generate_keypair(private.with_suffix(""))


def test_signed_bundle_loads_with_the_trusted_key(signed: Path, keys: tuple[Path, Path]) -> None:
    bundle = load_bundle(signed, trusted_key=keys[1])
    assert bundle.manifest.cell == "lstm"


def test_tampered_manifest_is_refused(signed: Path, keys: tuple[Path, Path]) -> None:
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["model"]["warmup_steps"] = 0  # a plausible edit that would otherwise load fine
    (signed / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    load_bundle(signed)  # still a well-formed bundle: only the signature can tell
    with pytest.raises(BundleError, match="tampered after signing"):
        load_bundle(signed, trusted_key=keys[1])


def test_unsigned_bundle_is_refused_when_a_key_is_required(tiny_bundle: TrainedBundle, keys: tuple[Path, Path]) -> None:
    with pytest.raises(BundleError, match="not signed"):
        load_bundle(tiny_bundle.bundle_dir, trusted_key=keys[1])


def test_bundle_signed_by_another_key_is_refused(signed: Path, tmp_path: Path) -> None:
    _, other_public = generate_keypair(tmp_path / "other")
    with pytest.raises(BundleError, match="not by the trusted key"):
        load_bundle(signed, trusted_key=other_public)


def test_run_refuses_a_tampered_model_file_even_when_resigned_manifest_is_absent(
    signed: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Changing a model file breaks its sha256, which the signed manifest pins."""
    data = bytearray((signed / "step.onnx").read_bytes())
    data[-10] ^= 0x01
    (signed / "step.onnx").write_bytes(bytes(data))
    csv = write_rows(tmp_path / "rows.csv", 1200, 30)
    result = subprocess.run(
        [*RNNEDGE, "run", str(signed), "--source", f"csv:{csv}", "--verify-key", str(keys[1])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "file step.onnx is corrupted" in result.stderr


def test_cli_keygen_sign_and_verify(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    keygen = subprocess.run([*RNNEDGE, "keygen", str(tmp_path / "k")], capture_output=True, text=True, timeout=60)
    assert keygen.returncode == 0, keygen.stderr
    assert "key id" in keygen.stdout
    export = subprocess.run(
        [
            *RNNEDGE,
            "export",
            str(tiny_bundle.run_dir),
            "--out",
            str(tmp_path / "b"),
            "--formats",
            "onnx",
            "--precision",
            "float32",
            "--sign",
            str(tmp_path / "k.key"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "b" / "manifest.sig").is_file()
    ok = subprocess.run(
        [*RNNEDGE, "parity", str(tmp_path / "b"), "--verify-key", str(tmp_path / "k.pub")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    shutil.copy(tmp_path / "b" / "manifest.json", tmp_path / "manifest.bak")
    (tmp_path / "b" / "manifest.sig").unlink()
    refused = subprocess.run(
        [*RNNEDGE, "parity", str(tmp_path / "b"), "--verify-key", str(tmp_path / "k.pub")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "the bundle is not signed" in refused.stderr


def test_keygen_appends_the_endings_to_a_dotted_stem(tmp_path: Path, capsys) -> None:
    from edge_runtime.cli import main

    assert main(["keygen", str(tmp_path / "fleet.v2")]) == 0
    assert main(["keygen", str(tmp_path / "site.key")]) == 0  # a stem given as the private key's name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.v2.key", "fleet.v2.pub", "site.key", "site.pub"]
    assert f"wrote {tmp_path / 'fleet.v2.key'} (keep secret) and {tmp_path / 'fleet.v2.pub'}" in capsys.readouterr().out
    assert is_pair(load_private_key(tmp_path / "fleet.v2.key"), load_public_key(tmp_path / "fleet.v2.pub"))


@pytest.mark.parametrize("stem", [".", "DIR", "DIR/"])
def test_keygen_refuses_a_directory_as_the_stem(tmp_path: Path, capsys, monkeypatch, stem: str) -> None:
    from edge_runtime.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "keys").mkdir()
    assert main(["keygen", stem.replace("DIR", "keys")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a directory, not a key name" in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keys"]


def test_keys_swapped_or_unreadable_are_named_in_one_short_line(keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = keys
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    for load, path, expected in (
        (load_private_key, public, f"{public}: is a public key; signing needs the private key"),
        (load_public_key, private, f"{private}: is a private key; verifying needs the public key"),
        (load_private_key, garbage, f"{garbage}: not an unencrypted PEM private key"),
        (load_public_key, tmp_path / "none.pub", f"{tmp_path / 'none.pub'}: cannot read the key (No such file"),
    ):
        with pytest.raises(RnnedgeError) as refusal:
            load(path)
        assert str(refusal.value).startswith(expected) and "\n" not in str(refusal.value)
    assert is_pair(load_private_key(private), load_public_key(public))


def is_pair(private_key, public_key) -> bool:
    """Does `public_key` verify what `private_key` signs?"""
    try:
        public_key.verify(private_key.sign(b"rnnedge"), b"rnnedge")
    except InvalidSignature:
        return False
    return True
