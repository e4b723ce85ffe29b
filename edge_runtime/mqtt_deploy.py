"""Deploys over MQTT: `rnnedge deploy BUNDLE --to mqtt://HOST[:PORT]/PREFIX` and the runtime's side of it.

The command is one QoS 1 message on `PREFIX/cmd/deploy` whose payload is the bundle itself: the tar the ssh deploy
streams (`deploy_ssh.bundle_tar`), gzip'd. MQTT payloads are binary, so there is no envelope and no base64 (a
third more bytes to send and to hold in a Pi's memory); a plain tar is accepted too. Commands over 8 MiB, packed or
unpacked, are refused (bundles are tens of kB; a small gzip can expand to gigabytes).

On the device, `DeployListener` hands each command to its own worker thread, which verifies and activates it
through the bundle store exactly as an ssh deploy does (sha256 of every file, ed25519 signature, parity gate with
the device's own runtimes, atomic swap of `current`): the streams keep running meanwhile. The runtime's main loop
calls `poll`, which switches the runtime to the new version and publishes the verdict on `PREFIX/deploy/result`
(QoS 1, not retained). A device without a trusted key refuses every deploy over MQTT: anyone who can publish to
the broker could otherwise replace its model. The result carries `request`, the sha256 of the command's payload,
so a deployer recognises the answer to its own command. docs/deploy_mqtt.md documents the protocol.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import queue
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt

from edge_runtime.activation import Activation, BundleStore
from edge_runtime.deploy_ssh import RemoteFailed, bundle_tar
from edge_runtime.errors import BundleError, RnnedgeError
from edge_runtime.mqtt_client import BrokerAddress, MqttSettings
from edge_runtime.mqtt_publisher import OFFLINE

log = logging.getLogger("rnnedge.deploy")

MAX_COMMAND_BYTES = 8 * 1024 * 1024  # the command's payload, and the tar inside it
MAX_PENDING = 2  # commands waiting behind the one being activated; more are refused (a flood must not fill memory)
GZIP_MAGIC = b"\x1f\x8b"
NO_KEY = (
    "this device trusts no signing key (verify_key in its config): deploys over MQTT are refused "
    "(anyone who can publish to the broker could replace the model); configure verify_key or deploy over ssh"
)


def command_topic(prefix: str) -> str:
    return f"{prefix}/cmd/deploy"


def result_topic(prefix: str) -> str:
    return f"{prefix}/deploy/result"


LIMIT = f"the {MAX_COMMAND_BYTES // (1024 * 1024)} MiB limit of a deploy command"


def pack_command(bundle_dir: Path) -> bytes:
    """The command's payload: the bundle's tar, as the ssh deploy sends it, gzip'd (deterministic: no mtime)."""
    payload = gzip.compress(bundle_tar(bundle_dir), mtime=0)
    if len(payload) > MAX_COMMAND_BYTES:
        raise BundleError(f"{bundle_dir}: packs to {len(payload)} bytes, over {LIMIT}")
    return payload


def unpack_command(payload: bytes) -> bytes:
    """The tar a command carries, never more than MAX_COMMAND_BYTES of it, whatever the gzip claims."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise BundleError(f"the command is {len(payload)} bytes, over {LIMIT}: refused")
    if not payload.startswith(GZIP_MAGIC):
        return payload  # a plain tar: the store says whether it is one
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(payload)) as stream:
            tar = stream.read(MAX_COMMAND_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"the command is not a readable gzip stream ({exc})") from None
    if len(tar) > MAX_COMMAND_BYTES:
        raise BundleError(f"the command unpacks to more than {LIMIT}: refused")
    return tar


def _request_id(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class _Outcome:
    request: str  # sha256 of the command's payload
    activation: Activation | None  # what the store did (also set when the runtime then could not run it)
    error: RnnedgeError | None  # why the command was refused or undone; None: the runtime runs it


def _result_message(outcome: _Outcome) -> dict[str, Any]:
    """What `PREFIX/deploy/result` says; `exit_code` is what `rnnedge device activate` would have exited with."""
    activation, error = outcome.activation, outcome.error
    return {
        "ok": error is None,
        "request": outcome.request,
        "digest": activation.version.digest if activation else None,
        "version": activation.version.version if activation else None,
        "changed": error is None and activation is not None and activation.changed,
        "previous": activation.previous.digest if activation and activation.previous else None,
        "parity": activation.version.parity if activation else None,
        "reason": str(error) if error else None,
        "exit_code": error.exit_code if error else 0,
    }


class DeployListener:
    """The runtime's end of MQTT deploys. Subscribe `on_message` to `topic`; call `poll` every loop turn; `close`
    at exit. `switch(path)` is the runtime's: make the runtime run the bundle at `path` (a version directory of the
    store), or raise if it cannot; the store is then rolled back and the deploy reported as failed."""

    def __init__(
        self,
        store: BundleStore,
        publish: Callable[[str, str, bool], object],
        prefix: str,
        switch: Callable[[Path], object],
    ) -> None:
        self.store = store
        self.publish = publish
        self.switch = switch
        self.topic = command_topic(prefix)
        self.result_topic = result_topic(prefix)
        self._commands: queue.Queue[bytes | None] = queue.Queue()
        self._done: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="rnnedge-deploy", daemon=True)
        self._worker.start()

    def on_message(self, payload: bytes) -> None:
        """Called in the runtime's main loop, while its publisher's `pump()` reads the network: hand the command to
        the worker and return at once, so forecasts and acknowledgements are not held up by an activation."""
        if self._commands.qsize() < MAX_PENDING:  # the one being activated has left the queue
            self._commands.put(payload)
        else:
            busy = RnnedgeError(f"{MAX_PENDING} deploy commands are already waiting: refused, send it again later")
            self._done.put(_Outcome(_request_id(payload), None, busy))

    # the worker thread --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while (payload := self._commands.get()) is not None:
            self._done.put(self._activate(payload))

    def _activate(self, payload: bytes) -> _Outcome:
        request = _request_id(payload)
        try:
            if self.store.trusted_key is None:
                raise BundleError(NO_KEY)
            return _Outcome(request, self.store.activate(io.BytesIO(unpack_command(payload))), None)
        except RnnedgeError as exc:
            return _Outcome(request, None, exc)
        except Exception as exc:  # a long-running runtime outlives any one bad command
            log.exception("deploy command %s failed", request[:12])
            return _Outcome(request, None, RnnedgeError(f"the activation failed: {exc}"))

    # the runtime's main thread -----------------------------------------------------------------------------
    def poll(self) -> Path | None:
        """Switch to what the worker activated and publish every verdict; returns the path now run, if any."""
        switched = None
        while True:
            try:
                outcome = self._done.get_nowait()
            except queue.Empty:
                return switched
            activation = outcome.activation
            if outcome.error is None and activation.changed:
                path = self.store.root / activation.version.version
                try:
                    self.switch(path)
                    switched = path
                except Exception as exc:  # the old engine still runs: keep it, and the store with it
                    if not isinstance(exc, RnnedgeError):
                        log.exception("the runtime could not switch to %s", activation.version.version)
                    outcome = _Outcome(outcome.request, activation, self._undo(activation, exc))
            self._report(outcome)

    def _undo(self, activation: Activation, exc: Exception) -> RnnedgeError:
        reason = f"the runtime cannot run {activation.version.version}: {exc}"
        try:
            restored = self.store.rollback(reason).version.version
        except RnnedgeError as nothing_earlier:
            return RnnedgeError(f"{reason}; {nothing_earlier}")
        return RnnedgeError(f"{reason}; rolled back to {restored}")

    def _report(self, outcome: _Outcome) -> None:
        message = _result_message(outcome)
        if message["ok"]:
            verb = "activated" if message["changed"] else "already active:"
            log.info("deploy over MQTT: %s %s; %s", verb, message["version"], message["parity"])
        else:
            log.warning("deploy over MQTT refused: %s", message["reason"])
        self.publish(self.result_topic, json.dumps(message), False)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; an activation in progress gets `timeout` s to finish (the store survives a kill
        anyway). Commands still waiting are dropped unanswered."""
        while True:
            try:
                self._commands.get_nowait()
            except queue.Empty:
                break
        self._commands.put(None)
        self._worker.join(timeout)


# --- from the workstation -------------------------------------------------------------------------------------


def split_target(url: str) -> tuple[str, str]:
    """`mqtt[s]://[user[:password]@]HOST[:PORT]/PREFIX` -> (broker URL, the device's topic prefix)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise RnnedgeError(f"--to: not a valid URL ({exc})") from None
    broker = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    address = BrokerAddress.parse(broker)  # refuses anything but mqtt(s)://HOST[:PORT], never echoing a password
    prefix = parts.path.strip("/")
    if not prefix:
        raise RnnedgeError(
            f"--to {address}: give the device's topic prefix as the path, e.g. {address}/rnnedge/pi4 "
            "(its topic_prefix; default rnnedge/<device_id>)"
        )
    # an unencoded # or ? anywhere starts a fragment or query (urlsplit drops an empty one): never a topic prefix
    if "+" in prefix or "#" in url or "?" in url:
        raise RnnedgeError(f"--to {address}/{prefix}: the topic prefix names one device (no wildcards, ? or #)")
    return broker, prefix


def deploy_over_mqtt(bundle_dir: Path, url: str, prefix: str, timeout: float) -> dict[str, Any]:
    """Send a bundle to the runtime at `prefix` and wait for its verdict: returns the result message, or raises
    RemoteFailed with the device's reason (exit status 1 parity failed, 2 refused)."""
    payload = pack_command(bundle_dir)
    request = _request_id(payload)
    settings = MqttSettings(url, password=os.environ.get("RNNEDGE_MQTT_PASSWORD"))
    address = settings.address
    status_topic = f"{prefix}/status"
    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()  # filled by paho's thread

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        events.put(("refused" if reason.is_failure else "connected", str(reason)))

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == status_topic:
            events.put(("status", message.payload.decode("utf-8", "replace")))
            return
        try:
            result = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(result, dict) and result.get("request") == request:
            events.put(("result", result))

    client = settings.client(f"rnnedge-deploy-{uuid.uuid4().hex[:12]}")
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = lambda client, userdata, mid, reasons, properties: events.put(("subscribed", mid))
    client.on_disconnect = lambda client, userdata, flags, reason, properties: events.put(("disconnected", reason))
    client.connect_timeout = min(client.connect_timeout, timeout)  # the TCP (and TLS) handshake honours --timeout
    try:
        client.connect(address.host, address.port, keepalive=settings.keepalive)
    except (OSError, ValueError) as exc:
        raise RnnedgeError(f"cannot connect to MQTT broker {address}: {exc}") from None
    client.loop_start()
    try:
        return _exchange(client, events, timeout, prefix, payload, address)
    finally:
        client.disconnect()
        client.loop_stop()


def _exchange(
    client: mqtt.Client,
    events: queue.SimpleQueue[tuple[str, Any]],
    timeout: float,
    prefix: str,
    payload: bytes,
    address: BrokerAddress,
) -> dict[str, Any]:
    """Subscribe to the device's status, then to its results, then publish: the broker delivers a retained status
    before the second subscription's acknowledgement, so an offline device is known before anything is sent."""
    deadline = time.monotonic() + timeout
    status: str | None = None
    steps = iter([f"{prefix}/status", result_topic(prefix), None])
    waiting_for: int | None = None
    connected = sent = False
    while True:
        try:
            kind, value = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            if not connected:  # the TCP connection was accepted, the MQTT handshake never finished
                raise RnnedgeError(
                    f"cannot connect to MQTT broker {address}: no MQTT answer to the connection within {timeout:g} s "
                    "(is a broker listening there, or is a proxy or firewall in between?)"
                ) from None
            raise RnnedgeError(_no_answer(prefix, address, status, sent, timeout)) from None
        if kind == "refused":
            raise RnnedgeError(f"the MQTT broker {address} refused the connection: {value}")
        if kind == "disconnected" and not connected:
            raise RnnedgeError(
                f"cannot connect to MQTT broker {address}: the connection closed before it answered ({value})"
            )
        connected = connected or kind == "connected"
        if kind == "status":
            status = value
        elif kind == "result":
            if not value.get("ok"):
                raise RemoteFailed(f"{prefix}: {value.get('reason')}", 1 if value.get("exit_code") == 1 else 2)
            return value
        elif kind == "connected" or (kind == "subscribed" and value == waiting_for):
            topic = next(steps)
            if topic is not None:
                waiting_for = client.subscribe(topic, qos=1)[1]
                continue
            if status == OFFLINE:
                raise RnnedgeError(f"{prefix} is offline (its retained {prefix}/status says so): nothing was sent")
            log.info("sending %d bytes to %s on %s", len(payload), command_topic(prefix), address)
            client.publish(command_topic(prefix), payload, qos=1)
            sent = True


def _no_answer(prefix: str, address: BrokerAddress, status: str | None, sent: bool, timeout: float) -> str:
    waited = f"no deploy result from {prefix} on {address} within {timeout:g} s"
    if not sent:
        return f"{waited}: the broker did not accept the subscriptions in time"
    if status is None:
        why = f"no runtime has published {prefix}/status there: is the prefix right (its topic_prefix)?"
    elif status == OFFLINE:
        why = f"{prefix} went offline"
    else:
        why = (
            f"{prefix} is online: does its runtime run from a bundle store (bundle = ROOT/current)? It may still "
            f"activate the bundle: watch {result_topic(prefix)} or run 'rnnedge device status' there"
        )
    return f"{waited}: {why}"
