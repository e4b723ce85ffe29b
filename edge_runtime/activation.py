"""The bundle store on a device: verified versions side by side, one `current` symlink swapped atomically.

Layout of ROOT (/var/lib/rnnedge/bundles on a provisioned device; its config says `bundle = ROOT/current`):

    <digest12>/        one verified bundle per version (first 12 hex digits of its manifest's sha256)
    current -> <d12>   what the runtime runs; only ever replaced by rename(2), so it always names a complete,
                       verified version, whatever moment the activation is killed at
    previous -> <d12>  what `rollback` goes back to
    history.json       the activation stack, oldest first, newest (current) last
    probation.json     a pending probation: which version, until when
    confirmed          the digest the runtime last confirmed, written after its first published forecast
    .staging-*/        an upload being verified; removed on success, on failure, or by the next activation
    .lock              flock: one activation or rollback at a time

A version is activated only after `load_bundle` (sha256 of every file, ed25519 signature when the device has a
trusted key) and the parity gate with this device's own runtimes both pass. The `current` symlink is the commit
point; history.json is brought in line with it whenever the store is read, so a kill between the two is repaired.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from edge_runtime.bundle import MANIFEST_NAME, Bundle, load_bundle
from edge_runtime.errors import BundleError, ParityError, RnnedgeError

log = logging.getLogger("rnnedge.device")

MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # bundles are tens of kB; this only stops a runaway stream filling the disk
LOCK_TIMEOUT_S = 120.0
CONFIRM_POLL_S = 0.2


class ProbationFailed(RnnedgeError):
    """The activated version published no confirmed forecast in time and was rolled back; exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class Version:
    version: str  # directory name: digest[:12]
    digest: str  # sha256 of manifest.json, as in every forecast message's `bundle` field
    activated: str  # ISO-8601 UTC
    parity: str  # what the device's parity gate said


@dataclass(frozen=True)
class Activation:
    version: Version  # now current
    previous: Version | None  # what was current before
    changed: bool  # False when the upload already was the current version


@dataclass(frozen=True)
class Probation:
    version: str
    digest: str
    deadline: float  # epoch seconds (wall clock, so it survives a reboot)
    period_s: float


@dataclass(frozen=True)
class StoreStatus:
    root: str
    current: Version | None
    previous: Version | None
    versions: tuple[Version, ...]  # oldest first
    probation: Probation | None
    confirmed: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(path: Path, text: str) -> None:
    """Write beside, fsync, rename over, fsync the directory: readers see the old or the new file, never half."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def point(link: Path, target: str) -> None:
    """Make `link` a relative symlink to `target` in one rename(2)."""
    temporary = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)
    fsync_dir(link.parent)


def _copy_file(source: IO[bytes], destination: Path, budget: list[int]) -> None:
    with destination.open("xb") as out:
        for block in iter(lambda: source.read(1 << 20), b""):
            budget[0] -= len(block)
            if budget[0] < 0:
                raise BundleError(f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB: refused")
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _plain_name(name: str) -> str | None:
    """A bundle is flat: accept `name` or `./name`, nothing with a directory, nothing hidden."""
    name = name.removeprefix("./")
    if not name or name == "." or "/" in name or name.startswith("."):
        return None
    return name


def stage_directory(source: Path, staging: Path) -> None:
    """Copy the regular files of a bundle directory into `staging`, each fsynced."""
    if not source.is_dir():
        raise BundleError(f"{source}: not a bundle directory")
    budget = [MAX_UPLOAD_BYTES]
    for entry in sorted(source.iterdir()):
        if entry.is_symlink() or not entry.is_file() or _plain_name(entry.name) is None:
            raise BundleError(f"{entry}: a bundle holds only plain files (no directories, links or hidden files)")
        with entry.open("rb") as handle:
            _copy_file(handle, staging / entry.name, budget)
    fsync_dir(staging)


def stage_tar(stream: IO[bytes], staging: Path) -> None:
    """Unpack a tar stream of a flat bundle into `staging`; anything but plain files is refused, never extracted."""
    budget = [MAX_UPLOAD_BYTES]
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                if member.isdir() and member.name.strip("./") == "":
                    continue
                name = _plain_name(member.name)
                if not member.isfile() or name is None:
                    raise BundleError(f"upload member {member.name!r}: a bundle holds only plain files")
                _copy_file(archive.extractfile(member), staging / name, budget)
    except tarfile.TarError as exc:
        raise BundleError(f"the upload is not a readable tar stream ({exc})") from None
    except FileExistsError as exc:
        raise BundleError(f"upload member {Path(exc.filename).name!r} appears twice") from None
    fsync_dir(staging)


def run_reload(command: str) -> None:
    """Tell the runtime to pick up `current` (e.g. `sudo systemctl reload-or-restart rnnedge`)."""
    argv = shlex.split(command)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RnnedgeError(f"reload command {command!r} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RnnedgeError(f"reload command {command!r} exited {done.returncode}: {tail[0]}")
    log.info("reloaded the runtime (%s)", command)


def confirm(root: Path, digest: str) -> None:
    """Record that the runtime runs `digest` and published a forecast with it: ends its probation."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise RnnedgeError(f"{digest!r} is not a bundle digest (64 hex digits: the 'bundle' field of a forecast)")
    write_atomic(root / "confirmed", digest + "\n")


def confirm_running(bundle_path: Path, digest: str) -> bool:
    """The runtime's hook: call once after the first forecast of a run is published. Does nothing (False) when
    the bundle is not a managed `ROOT/current`; never raises, so it cannot stop a running runtime."""
    if bundle_path.name != "current" or not bundle_path.is_symlink():
        return False
    try:
        confirm(bundle_path.parent, digest)
    except (OSError, RnnedgeError) as exc:
        log.warning("could not confirm bundle %s in %s: %s", digest[:12], bundle_path.parent, exc)
        return False
    return True


class BundleStore:
    def __init__(self, root: Path, trusted_key: Path | None, keep: int) -> None:
        if keep < 2:
            raise RnnedgeError(f"--keep must be at least 2 (the active version and one to roll back to), got {keep}")
        self.root = root
        self.trusted_key = trusted_key
        self.keep = keep

    # --- reading -------------------------------------------------------------------------------------------

    def _link(self, name: str) -> str | None:
        try:
            return os.readlink(self.root / name)
        except OSError:
            return None

    def _history(self) -> list[Version]:
        try:
            doc = json.loads((self.root / "history.json").read_text(encoding="utf-8"))
            return [Version(**entry) for entry in doc["versions"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s/history.json unreadable (%s): rebuilt from the current link", self.root, exc)
            return []

    def _versions(self) -> list[Version]:
        """The activation stack, repaired so that its last entry is what `current` points to."""
        versions = [v for v in self._history() if (self.root / v.version / MANIFEST_NAME).is_file()]
        current = self._link("current")
        if current and (not versions or versions[-1].version != current):
            raw = (self.root / current / MANIFEST_NAME).read_bytes()
            versions = [v for v in versions if v.version != current]
            repaired = "history repaired after an interrupted activation"
            versions.append(Version(current, hashlib.sha256(raw).hexdigest(), _now_iso(), repaired))
        return versions

    def _probation(self) -> Probation | None:
        try:
            return Probation(**json.loads((self.root / "probation.json").read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("%s/probation.json unreadable (%s): ignored", self.root, exc)
            return None

    def confirmed(self) -> str | None:
        try:
            return (self.root / "confirmed").read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def status(self) -> StoreStatus:
        versions = self._versions()
        return StoreStatus(
            str(self.root),
            versions[-1] if versions else None,
            versions[-2] if len(versions) > 1 else None,
            tuple(versions),
            self._probation(),
            self.confirmed(),
        )

    def current(self) -> Bundle:
        """The active bundle, verified (what the runtime will load)."""
        if self._link("current") is None:
            raise RnnedgeError(f"{self.root}: no active bundle (deploy one first)")
        return load_bundle(self.root / "current", self.trusted_key)

    # --- writing (under the lock) --------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RnnedgeError(f"{self.root}: another activation holds the lock") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write_history(self, versions: list[Version]) -> None:
        write_atomic(self.root / "history.json", json.dumps({"versions": [asdict(v) for v in versions]}, indent=2))

    def _point_previous(self, versions: list[Version]) -> None:
        if len(versions) > 1:
            point(self.root / "previous", versions[-2].version)
        elif (self.root / "previous").is_symlink():
            (self.root / "previous").unlink()
            fsync_dir(self.root)

    def _prune(self, versions: list[Version]) -> list[Version]:
        """Keep the newest `keep` versions; remove older ones, rolled-back ones and leftovers of killed runs.
        Runs under the lock, so any staging directory or temporary link found here belongs to a dead process."""
        kept = versions[-self.keep :]
        self._write_history(kept)
        names = {v.version for v in kept}
        for entry in self.root.iterdir():
            if entry.name.startswith((".staging-", ".trash-")):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(_LOCKED_TEMPORARIES):
                entry.unlink(missing_ok=True)
            elif _is_version_name(entry.name) and entry.name not in names and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
        return kept

    def _clear_probation(self) -> None:
        (self.root / "probation.json").unlink(missing_ok=True)

    def activate(self, upload: Path | IO[bytes], probation_s: float = 0.0) -> Activation:
        """Verify an upload (a bundle directory, or a tar stream of one) and make it current. Raises BundleError
        (bad files or signature) or ParityError (gate failed), and then nothing has changed."""
        with self._locked():
            self._prune(self._versions())  # clears what a killed activation left behind
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
            os.chmod(staging, 0o755)
            try:
                if isinstance(upload, Path):
                    stage_directory(upload, staging)
                else:
                    stage_tar(upload, staging)
                try:
                    bundle = load_bundle(staging, self.trusted_key)
                except BundleError as exc:  # name what the user sent, not the private staging directory
                    label = str(upload) if isinstance(upload, Path) else "the upload"
                    raise BundleError(str(exc).replace(str(staging), label)) from None
                checked = "sha256 and signature" if self.trusted_key else "sha256 (no trusted key configured)"
                log.info("verified %s of %d files of %s", checked, len(bundle.manifest.files), bundle.digest[:12])
                parity = _parity_gate(bundle)
                return self._install(staging, bundle, parity, probation_s)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _install(self, staging: Path, bundle: Bundle, parity: str, probation_s: float) -> Activation:
        versions = self._versions()
        previous = versions[-1] if versions else None
        name = bundle.digest[:12]
        if previous and previous.version == name:
            log.info("%s is already the active version", name)
            return Activation(previous, versions[-2] if len(versions) > 1 else None, changed=False)
        target = self.root / name
        if target.exists():  # an older version coming back: take the copy just verified, not the old one
            os.rename(target, self.root / f".trash-{name}")
        os.rename(staging, target)
        fsync_dir(self.root)
        activated = Version(name, bundle.digest, _now_iso(), parity)
        if probation_s > 0:  # written before the swap; a probation naming a version that never became current
            probation = Probation(name, bundle.digest, time.time() + probation_s, probation_s)  # is ignored
            write_atomic(self.root / "probation.json", json.dumps(asdict(probation)))
        else:
            self._clear_probation()
        point(self.root / "current", name)  # the commit point
        log.info("activated %s (previous: %s)", name, previous.version if previous else "none")
        versions = [v for v in versions if v.version != name] + [activated]
        self._point_previous(versions)
        self._prune(versions)
        return Activation(activated, previous, changed=True)

    def rollback(self, reason: str = "requested") -> Activation:
        """Make the version before the current one current again (the rolled-back one is removed)."""
        with self._locked():
            return self._rollback(reason)

    def _rollback(self, reason: str) -> Activation:
        versions = self._versions()
        if not versions:
            raise RnnedgeError(f"{self.root}: no active bundle, nothing to roll back")
        rolled_back, older = versions[-1], versions[:-1]
        while older:
            try:
                load_bundle(self.root / older[-1].version, self.trusted_key)
                break
            except BundleError as exc:
                log.warning("cannot roll back to %s: %s", older[-1].version, exc)
                older.pop()
        if not older:
            raise RnnedgeError(
                f"{self.root}: no intact earlier version to roll back to; {rolled_back.version} stays active"
            )
        restored = older[-1]
        point(self.root / "current", restored.version)
        log.warning("rolled back from %s to %s (%s)", rolled_back.version, restored.version, reason)
        self._clear_probation()
        self._point_previous(older)
        self._prune(older)
        return Activation(restored, rolled_back, changed=True)

    def settle_probation(self) -> str | None:
        """Decide a pending probation: "confirmed", "pending", "rolled back", or None when there is none.
        `rnnedge device check` (the unit's ExecStartPre and its timer) and a waiting activation call this."""
        with self._locked():
            probation = self._probation()
            if probation is None:
                return None
            if self._link("current") != probation.version:
                self._clear_probation()  # its activation never completed, or a later one superseded it
                return None
            if self.confirmed() == probation.digest:
                self._clear_probation()
                log.info("%s confirmed by the runtime: probation passed", probation.version)
                return "confirmed"
            if time.time() < probation.deadline:
                return "pending"
            reason = f"probation: no confirmed forecast from {probation.version} within {probation.period_s:g} s"
            try:
                self._rollback(reason)
            except RnnedgeError as exc:  # nothing to go back to: keep running what there is
                self._clear_probation()
                log.error("%s; %s", reason, exc)
                return "failed, kept"
            return "rolled back"

    def wait_for_probation(self) -> str | None:
        """Block until the pending probation is confirmed or decided."""
        while (verdict := self.settle_probation()) == "pending":
            time.sleep(CONFIRM_POLL_S)
        return verdict


_LOCKED_TEMPORARIES = tuple(f".{name}.tmp-" for name in ("current", "previous", "history.json", "probation.json"))


def _is_version_name(name: str) -> bool:
    return len(name) == 12 and all(c in "0123456789abcdef" for c in name)


def _parity_gate(bundle: Bundle) -> str:
    """Run the parity gate with this device's runtimes; refuse the bundle if any artifact fails."""
    from edge_runtime.parity import check_bundle

    report = check_bundle(bundle)
    if not report.passed:
        raise ParityError(f"parity gate on this device: {report.summary()}")
    skipped = [r.label for r in report.results if r.status == "skipped"]
    summary = report.summary() + (f" ({len(skipped)} skipped: runtime not installed)" if skipped else "")
    log.info("%s", summary)
    return summary
