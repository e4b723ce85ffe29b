"""The bundle store on a device: verified activation, atomic swap, rollback, probation, and kills at any point."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedBundle, write_rows
from test_devices_common import bundle_variant, rnnedge, rnnedge_command

from edge_runtime.activation import BundleStore, confirm_running
from edge_runtime.bundle import Bundle, load_bundle, write_bundle
from edge_runtime.errors import RnnedgeError
from edge_runtime.signing import generate_keypair, load_private_key, sign_manifest


@pytest.fixture(scope="module")
def variants(tiny_bundle: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> list[Bundle]:
    root = tmp_path_factory.mktemp("variants")
    return [bundle_variant(tiny_bundle.bundle_dir, root / f"v{i}", f"v{i}") for i in range(4)]


def names(*bundles: Bundle) -> list[str]:
    return [b.digest[:12] for b in bundles]


def version_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock")


def test_activation_swaps_current_keeps_versions_and_rolls_back(variants: list[Bundle], tmp_path: Path) -> None:
    v0, v1, v2, v3 = variants
    root = tmp_path / "bundles"
    store = BundleStore(root, None, keep=3)
    first = store.activate(v0.path)
    assert first.changed and first.previous is None
    assert first.version.digest == v0.digest and "parity passed" in first.version.parity
    assert os.readlink(root / "current") == names(v0)[0]
    assert not (root / "previous").exists()

    second = store.activate(v1.path)
    assert (second.version.version, second.previous.version) == tuple(names(v1, v0))
    assert (os.readlink(root / "current"), os.readlink(root / "previous")) == tuple(names(v1, v0))
    assert load_bundle(root / "current").digest == v1.digest
    assert store.activate(v1.path).changed is False  # the same bundle again: nothing to do

    store.activate(v2.path)
    store.activate(v3.path)
    assert [v.version for v in store.status().versions] == names(v1, v2, v3)  # keep=3: v0 pruned
    assert version_dirs(root) == sorted(names(v1, v2, v3))

    back = store.rollback()
    assert (back.version.version, back.previous.version) == tuple(names(v2, v3))
    assert (os.readlink(root / "current"), os.readlink(root / "previous")) == tuple(names(v2, v1))
    assert version_dirs(root) == sorted(names(v1, v2))  # the rolled-back version is removed
    assert store.rollback().version.version == names(v1)[0]
    assert not (root / "previous").exists()
    with pytest.raises(RnnedgeError, match="no intact earlier version to roll back to"):
        store.rollback()
    assert load_bundle(root / "current").digest == v1.digest
    assert leftovers(root) == []


def test_an_older_version_can_come_back(variants: list[Bundle], tmp_path: Path) -> None:
    v0, v1 = variants[:2]
    store = BundleStore(tmp_path / "bundles", None, keep=3)
    for bundle in (v0, v1, v0):
        assert store.activate(bundle.path).changed
    assert [v.version for v in store.status().versions] == names(v1, v0)
    assert load_bundle(tmp_path / "bundles" / "current").digest == v0.digest


def test_rollback_skips_a_version_corrupted_on_disk(variants: list[Bundle], tmp_path: Path) -> None:
    v0, v1, v2 = variants[:3]
    root = tmp_path / "bundles"
    store = BundleStore(root, None, keep=3)
    for bundle in (v0, v1, v2):
        store.activate(bundle.path)
    damaged = root / names(v1)[0] / "step.onnx"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # an SD card losing a block
    restored = store.rollback()
    assert restored.version.version == names(v0)[0]
    assert version_dirs(root) == names(v0)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    fleet_private, fleet_public = generate_keypair(tmp_path / "fleet")
    other_private, _ = generate_keypair(tmp_path / "other")
    return {"fleet": fleet_private, "fleet.pub": fleet_public, "other": other_private}


def parity_breaking_copy(source: Path, destination: Path, signing_key: Path) -> None:
    """A bundle whose files and signature are fine but whose golden outputs disagree with its model."""
    bundle = bundle_variant(source, destination, "wrong-golden")
    golden_path = destination / bundle.manifest.golden.file
    golden = dict(np.load(golden_path))
    golden[bundle.manifest.step_output] = golden[bundle.manifest.step_output] + 1e-3
    np.savez(golden_path, **golden)
    write_bundle(destination, bundle.manifest)
    sign_manifest(destination, load_private_key(signing_key))


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("tampered", 2, r"file step\.onnx is corrupted"),
        ("unsigned", 2, r"the bundle is not signed \(manifest\.sig missing\) and a key is required"),
        ("other key", 2, r"signed by key [0-9a-f]+, not by the trusted key"),
        ("changed after signing", 2, r"the signature does not match manifest\.json"),
        ("parity", 1, r"parity gate on this device: parity FAILED"),
    ],
)
def test_a_refused_bundle_is_never_activated(
    tiny_bundle: TrainedBundle, keys: dict[str, Path], tmp_path: Path, case: str, status: int, reason: str
) -> None:
    root = tmp_path / "bundles"
    good = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "good", "good", keys["fleet"])
    BundleStore(root, keys["fleet.pub"], keep=3).activate(good.path)
    bad = tmp_path / "bad"
    if case == "tampered":
        bundle_variant(tiny_bundle.bundle_dir, bad, "bad", keys["fleet"])
        model = bad / "step.onnx"
        model.write_bytes(model.read_bytes().replace(b"lstm", b"LSTM", 1) + b"\0")
    elif case == "unsigned":
        bundle_variant(tiny_bundle.bundle_dir, bad, "bad")
    elif case == "other key":
        bundle_variant(tiny_bundle.bundle_dir, bad, "bad", keys["other"])
    elif case == "changed after signing":
        bundle = bundle_variant(tiny_bundle.bundle_dir, bad, "bad", keys["fleet"])
        write_bundle(bad, replace(bundle.manifest, warmup_steps=1))
    else:
        parity_breaking_copy(tiny_bundle.bundle_dir, bad, keys["fleet"])

    result = rnnedge(
        tmp_path, "device", "activate", str(bad), "--root", str(root), "--verify-key", str(keys["fleet.pub"])
    )
    assert result.returncode == status, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rnnedge: error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert re.search(reason, errors[0]), errors[0]
    assert load_bundle(root / "current", keys["fleet.pub"]).digest == good.digest
    assert version_dirs(root) == names(good) and leftovers(root) == []


def test_uploads_with_paths_or_links_are_refused_before_extraction(variants: list[Bundle], tmp_path: Path) -> None:
    root = tmp_path / "device" / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    for member in ("../escaped", "sub/dir.onnx", "link"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(member)
            if member == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = 5
                archive.addfile(info, io.BytesIO(b"hello"))
        result = rnnedge(
            tmp_path, "device", "activate", "-", "--root", str(root), input=buffer.getvalue().decode("latin-1")
        )
        assert result.returncode == 2
        assert f"upload member {member!r}: a bundle holds only plain files" in result.stderr
    assert not (tmp_path / "device" / "escaped").exists()
    assert version_dirs(root) == names(variants[0]) and leftovers(root) == []


def test_the_device_config_decides_the_trusted_key_and_the_store(
    tiny_bundle: TrainedBundle, keys: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "bundles"
    unsigned = bundle_variant(tiny_bundle.bundle_dir, tmp_path / "unsigned", "u")
    config = tmp_path / "device.toml"
    config.write_text(f'bundle = "bundles/current"\nverify_key = "{keys["fleet.pub"].name}"\n')
    refused = rnnedge(tmp_path, "device", "activate", str(unsigned.path), "--root", str(root), "--config", str(config))
    assert refused.returncode == 2 and "not signed" in refused.stderr

    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('bundle = "/srv/models/current"\n')
    wrong = rnnedge(tmp_path, "device", "activate", str(unsigned.path), "--root", str(root), "--config", str(elsewhere))
    assert wrong.returncode == 2
    assert f"makes the runtime read /srv/models/current, but this activates {root}/current" in wrong.stderr
    assert not (root / "current").exists()


def test_confirm_running_touches_only_a_managed_store(variants: list[Bundle], tmp_path: Path) -> None:
    assert confirm_running(variants[0].path, variants[0].digest) is False  # a plain bundle directory
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    assert confirm_running(root / "current", variants[0].digest) is True
    assert (root / "confirmed").read_text() == variants[0].digest + "\n"


# --- probation ---------------------------------------------------------------------------------------------------

# The runtime's side of the probation, for real: `rnnedge run` on ROOT/current, then, if it published forecasts,
# confirm the digest they carry (what the runtime itself does after its first published forecast).
RUNTIME_THEN_CONFIRM = """
import json, subprocess, sys
rnnedge, root, csv, log = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
run = subprocess.run([rnnedge, "run", root + "/current", "--source", "csv:" + csv], capture_output=True, text=True)
with open(log, "a") as handle:
    handle.write(f"{run.returncode}\\n")
if run.returncode == 0 and run.stdout:
    digest = json.loads(run.stdout.splitlines()[0])["message"]["bundle"]
    subprocess.run([rnnedge, "device", "confirm", "--root", root, "--digest", digest], check=True)
"""


def runtime_reload(tmp_path: Path, root: Path, csv: Path) -> tuple[str, Path]:
    script = tmp_path / "runtime_then_confirm.py"
    script.write_text(RUNTIME_THEN_CONFIRM)
    log = tmp_path / "runs.log"
    command = [sys.executable, str(script), rnnedge_command(tmp_path)[0], str(root), str(csv), str(log)]
    return shlex.join(command), log


def test_probation_keeps_a_version_the_runtime_confirms(variants: list[Bundle], tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    reload, log = runtime_reload(tmp_path, root, write_rows(tmp_path / "rows.csv", 1200, 30))
    result = rnnedge(
        tmp_path,
        "device",
        "activate",
        str(variants[1].path),
        "--root",
        str(root),
        "--reload",
        reload,
        "--probation",
        "20",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["probation"] == "confirmed"
    assert log.read_text() == "0\n"
    assert os.readlink(root / "current") == names(variants[1])[0]
    assert not (root / "probation.json").exists()


def test_probation_rolls_back_a_runtime_that_fails_to_start(variants: list[Bundle], tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    no_value_column = tmp_path / "bad.csv"
    no_value_column.write_text("timestamp,temperature\n2014-01-01 00:00:00,1.0\n")
    reload, log = runtime_reload(tmp_path, root, no_value_column)
    started = time.monotonic()
    result = rnnedge(
        tmp_path,
        "device",
        "activate",
        str(variants[1].path),
        "--root",
        str(root),
        "--reload",
        reload,
        "--probation",
        "1.5",
    )
    assert time.monotonic() - started >= 1.5
    assert result.returncode == 1
    v0, v1 = names(*variants[:2])
    assert f"rnnedge: error: {v1} published no confirmed forecast within 1.5 s: rolled back to {v0}" in result.stderr
    assert os.readlink(root / "current") == v0
    assert log.read_text() == "2\n2\n"  # the runtime failed on v1, then was reloaded on v0 (same bad input here)
    assert not (root / "probation.json").exists() and version_dirs(root) == [v0]


def test_probation_rolls_back_a_version_that_never_confirms(variants: list[Bundle], tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    reloads = tmp_path / "reloads.log"
    reload = shlex.join(["sh", "-c", f"readlink {root}/current >> {reloads}"])
    result = rnnedge(
        tmp_path,
        "device",
        "activate",
        str(variants[1].path),
        "--root",
        str(root),
        "--reload",
        reload,
        "--probation",
        "1",
    )
    assert result.returncode == 1
    assert reloads.read_text().split() == names(variants[1], variants[0])  # reloaded onto v1, then back onto v0
    assert os.readlink(root / "current") == names(variants[0])[0]


def test_probation_without_waiting_is_decided_by_device_check(variants: list[Bundle], tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    started = rnnedge(
        tmp_path, "device", "activate", str(variants[1].path), "--root", str(root), "--probation", "1", "--no-wait"
    )
    assert started.returncode == 0, started.stderr
    pending = rnnedge(tmp_path, "device", "check", "--root", str(root), "--json")
    status = json.loads(rnnedge(tmp_path, "device", "status", "--root", str(root), "--json").stdout)
    assert json.loads(pending.stdout) == {"probation": "pending"}
    assert status["probation"]["version"] == names(variants[1])[0]
    time.sleep(1.0)
    decided = rnnedge(tmp_path, "device", "check", "--root", str(root), "--json")
    assert json.loads(decided.stdout) == {"probation": "rolled back"}
    assert os.readlink(root / "current") == names(variants[0])[0]
    assert json.loads(rnnedge(tmp_path, "device", "check", "--root", str(root), "--json").stdout) == {"probation": None}


def test_a_failing_reload_rolls_back(variants: list[Bundle], tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(variants[0].path)
    result = rnnedge(tmp_path, "device", "activate", str(variants[1].path), "--root", str(root), "--reload", "false")
    assert result.returncode == 2
    v0 = names(variants[0])[0]
    assert result.stderr.splitlines()[-1] == (
        f"rnnedge: error: reload command 'false' exited 1: no output; rolled back to {v0}"
    )
    assert os.readlink(root / "current") == v0


# --- killed at any point -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_activation_killed_at_random_points_always_leaves_a_complete_current(
    tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    """30 activations killed with SIGKILL: early (staging, verifying), right after the parity gate (the install:
    rename, symlink swap, history, pruning), or not at all. `current` must always load as a complete bundle."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    versions = [bundle_variant(tiny_bundle.bundle_dir, tmp_path / f"k{i}", f"k{i}") for i in range(31)]
    known = {v.digest: i for i, v in enumerate(versions)}
    root = tmp_path / "bundles"
    BundleStore(root, None, keep=3).activate(versions[0].path)
    outcomes: Counter[str] = Counter()
    for i in range(1, 31):
        process = subprocess.Popen(
            [*rnnedge_command(tmp_path), "device", "activate", str(versions[i].path), "--root", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        marker = rng.choice(("start", "verified", "parity passed", "parity passed"))
        if marker != "start":
            for line in process.stderr:
                if marker in line:
                    break
        time.sleep(rng.uniform(0, 0.5) if marker == "start" else rng.uniform(0, 0.004))
        process.kill()
        process.wait()
        process.stderr.close()
        current = load_bundle(root / "current")  # complete, every file present with its sha256
        assert current.digest in known, f"seed {seed}: current is not a known bundle"
        outcomes["new" if known[current.digest] == i else "old"] += 1
    assert outcomes["old"] > 0, f"seed {seed}: no kill landed before the swap: {outcomes}"
    final = BundleStore(root, None, keep=3).activate(versions[0].path)  # recovers from whatever was left
    assert final.version.digest == versions[0].digest
    status = BundleStore(root, None, keep=3).status()
    assert status.current.version == os.readlink(root / "current")
    assert len(version_dirs(root)) <= 3 and leftovers(root) == []
    print(f"kill outcomes (seed {seed}): {dict(outcomes)}")
