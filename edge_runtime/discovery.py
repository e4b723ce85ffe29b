"""Home Assistant MQTT discovery: each stream's forecasts, anomaly score and alarm appear as entities.

Opt-in. Home Assistant reads retained entity configurations under `<prefix>/<component>/<node_id>/<object_id>/config`
and then follows the state topics they name; an empty retained payload removes the entity. The entities read the
forecast messages the runtime already publishes (no extra state topic), which look like

    {"stream": "press-7", "boot": 1795315000, "seq": 41, "ts": "...", "observed": {"temp": 97.6},
     "forecast": {"temp": [97.8, 98.0]}, "residual": {"temp": 0.1}, "score": 0.12, "alarm": false, "bundle": "<sha256>"}

Per stream and target a `sensor` holds the forecast one step ahead (the whole horizon as an attribute); per stream a
`sensor` holds the anomaly score and a `binary_sensor` the alarm. All of them go unavailable when the runtime's
status topic says `offline`. docs/home_assistant.md shows the payloads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from edge_runtime import __version__
from edge_runtime.errors import InputError

DEFAULT_PREFIX = "homeassistant"


class DiscoveryMessage(NamedTuple):
    topic: str
    payload: str  # JSON; empty to remove the entity
    retain: bool = True


class _Entity(NamedTuple):
    component: str  # "sensor" or "binary_sensor"
    kind: str  # "forecast", "anomaly_score" or "alarm"
    target: str | None  # forecasts are per target; score and alarm per stream
    object_id: str


def discovery_messages(
    node_id: str,
    stream: str,
    targets: Iterable[str],
    forecast_topic: str,
    status_topic: str,
    device_info: Mapping[str, Any],
    prefix: str = DEFAULT_PREFIX,
    units: Mapping[str, str] | None = None,
) -> list[DiscoveryMessage]:
    """The retained configurations of one stream's entities, to publish at start and when Home Assistant restarts.

    `node_id` names this device (one Home Assistant device holds all its streams); `forecast_topic` is where this
    stream's forecast messages go; `status_topic` holds the runtime's retained `online`/`offline`; `device_info`
    adds to or overrides the device block (`name`, `sw_version`, `suggested_area`, ...); `units` maps a target to
    its unit of measurement, when known.
    """
    _check_topics(prefix=prefix, forecast_topic=forecast_topic, status_topic=status_topic)
    entities = _entities(node_id, stream, targets)
    units = dict(units or {})
    if unknown := sorted(set(units) - {e.target for e in entities}):
        raise InputError(f"Home Assistant discovery: units given for unknown targets {unknown}")
    device = {
        "identifiers": [f"rnnedge_{_slug(node_id)}"],
        "name": node_id,
        "model": "rnnedge",
        "sw_version": __version__,
        **device_info,
    }
    common = {
        "state_topic": forecast_topic,
        "availability_topic": status_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "device": device,
        "origin": {"name": "rnnedge", "sw_version": __version__},
    }
    messages = []
    for entity in entities:
        config: dict[str, Any] = {"unique_id": f"rnnedge_{_slug(node_id)}_{entity.object_id}"}
        if entity.kind == "forecast":
            target = _literal(entity.target)
            config.update(
                name=f"{stream} {entity.target} forecast",
                value_template=f"{{{{ value_json.forecast[{target}][0] }}}}",
                json_attributes_topic=forecast_topic,
                json_attributes_template=f"{{{{ {{'horizon': value_json.forecast[{target}]}} | tojson }}}}",
                state_class="measurement",
            )
            if entity.target in units:
                config["unit_of_measurement"] = units[entity.target]
        elif entity.kind == "anomaly_score":
            config.update(
                name=f"{stream} anomaly score",
                value_template="{{ value_json.score }}",
                state_class="measurement",
                suggested_display_precision=3,
            )
        else:
            config.update(
                name=f"{stream} alarm",
                value_template="{{ 'ON' if value_json.alarm else 'OFF' }}",
                payload_on="ON",
                payload_off="OFF",
                device_class="problem",
            )
        config.update(common)
        payload = json.dumps(config, ensure_ascii=False, separators=(",", ":"))
        messages.append(DiscoveryMessage(_config_topic(prefix, node_id, entity), payload))
    return messages


def removal_messages(
    node_id: str, stream: str, targets: Iterable[str], prefix: str = DEFAULT_PREFIX
) -> list[DiscoveryMessage]:
    """Empty retained payloads on the same topics: Home Assistant removes the entities of a stream that went away."""
    _check_topics(prefix=prefix)
    return [DiscoveryMessage(_config_topic(prefix, node_id, e), "") for e in _entities(node_id, stream, targets)]


@dataclass(frozen=True)
class HomeAssistantStatus:
    """Home Assistant announces `online` on `<prefix>/status` when it starts: it may have lost the entities (a
    broker that forgot its retained messages, a wiped registry), so discovery must be published again then.
    The runtime subscribes to `topic` and asks `should_republish` of every message that arrives there."""

    prefix: str = DEFAULT_PREFIX
    online: str = "online"  # Home Assistant's birth payload (configurable in its MQTT settings)

    @property
    def topic(self) -> str:
        return f"{self.prefix}/status"

    def should_republish(self, topic: str, payload: bytes | str) -> bool:
        if topic != self.topic:
            return False
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        return text.strip() == self.online


def _entities(node_id: str, stream: str, targets: Iterable[str]) -> list[_Entity]:
    targets = list(targets)
    for name, value in (("node_id", node_id), ("stream", stream), *(("target", t) for t in targets)):
        if not isinstance(value, str) or not value:
            raise InputError(f"Home Assistant discovery: {name} {value!r} must be a non-empty string")
    if len(set(targets)) != len(targets):
        raise InputError(f"Home Assistant discovery: targets {targets} are not distinct")
    entities = [_Entity("sensor", "forecast", t, _object_id(node_id, stream, t, "forecast")) for t in targets]
    entities.append(_Entity("sensor", "anomaly_score", None, _object_id(node_id, stream, None, "anomaly_score")))
    entities.append(_Entity("binary_sensor", "alarm", None, _object_id(node_id, stream, None, "alarm")))
    return entities


def _object_id(node_id: str, stream: str, target: str | None, kind: str) -> str:
    """Readable, and unique however the names look: Home Assistant allows only [A-Za-z0-9_-] in these ids, and
    replacing the other characters could make two streams collide ("a.b" and "a_b"), so a short hash of the exact
    names follows. The same names give the same id on every start: Home Assistant keeps the entities' settings."""
    digest = hashlib.sha256(json.dumps([node_id, stream, target, kind]).encode()).hexdigest()[:8]
    readable = "_".join(_slug(part) for part in (stream, target, kind) if part is not None)
    return f"{readable}_{digest}"


def _config_topic(prefix: str, node_id: str, entity: _Entity) -> str:
    return f"{prefix}/{entity.component}/{_slug(node_id)}/{entity.object_id}/config"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "_"


def _literal(name: str | None) -> str:
    """A name as a single-quoted string literal in a Home Assistant (Jinja) template, which undoes these escapes."""
    return "'" + str(name).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_topics(**topics: str) -> None:
    for name, topic in topics.items():
        if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic or "\0" in topic:
            raise InputError(f"Home Assistant discovery: {name} {topic!r} must be a topic without wildcards")
