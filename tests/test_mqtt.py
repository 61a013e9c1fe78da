"""MQTT and Home Assistant with real parts: Debian's Mosquitto broker (with and without password
auth, started here on a loopback port), paho subscribers, and a real ``camwatch`` process with a
demo camera that drifts, is commanded over MQTT, reloaded and finally SIGKILLed.

What is checked: events go through the durable outbox and reach the broker once each across a
broker stop and restart; states are retained and events are not; Home Assistant discovery
payloads carry what Home Assistant requires; a camera removed by a reload has its entities
removed; commands are carried out and recorded with who asked; the Last Will fires when the
daemon is killed; a wrong password is one clear line.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import time

import pytest
import yaml
from daemon_helpers import REPO, Daemon, write_config
from mqtt_broker import Mosquitto, Recorder
from test_events import FAST

from camwatch.config import MqttSettings, WebhookSettings, load_config
from camwatch.core.backoff import Backoff
from camwatch.core.errors import CamwatchError, ConfigError
from camwatch.core.types import KINDS, STATES
from camwatch.service import actions
from camwatch.service.alerts import Dispatcher
from camwatch.service.commands import parse_command
from camwatch.service.mqtt import CAMERA_LEAVES, MqttLink, MqttSink
from camwatch.service.sinks import LogSink, build_sinks
from camwatch.store import controls
from camwatch.store.events import SILENCED_UNTIL, Event, EventStore
from camwatch.store.references import ReferenceStore

USER, PASSWORD = "camwatch", "mqttPw-T7v2k9"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """An anonymous broker, shared by this module's in-process tests."""
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory):
    """A broker that refuses anonymous clients (mosquitto_passwd); the daemon test uses it."""
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto-auth"), users={USER: PASSWORD, "watcher": "watcherPw-1x"})
    yield b
    b.stop()


def mqtt_settings(port: int, **kw) -> MqttSettings:
    return MqttSettings(url=f"mqtt://127.0.0.1:{port}", **kw)


# ---- Home Assistant's requirements for a discovery config ---------------------------------------
#: What Home Assistant's MQTT integration requires of each platform's config (its schemas:
#: homeassistant/components/mqtt/{binary_sensor,sensor,camera}.py, and the device and
#: availability schemas every platform shares). A mock of Home Assistant: it cannot run here.
HA_REQUIRED = {"binary_sensor": ("state_topic",), "sensor": ("state_topic",), "camera": ("topic",)}
HA_ALLOWED = {
    "binary_sensor": {"device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on",
                      "value_template", "state_topic"},
    "sensor": {"device_class", "state_class", "unit_of_measurement", "suggested_display_precision", "options",
               "value_template", "state_topic", "last_reset_value_template", "expire_after", "force_update"},
    "camera": {"topic", "image_encoding"},
}
HA_COMMON = {"name", "unique_id", "device", "origin", "availability", "availability_mode", "qos", "icon",
             "entity_category", "enabled_by_default", "json_attributes_topic", "object_id", "encoding"}
HA_BINARY_CLASSES = {"problem", "safety", "tamper", "connectivity"}
HA_SENSOR_CLASSES = {"enum", "timestamp", None}
TOPIC = re.compile(r"^[^#+\x00]+$")


def ha_problems(component: str, config_topic: str, doc: dict) -> list[str]:
    """Every way ``doc`` would be refused (or lose its device) in Home Assistant; [] when none."""
    out = []
    where = config_topic
    if not re.fullmatch(r"[^/]+/(binary_sensor|sensor|camera)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config", config_topic):
        out.append(f"{where}: not <prefix>/<component>/<node_id>/<object_id>/config")
    for key in HA_REQUIRED[component]:
        if not isinstance(doc.get(key), str) or not TOPIC.match(doc[key]):
            out.append(f"{where}: {key} missing or not a topic")
    unknown = set(doc) - HA_ALLOWED[component] - HA_COMMON
    if unknown:
        out.append(f"{where}: keys Home Assistant refuses: {sorted(unknown)}")
    if not isinstance(doc.get("unique_id"), str) or not doc["unique_id"]:
        out.append(f"{where}: no unique_id (an entity without one cannot belong to a device)")
    dev = doc.get("device")
    if not isinstance(dev, dict) or not (dev.get("identifiers") or dev.get("connections")):
        out.append(f"{where}: device needs identifiers or connections")
    av = doc.get("availability")
    if not isinstance(av, list) or not av or not all(isinstance(a, dict) and TOPIC.match(a.get("topic", "#"))
                                                   for a in av):
        out.append(f"{where}: availability must list topics")
    dc = doc.get("device_class")
    if component == "binary_sensor" and dc not in HA_BINARY_CLASSES:
        out.append(f"{where}: device_class {dc!r}")
    if component == "sensor":
        if dc not in HA_SENSOR_CLASSES:
            out.append(f"{where}: device_class {dc!r}")
        if dc == "enum" and (not doc.get("options") or "state_class" in doc or "unit_of_measurement" in doc):
            out.append(f"{where}: an enum sensor needs options and no state_class or unit")
    if doc.get("qos", 0) not in (0, 1, 2):
        out.append(f"{where}: qos")
    return out


# ---- in-process: the outbox into a real broker ----------------------------------------------------


def test_broker_stopped_and_restarted_queued_events_arrive_once(broker, tmp_path):
    rec = Recorder(broker.port, "camwatch/+/event", client_id="consumer-1")  # persistent: kept for it
    link = MqttLink(mqtt_settings(broker.port, timeout=1.0))
    sink = MqttSink(link)
    store = EventStore(tmp_path)
    # A 30 s backoff: only the reconnect (Dispatcher.resume) can deliver within the test's time.
    d = Dispatcher(store, [LogSink(), sink], backoff=Backoff(base=30, cap=60, jitter=0.2), poll=0.2)
    link.on_connected.append(lambda: d.resume(sink.name))
    link.start()
    assert link.wait_connected(5)
    d.start()
    try:
        sent = [d.publish(Event("gate", "drift_started", kind="moved", similarity=0.31, threshold=0.8))]
        rec.wait("the first event", lambda: rec.on("camwatch/gate/event"))
        broker.stop()
        rec.wait("the link to notice", lambda: not link.connected, timeout=5)
        sent += [d.publish(Event(f"cam{i}", "camera_down")) for i in range(3)]
        time.sleep(0.6)
        assert store.pending_count(sink.name) == 3 and store.pending_count("log") == 0
        broker.start()
        assert rec.wait("every event delivered", lambda: store.pending_count() == 0, timeout=15)
        rec.wait("four events", lambda: sum(len(rec.on(f"camwatch/{c}/event"))
                                            for c in ("gate", "cam0", "cam1", "cam2")) >= 4)
        time.sleep(0.3)   # room for a duplicate to show
    finally:
        d.stop()
        link.close()
        rec.close()
    got = [json.loads(m.payload) for m in rec.messages]
    assert sorted(g["id"] for g in got) == sorted(e.id for e in sent)   # each once
    assert all(g["idempotency_key"] == g["id"] and g["source"] == "camwatch" for g in got)
    assert not any(m.retain for m in rec.messages)                      # events are never retained
    assert {g["type"] for g in got} == {"drift_started", "camera_down"}


def test_a_silenced_cameras_alerts_reach_the_log_only(broker, tmp_path):
    """An event its camera's monitor marked silenced (core.monitor: ``details.silenced_until``) is told
    by the log sink and held back from MQTT; the silence itself (service.actions) is sent."""
    cam = load_config(str(write_config(tmp_path / "cameras.yaml", [{"id": "gate", "url": "demo:street"}]))).cameras[0]
    refs = ReferenceStore(tmp_path / "refs")
    rec = Recorder(broker.port, "camwatch/+/event")
    link = MqttLink(mqtt_settings(broker.port, timeout=1.0))
    store = EventStore(tmp_path)
    d = Dispatcher(store, [LogSink(), MqttSink(link)], backoff=FAST, poll=0.2)
    link.start()
    assert link.wait_connected(5)
    d.start()
    try:
        told = d.publish(actions.silence(refs, cam, 3600, "dana"))
        held = d.publish(Event("gate", "drift_started", kind="covered",
                               details={SILENCED_UNTIL: told.details["until"]}))
        other = d.publish(Event("door", "drift_started", kind="moved"))
        rec.wait("two events", lambda: len(rec.messages) >= 2)
        assert rec.wait("all delivered", lambda: store.pending_count() == 0, timeout=5)
        time.sleep(0.3)
    finally:
        d.stop()
        link.close()
        rec.close()
    assert [json.loads(m.payload)["id"] for m in rec.messages] == [told.id, other.id]
    stored = {e.id: e for e in store.list()}
    assert SILENCED_UNTIL in stored[held.id].details and SILENCED_UNTIL not in stored[other.id].details
    assert {x.sink for x in store.deliveries(held.id) if x.delivered_at} == {"log", MqttSink.name}   # held back
    assert stored[told.id].details["by"] == "dana"
    assert controls.get(refs, "gate").silenced_until == pytest.approx(told.time + 3600)   # kept for a restart
    with pytest.raises(CamwatchError, match="at most 30 days"):
        actions.silence(refs, cam, 31 * 86400, "dana")
    refs.close()


def test_a_wrong_password_is_one_clear_line(auth_broker, caplog):
    link = MqttLink(mqtt_settings(auth_broker.port, username=USER, password="not-the-password", timeout=1.0))
    with caplog.at_level(logging.WARNING, logger="camwatch.service.mqtt"):
        link.start()
        try:
            end = time.monotonic() + 5
            while time.monotonic() < end and not caplog.records:
                time.sleep(0.05)
            assert not link.connected
            with pytest.raises(Exception, match="not connected"):
                MqttSink(link).send(Event("gate", "camera_down"))
        finally:
            link.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines   # once per outage, not at every retry
    assert f"127.0.0.1:{auth_broker.port}" in lines[0] and "refused" in lines[0] and "authori" in lines[0].lower()
    assert "not-the-password" not in lines[0]


def test_tls_broker_verified_against_its_ca(tmp_path, caplog):
    tls = Mosquitto(tmp_path, tls=True)
    url = f"mqtts://127.0.0.1:{tls.port}"
    trusting = MqttLink(MqttSettings(url=url, ca_file=tls.ca, client_id="tls-ok"))
    strict = MqttLink(MqttSettings(url=url, client_id="tls-refused"))   # the system CAs: must not trust it
    try:
        with caplog.at_level(logging.WARNING, logger="camwatch.service.mqtt"):
            for link in (trusting, strict):
                link.start()
            assert trusting.wait_connected(5)
            time.sleep(0.5)
        assert not strict.connected
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and f"127.0.0.1:{tls.port}" in said[0] and "certificate verify failed" in said[0], said
    finally:
        trusting.close()
        strict.close()
        tls.stop()


def test_a_webhook_cannot_take_the_mqtt_sinks_name():
    sink = MqttSink(MqttLink(mqtt_settings(1883)))   # never started: no connection is made
    with pytest.raises(ConfigError, match="its name 'mqtt' is the MQTT sink's name"):
        build_sinks([WebhookSettings(url="http://mqtt/hook")], [sink])
    assert [s.name for s in build_sinks([WebhookSettings(url="http://mqtt/hook", name="bridge")], [sink])] \
        == ["log", "mqtt", "bridge"]


def test_command_payloads():
    assert parse_command("gate", "silence", b"2h").seconds == 7200
    c = parse_command("gate", "silence", b'{"duration": "30m", "by": "dana"}')
    assert (c.seconds, c.who) == (1800, "mqtt:dana")
    assert parse_command("gate", "silence", b"0").seconds == 0
    assert parse_command("gate", "enroll", b"").label == "default"
    assert parse_command("gate", "enroll", b'{"label": "night", "by": "sam"}').who == "mqtt:sam"
    for name, payload, words in (("silence", b"soon", "duration"), ("silence", b'{"by": "a b"}', "'by'"),
                                 ("reboot", b"", "unknown command"), ("enroll", b"{nope", "JSON"),
                                 ("enroll", b"a\nb", "control")):
        with pytest.raises(CamwatchError, match=words):
            parse_command("gate", name, payload)


# ---- a real daemon ---------------------------------------------------------------------------------


def test_daemon_states_discovery_commands_reload_and_last_will(auth_broker, tmp_path):
    cams = [{"id": "lobby", "name": "Lobby", "url": "demo:lobby?seed=3&drift_after=3&drift=turn&width=320&height=180",
             "auto_enroll": True},
            {"id": "street", "url": "demo:street?seed=1&width=320&height=180", "auto_enroll": True}]
    mqtt = {"url": f"mqtt://127.0.0.1:{auth_broker.port}", "username": USER, "password": "${MQTT_PASSWORD}",
            "client_id": "camwatch-test", "discovery": True, "commands": True, "evidence": True}
    cfg = write_config(tmp_path / "cameras.yaml", cams, mqtt=mqtt, device="cpu", interval=0.5)
    rec = Recorder(auth_broker.port, ["camwatch/#", "homeassistant/#"], user="watcher", password="watcherPw-1x")
    # A retained command is the broker's memory, not an operator's request now: never carried out.
    rec.client.publish("camwatch/street/set/silence", b"2h", qos=1, retain=True).wait_for_publish(5)
    d = Daemon(cfg, env={"MQTT_PASSWORD": PASSWORD})
    try:
        d.wait("camwatch/available online", lambda: (m := rec.last("camwatch/available")) and m.payload == b"online")
        d.wait("lobby drifted on its state topic",
               lambda: (m := rec.last("camwatch/lobby/state")) and m.payload == b"drifted", timeout=40)
        d.wait("the drift_started event", lambda: any(json.loads(m.payload)["type"] == "drift_started"
                                                      for m in rec.on("camwatch/lobby/event")))
        d.wait("the evidence picture", lambda: rec.last("camwatch/lobby/evidence"))
        # Commands, recorded with who asked.
        rec.client.publish("camwatch/lobby/set/silence", b'{"duration": "1h", "by": "dana"}', qos=1)
        rec.client.publish("camwatch/street/set/enroll", b'{"label": "day", "by": "sam"}', qos=1)
        rec.client.publish("camwatch/nowhere/set/silence", b"1h", qos=1)
        events = lambda cam: [json.loads(m.payload) for m in rec.on(f"camwatch/{cam}/event")]  # noqa: E731
        d.wait("camera_silenced", lambda: any(e["type"] == "camera_silenced" for e in events("lobby")))
        d.wait("reference_accepted", lambda: any(e["type"] == "reference_accepted" for e in events("street")))
        # A new subscriber sees the retained states at once, and only the states.
        late = Recorder(auth_broker.port, ["camwatch/#", "homeassistant/#"], user="watcher", password="watcherPw-1x")
        late.wait("retained topics", lambda: late.last("camwatch/lobby/last_check"), timeout=5)
        time.sleep(0.3)
        retained = {m.topic: m.payload for m in late.messages if m.retain}
        late.close()
        # Reload without street: its entities and state topics are removed (empty retained configs).
        write_config(cfg, cams[:1], mqtt=mqtt, device="cpu", interval=0.5)
        d.signal(signal.SIGHUP)
        d.wait("street's discovery configs cleared",
               lambda: rec.last("homeassistant/binary_sensor/camwatch/street_drift/config").payload == b"")
        # SIGKILL: the broker tells everyone through the Last Will.
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        rec.wait("the Last Will", lambda: rec.last("camwatch/available").payload == b"offline", timeout=5)
    finally:
        d.stop()
        rec.close()

    assert not [m for m in rec.messages if m.topic.endswith("/event") and m.retain]
    assert retained["camwatch/available"] == b"online"
    assert retained["camwatch/lobby/state"] == b"drifted" and retained["camwatch/street/state"] == b"ok"
    assert retained["camwatch/lobby/kind"].decode() in KINDS
    assert retained["camwatch/street/kind"] == b"none"
    assert 0 < float(retained["camwatch/street/similarity"]) <= 1
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", retained["camwatch/lobby/last_check"])
    assert retained["camwatch/lobby/evidence"][:2] == b"\xff\xd8"          # a JPEG
    assert not any(t.endswith("/event") for t in retained)
    # Discovery: what Home Assistant needs, all tied to the availability topic.
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    lobby = {t: c for t, c in configs.items() if "/lobby_" in t}
    assert {t.split("/")[1] for t in lobby} == {"binary_sensor", "sensor", "camera"} and len(lobby) == 6
    problems = [p for t, c in configs.items() for p in ha_problems(t.split("/")[1], t, c)]
    assert not problems, problems
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    assert all(c["availability"][0]["topic"] == "camwatch/available" for c in configs.values())
    assert {c["device"]["identifiers"][0] for c in lobby.values()} == {"camwatch_lobby"}
    drift = lobby["homeassistant/binary_sensor/camwatch/lobby_drift/config"]
    assert drift["device_class"] == "problem" and drift["state_topic"] == "camwatch/lobby/state"
    state = lobby["homeassistant/sensor/camwatch/lobby_state/config"]
    assert set(state["options"]) == set(STATES)
    # Commands: carried out and audited with who asked; the unknown camera is one warning line.
    silenced = next(e for e in events("lobby") if e["type"] == "camera_silenced")
    assert silenced["details"]["by"] == "mqtt:dana" and silenced["details"]["seconds"] == 3600
    accepted = next(e for e in events("street") if e["type"] == "reference_accepted")
    assert accepted["details"]["by"] == "mqtt:sam" and accepted["details"]["label"] == "day"
    log = d.log()
    assert "MQTT command silence for camera nowhere refused: unknown camera 'nowhere'" in log
    assert "ignored a retained command on 'camwatch/street/set/silence'" in log
    assert not any(e["type"] == "camera_silenced" for e in events("street"))
    # street's state topics were cleared on the reload too.
    assert rec.last("camwatch/street/state").payload == b""
    assert PASSWORD not in log and PASSWORD.encode() not in b"".join(m.payload for m in rec.messages)


def test_integrations_doc_examples_are_well_formed_and_name_real_topics():
    """docs/integrations.md: its JSON and YAML examples parse, name the topics camwatch publishes, and its
    settings and configs/demo-mqtt.yaml load (the shell examples are run against a real broker by hand)."""
    doc = (REPO / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, re.S)
    flows = [json.loads(text) for lang, text in blocks if lang == "json"]
    assert len(flows) == 1
    nodes = {n["id"]: n for n in flows[0]}
    assert nodes["cw-events"]["topic"] == "camwatch/+/event" and nodes["cw-events"]["broker"] == "cw-broker"
    assert all(w in nodes for n in flows[0] for out in n.get("wires", []) for w in out)
    yamls = [yaml.safe_load(text) for lang, text in blocks if lang == "yaml"]
    settings = next(y["settings"]["mqtt"] for y in yamls if isinstance(y, dict) and "settings" in y)
    assert MqttSettings(**{k: v for k, v in settings.items() if k != "password"}).discovery
    topics = set(re.findall(r"camwatch/[a-z+#-]+(?:/[a-z_+#]+)*", doc))
    leaves = {t.split("/")[2] for t in topics if t.count("/") == 2}
    assert leaves <= {*CAMERA_LEAVES, "event", "set"}, leaves
    config = load_config(REPO / "configs" / "demo-mqtt.yaml")
    assert config.settings.mqtt.enabled and config.settings.mqtt.discovery and config.settings.mqtt.commands


def test_bad_mqtt_settings_are_one_line_each(tmp_path):
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(f"""settings:
  state_dir: {tmp_path / 'state'}
  mqtt:
    url: mqtt://camwatch:{PASSWORD}@127.0.0.1:1883
    qos: 3
    topic_prefix: "site/#"
    discovery_prefix: /homeassistant
    ca_file: nowhere.pem
    clinet_id: x
cameras:
  - id: gate
    url: demo:street
""")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    lines = str(info.value).splitlines()
    assert [ln.split(": ")[1] for ln in lines] == ["settings.mqtt.url", "settings.mqtt.qos",
                                                  "settings.mqtt.topic_prefix", "settings.mqtt.discovery_prefix",
                                                  "settings.mqtt.clinet_id"], lines
    assert "username: and password:" in lines[0] and PASSWORD not in str(info.value)
    assert "did you mean 'client_id'" in lines[-1]
    cfg.write_text(cfg.read_text().replace(f"camwatch:{PASSWORD}@", "").replace("qos: 3", "password: x1234")
                   .replace("site/#", "site").replace("/homeassistant", "ha").replace("    clinet_id: x\n", ""))
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and "needs a username" in lines[0] and "ca_file: 'nowhere.pem': no such file" in lines[1]
