"""Home Assistant MQTT discovery: exact topics and payloads, templates that read the forecast message, a real broker."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import Mosquitto
from mqtt_helpers import Recorder

from edge_runtime import __version__
from edge_runtime.discovery import HomeAssistantStatus, discovery_messages, removal_messages
from edge_runtime.errors import InputError

NODE, STREAM = "pi-kitchen", "press-7"
FORECAST_TOPIC, STATUS_TOPIC = "rnnedge/pi-kitchen/forecast/press-7", "rnnedge/pi-kitchen/status"
TARGETS = ("temp", "flow")
# the forecast message the runtime publishes (docs/home_assistant.md)
MESSAGE = {
    "stream": STREAM,
    "seq": 41,
    "ts": "2024-05-01T12:00:00Z",
    "observed": {"temp": 97.6, "flow": 3.2},
    "forecast": {"temp": [97.8, 98.1, 98.3], "flow": [3.1, 3.0, 2.9]},
    "residual": {"temp": 0.1, "flow": None},
    "score": 0.12,
    "alarm": True,
    "bundle": "ab" * 32,
}


def messages(**overrides: Any) -> list:
    arguments = dict(
        node_id=NODE,
        stream=STREAM,
        targets=TARGETS,
        forecast_topic=FORECAST_TOPIC,
        status_topic=STATUS_TOPIC,
        device_info={"suggested_area": "Workshop"},
        units={"temp": "°C"},
    )
    return discovery_messages(**{**arguments, **overrides})


def configs(found: list) -> dict[str, dict]:
    return {topic: json.loads(payload) for topic, payload, _ in found}


def test_one_forecast_sensor_per_target_and_a_score_and_alarm_per_stream_on_exact_topics() -> None:
    found = messages()
    topics = [m.topic for m in found]
    assert [re.sub(r"_[0-9a-f]{8}/config$", "", t) for t in topics] == [
        "homeassistant/sensor/pi-kitchen/press-7_temp_forecast",
        "homeassistant/sensor/pi-kitchen/press-7_flow_forecast",
        "homeassistant/sensor/pi-kitchen/press-7_anomaly_score",
        "homeassistant/binary_sensor/pi-kitchen/press-7_alarm",
    ]
    assert all(re.fullmatch(r"homeassistant/\w+/[\w-]+/[\w-]+/config", t) for t in topics)
    assert all(m.retain for m in found)
    temp, flow, score, alarm = (json.loads(m.payload) for m in found)
    common = {
        "state_topic": FORECAST_TOPIC,
        "availability_topic": STATUS_TOPIC,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "device": {
            "identifiers": ["rnnedge_pi-kitchen"],
            "name": NODE,
            "model": "rnnedge",
            "sw_version": __version__,
            "suggested_area": "Workshop",
        },
        "origin": {"name": "rnnedge", "sw_version": __version__},
    }
    for config in (temp, flow, score, alarm):
        assert {k: config[k] for k in common} == common
        assert (
            config["unique_id"]
            == "rnnedge_pi-kitchen_" + topics[[temp, flow, score, alarm].index(config)].split("/")[3]
        )
    assert temp["name"] == "press-7 temp forecast" and temp["unit_of_measurement"] == "°C"
    assert temp["state_class"] == "measurement" and temp["json_attributes_topic"] == FORECAST_TOPIC
    assert "unit_of_measurement" not in flow  # unknown unit: none claimed
    assert score["name"] == "press-7 anomaly score" and score["state_class"] == "measurement"
    assert alarm["name"] == "press-7 alarm" and alarm["device_class"] == "problem"
    assert (alarm["payload_on"], alarm["payload_off"]) == ("ON", "OFF")
    assert len({c["unique_id"] for c in (temp, flow, score, alarm)}) == 4


def test_templates_have_the_exact_expected_text() -> None:
    temp, flow, score, alarm = (json.loads(m.payload) for m in messages())
    assert temp["value_template"] == "{{ value_json.forecast['temp'][0] }}"
    assert temp["json_attributes_template"] == "{{ {'horizon': value_json.forecast['temp']} | tojson }}"
    assert flow["value_template"] == "{{ value_json.forecast['flow'][0] }}"
    assert score["value_template"] == "{{ value_json.score }}"
    assert alarm["value_template"] == "{{ 'ON' if value_json.alarm else 'OFF' }}"


_ACCESS = re.compile(r"\.([a-z_]+)|\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


def _resolve(path: str, message: dict) -> Any:
    """value_json followed by .name, ['literal'] and [index] steps, the only shapes the templates use."""
    assert path.startswith("value_json"), path
    value, rest = message, path[len("value_json") :]
    while rest:
        step = _ACCESS.match(rest)
        assert step, f"unexpected template syntax at {rest!r}"
        name, literal, index = step.groups()
        value = value[int(index)] if index else value[name if name else re.sub(r"\\(.)", r"\1", literal)]
        rest = rest[step.end() :]
    return value


def tiny_render(template: str, message: dict) -> str:
    """Renders exactly the template shapes discovery emits; anything else fails the test."""
    body = re.fullmatch(r"\{\{ (.*) \}\}", template, re.S)
    assert body, template
    expression = body.group(1)
    if ternary := re.fullmatch(r"'ON' if (value_json\S*) else 'OFF'", expression):
        return "ON" if _resolve(ternary.group(1), message) else "OFF"
    if attributes := re.fullmatch(r"\{'horizon': (value_json.*)\} \| tojson", expression, re.S):
        return json.dumps({"horizon": _resolve(attributes.group(1), message)})
    return str(_resolve(expression, message))


def jinja_render(template: str, message: dict) -> str:
    import jinja2

    return jinja2.Environment().from_string(template).render(value_json=message)


RENDERERS = [tiny_render] + ([jinja_render] if importlib.util.find_spec("jinja2") else [])


@pytest.mark.parametrize("render", RENDERERS, ids=lambda r: r.__name__)
def test_templates_pick_the_right_values_out_of_a_forecast_message(render) -> None:
    temp, flow, score, alarm = (json.loads(m.payload) for m in messages())
    assert render(temp["value_template"], MESSAGE) == "97.8"  # first horizon step of that target
    assert render(flow["value_template"], MESSAGE) == "3.1"
    assert json.loads(render(temp["json_attributes_template"], MESSAGE)) == {"horizon": [97.8, 98.1, 98.3]}
    assert render(score["value_template"], MESSAGE) == "0.12"
    assert render(alarm["value_template"], MESSAGE) == "ON"
    assert render(alarm["value_template"], {**MESSAGE, "alarm": False}) == "OFF"


@pytest.mark.parametrize("render", RENDERERS, ids=lambda r: r.__name__)
def test_target_names_with_quotes_and_backslashes_are_escaped_in_templates(render) -> None:
    awkward = ("it's", "back\\slash", "oil.pressure", "°C")
    found = messages(targets=awkward, units={})
    message = {**MESSAGE, "forecast": {name: [float(i)] for i, name in enumerate(awkward)}}
    for i, name in enumerate(awkward):
        config = json.loads(found[i].payload)
        assert config["name"] == f"press-7 {name} forecast"
        assert render(config["value_template"], message) == str(float(i))
    assert json.loads(found[0].payload)["value_template"] == "{{ value_json.forecast['it\\'s'][0] }}"


def test_ids_are_stable_across_restarts_and_distinct_when_names_only_differ_in_punctuation() -> None:
    assert messages() == messages()  # same names, same topics and unique_ids: Home Assistant keeps the entities
    dotted, underscored = messages(stream="a.b"), messages(stream="a_b")
    assert [m.topic for m in dotted] != [m.topic for m in underscored]
    ids = {json.loads(m.payload)["unique_id"] for m in dotted + underscored}
    assert len(ids) == 8 and all(i.startswith("rnnedge_pi-kitchen_a_b_") for i in ids)
    other_node = messages(node_id="pi-garage")
    assert not {m.topic for m in other_node} & {m.topic for m in messages()}


def test_removal_messages_empty_every_config_topic() -> None:
    removals = removal_messages(NODE, STREAM, TARGETS)
    assert [m.topic for m in removals] == [m.topic for m in messages()]
    assert all(m.payload == "" and m.retain for m in removals)
    assert [m.topic for m in removal_messages(NODE, STREAM, TARGETS, prefix="ha")][0].startswith("ha/sensor/")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stream": ""}, "stream '' must be a non-empty string"),
        ({"targets": ("temp", "temp")}, "targets ['temp', 'temp'] are not distinct"),
        ({"prefix": "home/#"}, "prefix 'home/#' must be a topic without wildcards"),
        ({"forecast_topic": "rnnedge/+/forecast"}, "forecast_topic 'rnnedge/+/forecast' must be a topic"),
        ({"node_id": None}, "node_id None must be a non-empty string"),
        ({"units": {"tmp": "°C"}}, "units given for unknown targets ['tmp']"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        messages(**overrides)


def test_home_assistant_status_asks_for_a_republish_only_on_its_online_message() -> None:
    status = HomeAssistantStatus()
    assert status.topic == "homeassistant/status"
    assert status.should_republish("homeassistant/status", b"online") is True
    assert status.should_republish("homeassistant/status", "online\n") is True
    assert status.should_republish("homeassistant/status", b"offline") is False
    assert status.should_republish("other/status", b"online") is False
    assert HomeAssistantStatus(prefix="ha", online="up").should_republish("ha/status", b"up") is True


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish_all(client: mqtt.Client, found: list) -> None:
    for info in [client.publish(m.topic, m.payload, qos=1, retain=m.retain) for m in found]:
        info.wait_for_publish(10)
        assert info.is_published()


def test_discovery_round_trip_through_a_real_broker(mosquitto: Mosquitto) -> None:
    found = messages() + messages(stream="line-2", targets=("temp",))
    runtime = _client(mosquitto.port)
    _publish_all(runtime, found)

    # Home Assistant subscribing later (after its own restart) receives every configuration, retained
    late = Recorder(mosquitto.port, "homeassistant/#")
    late.wait_for(len(found), timeout=10)
    late.settle(0.3)
    assert len(late.messages) == len(found) == 7
    assert all(retained for _, _, retained in late.messages)
    assert configs(late.messages) == configs(found)

    # Home Assistant announces itself: the runtime, following HomeAssistantStatus, publishes discovery again
    status = HomeAssistantStatus()
    republished = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if status.should_republish(message.topic, message.payload):
            for m in found:
                client.publish(m.topic, m.payload, qos=1, retain=m.retain)
            republished.set()

    subscribed = threading.Event()
    runtime.on_message = on_message
    runtime.on_subscribe = lambda *args: subscribed.set()
    runtime.subscribe(status.topic, qos=1)
    assert subscribed.wait(10)
    home_assistant = _client(mosquitto.port)
    home_assistant.publish(status.topic, "online", qos=1).wait_for_publish(10)
    assert republished.wait(10)
    late.wait_for(2 * len(found) + 1, timeout=10)  # + the birth message itself
    late.settle(0.3)
    again = [m for m in late.messages[len(found) :] if m[0] != status.topic]
    assert configs(again) == configs(found)

    # a stream goes away: its entities are removed, the other stream's stay
    _publish_all(runtime, removal_messages(NODE, "line-2", ("temp",)))
    after = Recorder(mosquitto.port, "homeassistant/#")
    after.wait_for(4, timeout=10)
    after.settle(0.3)
    assert configs(after.messages) == configs(messages())
    for client in (runtime, home_assistant):
        client.disconnect()
        client.loop_stop()
    late.close()
    after.close()
