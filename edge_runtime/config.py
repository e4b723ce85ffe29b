"""`rnnedge run` settings: one TOML file (`--config device.toml`), with command-line flags overriding it.

devices/device.toml is the documented example. Unknown keys, wrong types and missing files are one-line errors
naming the key, so a typo on a device fails loudly at start instead of being silently ignored.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_runtime.anomaly import AnomalyParams
from edge_runtime.drift import DriftLimits
from edge_runtime.errors import RnnedgeError
from edge_runtime.mqtt_client import MqttSettings

BACKENDS = ("onnxruntime", "litert", "numpy")
SOURCES = ("csv", "stdin", "mqtt")


@dataclass(frozen=True)
class Subscription:
    topic: str  # an MQTT topic filter, + and # allowed
    stream: str = ""  # stream id template: "{1}" is the first wildcard level; empty: the whole topic


@dataclass(frozen=True)
class RuntimeConfig:
    bundle: Path | None = None
    backend: str = "onnxruntime"
    precision: str = "float32"
    verify_key: Path | None = None
    device_id: str = field(default_factory=lambda: socket.gethostname() or "device")
    # source
    source: str = "csv"
    path: Path | None = None  # csv
    pace: float | None = None  # csv: None as fast as possible, 1.0 real time, 10 ten times faster
    stream: str | None = None  # csv / stdin: the stream id (default: the file name / "stdin")
    time_column: str | None = None
    subscriptions: tuple[Subscription, ...] = ()
    # mqtt out (and in, for the mqtt source)
    mqtt: MqttSettings | None = None
    topic_prefix: str | None = None
    client_id: str | None = None
    # spool
    spool_path: Path | None = None
    spool_max_bytes: int = 64 * 1024 * 1024
    fsync_interval: float = 1.0
    # runtime
    gap_factor: float = 3.0
    max_streams: int = 1000
    max_payload_bytes: int = 4096
    metrics_interval: float = 10.0
    drain_timeout: float = 30.0
    max_batch: int = 1024
    # anomaly policy: defaults for all streams, then per stream (AnomalyParams fields)
    anomaly: dict[str, Any] = field(default_factory=dict)
    anomaly_streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    # drift: window and limits (DriftLimits fields)
    drift_window: int = 1000
    drift_limits: dict[str, Any] = field(default_factory=dict)
    # Home Assistant MQTT discovery (opt-in)
    home_assistant: bool = False
    discovery_prefix: str = "homeassistant"

    @property
    def prefix(self) -> str:
        return self.topic_prefix or f"rnnedge/{self.device_id}"

    @property
    def spool(self) -> Path:
        if self.spool_path:
            return self.spool_path
        state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
        return state / "rnnedge" / f"{self.mqtt_client_id}.spool"

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"rnnedge-{self.device_id}"

    def anomaly_overrides(self) -> dict[str, dict[str, Any]]:
        """Per stream: the [anomaly] defaults, then that stream's own section."""
        streams = dict.fromkeys(self.anomaly_streams, None)
        overrides = {name: {**self.anomaly, **self.anomaly_streams[name]} for name in streams}
        if self.anomaly:
            overrides["*"] = dict(self.anomaly)
        return overrides

    def check(self) -> RuntimeConfig:
        if self.bundle is None:
            raise RnnedgeError("no bundle: give BUNDLE on the command line or 'bundle' in the config file")
        if self.backend not in BACKENDS:
            raise RnnedgeError(f"backend {self.backend!r} is not supported (supported: {', '.join(BACKENDS)})")
        if self.source not in SOURCES:
            raise RnnedgeError(f"source {self.source!r} is not supported (supported: {', '.join(SOURCES)})")
        if self.source == "csv" and self.path is None:
            raise RnnedgeError("the csv source needs a file: --source csv:PATH")
        if self.mqtt is not None:
            self.mqtt.check()
        if self.source == "mqtt" and (not self.subscriptions or self.mqtt is None):
            raise RnnedgeError("the mqtt source needs a broker (--mqtt URL) and at least one subscription")
        for name in ("max_streams", "max_payload_bytes", "max_batch", "spool_max_bytes"):
            if getattr(self, name) <= 0:
                raise RnnedgeError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.metrics_interval > 0:
            raise RnnedgeError(f"metrics_interval must be above 0 seconds, got {self.metrics_interval}")
        for name in ("drain_timeout", "fsync_interval"):
            if not getattr(self, name) >= 0:
                raise RnnedgeError(f"{name} must be a number of seconds >= 0, got {getattr(self, name)}")
        prefix = self.prefix
        if not prefix or any(c in prefix for c in "+#\0") or prefix.startswith("$"):
            raise RnnedgeError(f"topic prefix {prefix!r} (from device_id or topic_prefix) must be a plain MQTT topic")
        if not self.gap_factor > 1:  # also refuses nan
            raise RnnedgeError(f"gap_factor must be above 1, got {self.gap_factor}")
        try:
            DriftLimits.from_json(self.drift_limits)
        except RnnedgeError as exc:
            raise RnnedgeError(f"[drift]: {exc}") from None
        for stream, override in self.anomaly_overrides().items():
            try:
                AnomalyParams.from_json(override)
            except RnnedgeError as exc:
                where = "[anomaly]" if stream == "*" else f"[anomaly.streams.{stream}]"
                raise RnnedgeError(f"{where}: {exc}") from None
        return self


def parse_source(spec: str) -> dict[str, Any]:
    """`csv:PATH`, `stdin`, or `mqtt:FILTER[=STREAM]` (the last may be repeated: see `parse_sources`)."""
    kind, _, rest = spec.partition(":")
    if kind == "csv":
        if not rest:
            raise RnnedgeError(f"source {spec!r}: the csv source needs a file: --source csv:PATH")
        return {"source": "csv", "path": Path(rest)}
    if kind == "stdin":
        if rest:
            raise RnnedgeError(f"source {spec!r}: the stdin source takes nothing after it: --source stdin")
        return {"source": "stdin"}
    if kind == "mqtt":
        if not rest:
            raise RnnedgeError(f"source {spec!r}: the mqtt source needs a topic filter: --source mqtt:FILTER[=STREAM]")
        topic, _, stream = rest.partition("=")
        return {"source": "mqtt", "subscriptions": (Subscription(topic, stream),)}
    raise RnnedgeError(f"source {spec!r} is not supported (supported: csv:PATH, stdin, mqtt:TOPIC_FILTER[=STREAM])")


def parse_sources(specs: list[str]) -> dict[str, Any]:
    """Several `--source` options: only MQTT subscriptions combine (one client subscribes to them all); any other
    repeat would leave one source silently unused, so it is refused."""
    values: dict[str, Any] = {}
    subscriptions: list[Subscription] = []
    for spec in specs:
        parsed = parse_source(spec)
        if values and not (values["source"] == parsed["source"] == "mqtt"):
            raise RnnedgeError(
                f"--source {specs[0]!r} and --source {spec!r} cannot be combined: one run reads one source "
                "(only mqtt: subscriptions may be repeated)"
            )
        subscriptions.extend(parsed.pop("subscriptions", ()))
        values.update(parsed)
    if subscriptions:
        values["subscriptions"] = tuple(subscriptions)
    return values


# --- the TOML file ------------------------------------------------------------------------------------------

_TOP = {"bundle": Path, "backend": str, "precision": str, "verify_key": Path, "device_id": str}
_SECTIONS: dict[str, dict[str, Any]] = {
    "source": {"kind": str, "path": Path, "pace": float, "stream": str, "time_column": str, "subscriptions": list},
    "mqtt": {
        "url": str,
        "username": str,
        "password_file": Path,
        "ca_file": Path,
        "cert_file": Path,
        "key_file": Path,
        "protocol": str,
        "topic_prefix": str,
        "client_id": str,
        "keepalive": int,
    },
    "spool": {"path": Path, "max_bytes": int, "fsync_interval": float},
    "runtime": {
        "gap_factor": float,
        "max_streams": int,
        "max_payload_bytes": int,
        "metrics_interval": float,
        "drain_timeout": float,
        "max_batch": int,
    },
    "home_assistant": {"enabled": bool, "discovery_prefix": str},
}


_KIND_NAMES = {
    Path: "a path (string)",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
}


def _typed(where: str, value: Any, kind: Any) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if kind in (str, int, bool, list) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if isinstance(value, kind) and kind is float:
        return value
    raise RnnedgeError(f"{where}: expected {_KIND_NAMES[kind]}, got {value!r}")


def _section(path: Path, doc: dict[str, Any], name: str) -> dict[str, Any]:
    raw = _table(path, doc.get(name, {}), f"[{name}]")
    known = _SECTIONS[name]
    for key in raw:
        if key not in known:
            raise RnnedgeError(f"{path}: unknown key '{key}' in [{name}] (known: {', '.join(known)})")
    return {key: _typed(f"{path}: {name}.{key}", value, known[key]) for key, value in raw.items()}


def _table(path: Path, value: Any, where: str) -> dict[str, Any]:
    """A copy of `value`, which must be a TOML table: a scalar there is a typo the later checks cannot name."""
    if not isinstance(value, dict):
        raise RnnedgeError(f"{path}: {where} must be a table, got {value!r}")
    return dict(value)


def _numbers(path: Path, table: dict[str, Any], where: str) -> dict[str, Any]:
    """`table` unchanged if every value is a number: the anomaly and drift settings are all numeric, and a quoted
    "0.5" or a boolean would otherwise be converted silently."""
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RnnedgeError(f"{path}: {where}.{key}: expected a number, got {value!r}")
    return table


def load_config(path: Path) -> dict[str, Any]:
    """Read the TOML file into RuntimeConfig fields (only those it sets)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RnnedgeError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RnnedgeError(f"{path}: not valid TOML ({exc})") from None
    allowed = set(_TOP) | set(_SECTIONS) | {"anomaly", "drift"}
    for key in doc:
        if key not in allowed:
            raise RnnedgeError(f"{path}: unknown key '{key}' (known: {', '.join(sorted(allowed))})")
    values: dict[str, Any] = {k: _typed(f"{path}: {k}", doc[k], kind) for k, kind in _TOP.items() if k in doc}
    base = path.parent
    source = _section(path, doc, "source")
    if "kind" in source:
        values["source"] = source.pop("kind")
    if "subscriptions" in source:
        subscriptions = []
        for item in source.pop("subscriptions"):
            if (
                not isinstance(item, dict)
                or "topic" not in item
                or set(item) - {"topic", "stream"}
                or not all(isinstance(v, str) for v in item.values())
            ):
                raise RnnedgeError(
                    f'{path}: each source.subscriptions entry is {{ topic = "...", stream = "..." }}, got {item!r}'
                )
            subscriptions.append(Subscription(item["topic"], item.get("stream", "")))
        values["subscriptions"] = tuple(subscriptions)
    values.update(source)
    mqtt = _section(path, doc, "mqtt")
    for key in ("topic_prefix", "client_id"):
        if key in mqtt:
            values[key] = mqtt.pop(key)
    if mqtt:
        if "url" not in mqtt:
            raise RnnedgeError(f"{path}: [mqtt] needs a url")
        password_file = mqtt.pop("password_file", None)
        password = _read_secret(base / password_file) if password_file else os.environ.get("RNNEDGE_MQTT_PASSWORD")
        files = {k: base / mqtt.pop(k) for k in ("ca_file", "cert_file", "key_file") if k in mqtt}
        values["mqtt"] = MqttSettings(password=password, **files, **mqtt)
    spool = _section(path, doc, "spool")
    values.update({f"spool_{k}" if k != "fsync_interval" else k: v for k, v in spool.items()})
    values.update(_section(path, doc, "runtime"))
    assistant = _section(path, doc, "home_assistant")
    if "enabled" in assistant:
        values["home_assistant"] = assistant.pop("enabled")
    values.update(assistant)
    drift = _table(path, doc.get("drift", {}), "[drift]")
    if "window" in drift:
        values["drift_window"] = _typed(f"{path}: drift.window", drift.pop("window"), int)
    values["drift_limits"] = _numbers(path, drift, "drift")
    anomaly = _table(path, doc.get("anomaly", {}), "[anomaly]")
    streams = _table(path, anomaly.pop("streams", {}), "[anomaly] streams")
    values["anomaly"] = _numbers(path, anomaly, "anomaly")
    values["anomaly_streams"] = {
        name: _numbers(path, _table(path, table, f"[anomaly.streams.{name}]"), f"anomaly.streams.{name}")
        for name, table in streams.items()
    }
    for key in ("bundle", "verify_key", "path", "spool_path"):
        if key in values and values[key] is not None and not Path(values[key]).is_absolute():
            values[key] = base / values[key]
    return values


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise RnnedgeError(f"{path}: cannot read the password file ({exc.strerror})") from None


def build_config(file_values: dict[str, Any], overrides: dict[str, Any]) -> RuntimeConfig:
    """File values, then command-line values that were given (not None)."""
    names = {f.name for f in fields(RuntimeConfig)}
    merged = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(merged) - names
    if unknown:
        raise RnnedgeError(f"unknown settings: {', '.join(sorted(unknown))}")
    return replace(RuntimeConfig(), **merged).check()
