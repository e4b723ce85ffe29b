"""Bundle authenticity: an ed25519 signature over the exact bytes of `manifest.json`.

The manifest pins every file by sha256, so signing it signs the bundle. The signature lives beside it in
`manifest.sig` (JSON: algorithm, key id, base64 signature). Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo
public) made by `rnnedge keygen`; the cryptography comes from the `cryptography` package, never hand-rolled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_runtime.errors import BundleError, RnnedgeError

SIGNATURE_NAME = "manifest.sig"
ALGORITHM = "ed25519"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(stem: Path) -> tuple[Path, Path]:
    """Write STEM.key (private, mode 0600) and STEM.pub; refuse to overwrite an existing key. The endings are
    appended, so a dotted stem such as `fleet.v2` keeps its name; a stem given as `fleet.key` or `fleet.pub` means
    `fleet`."""
    if stem.name in ("", ".", "..") or stem.is_dir():
        raise RnnedgeError(
            f"{stem}: a directory, not a key name: give e.g. {stem / 'fleet'} (writes fleet.key, fleet.pub)"
        )
    if stem.suffix in (".key", ".pub"):
        stem = stem.with_suffix("")
    private_path, public_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise RnnedgeError(f"{path} already exists: refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _key_bytes(path)
    if b"PUBLIC KEY-----" in data:
        raise RnnedgeError(
            f"{path}: is a public key; signing needs the private key (the .key file of 'rnnedge keygen')"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):  # cryptography's own text is several sentences and a URL
        raise RnnedgeError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RnnedgeError(f"{path}: not an ed25519 key (make one with 'rnnedge keygen')")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = _key_bytes(path)
    if b"PRIVATE KEY-----" in data:
        raise RnnedgeError(
            f"{path}: is a private key; verifying needs the public key (the .pub file of 'rnnedge keygen')"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise RnnedgeError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RnnedgeError(f"{path}: not an ed25519 public key (make one with 'rnnedge keygen')")
    return key


def _key_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RnnedgeError(f"{path}: cannot read the key ({exc.strerror})") from None


def sign_manifest(bundle_dir: Path, private_key: Ed25519PrivateKey) -> None:
    manifest = (bundle_dir / "manifest.json").read_bytes()
    document = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii"),
    }
    (bundle_dir / SIGNATURE_NAME).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def verify_manifest(bundle_dir: Path, manifest_bytes: bytes, public_key: Ed25519PublicKey) -> None:
    """Refuse, with the reason, a bundle that is unsigned, signed by another key, or changed after signing."""
    path = bundle_dir / SIGNATURE_NAME
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: the bundle is not signed ({SIGNATURE_NAME} missing) and a key is required")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        signature = base64.b64decode(document["signature"], validate=True)
        algorithm, signer = document["algorithm"], document["key_id"]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{path}: unreadable signature file") from None
    if algorithm != ALGORITHM:
        raise BundleError(f"{path}: signature algorithm {algorithm!r} is not supported (supported: {ALGORITHM})")
    if signer != key_id(public_key):
        raise BundleError(f"{bundle_dir}: signed by key {signer}, not by the trusted key {key_id(public_key)}")
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleError(
            f"{bundle_dir}: the signature does not match manifest.json (tampered after signing)"
        ) from None
