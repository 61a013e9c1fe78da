"""MQTT: camwatch's events, each camera's state and its Home Assistant entities on a broker.

Three kinds of message, each sent the way its purpose needs (docs/integrations.md):

- **Events** (``<prefix>/<camera>/event``, JSON, never retained) go through the
  durable outbox like a webhook: ``MqttSink`` is a ``Sink``, a delivery counts
  only once the broker acknowledged it, and an unacknowledged publish is kept
  and waited on again rather than sent twice (paho resends it itself on
  reconnect). A broker down for an hour costs nothing but the wait; the
  event's id is in the payload as its idempotency key.
- **Camera states** (state, kind, similarity, last check, evidence picture)
  are retained and superseded by the next: ``CameraTopics`` publishes them from
  where the pipeline sets the metrics, not through the outbox. The link keeps
  the latest of each and publishes them all again on every (re)connect, so a
  broker restarted without persistence is whole again.
- **Availability**: ``<prefix>/available`` is ``online`` (retained) on
  connect, ``offline`` from the broker's Last Will when the daemon dies or its
  connection is lost, and from ``close()`` on a clean stop.

The password is registered as a secret and never logged; the broker is named
by host and port only.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from camwatch.config import MqttSettings
from camwatch.core.secrets import register_secret, scrub
from camwatch.service.sinks import DeliveryError
from camwatch.store.events import Event

log = logging.getLogger(__name__)

#: The leaves of a camera's retained topics (<prefix>/<camera>/<leaf>).
CAMERA_LEAVES = ("state", "kind", "similarity", "last_check", "evidence")
#: Payloads of <prefix>/available.
ONLINE, OFFLINE = b"online", b"offline"
#: What the kind topic says while no drift is open.
NO_KIND = "none"
#: Commands listened to under <prefix>/<camera>/set/ when settings.mqtt.commands is true.
COMMANDS = ("silence", "enroll")
#: How long close() waits for the "offline" message to be acknowledged.
CLOSE_WAIT_S = 2.0


def broker_name(settings: MqttSettings) -> str:
    """host:port of the broker: the only form of its address a log line shows."""
    parts = urlsplit(settings.url or "")
    port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    return f"{parts.hostname}:{port}"


def default_client_id() -> str:
    return "camwatch-" + (socket.gethostname().split(".")[0] or "host")[:40]


def iso(t: float) -> str:
    """ISO 8601 with its offset, as Home Assistant's timestamp sensors read it."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class MqttLink:
    """One connection to the broker for the whole daemon: reconnects by itself, keeps retained state.

    ``on_connected`` callbacks run on paho's thread after each (re)connect (the
    daemon wakes the MQTT sink's outbox worker there); ``on_command(camera, name,
    payload)`` is called for a message on ``<prefix>/<camera>/set/<name>`` when
    commands are on.
    """

    def __init__(self, settings: MqttSettings):
        if settings.url is None:
            raise ValueError("MqttLink needs settings.mqtt.url")
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.broker = broker_name(settings)
        self.on_connected: list[Callable[[], object]] = []
        self.on_command: Callable[[str, str, bytes], object] | None = None
        self.on_change: Callable[[bool], object] | None = None
        self._retained: dict[str, bytes | Path] = {}   # topic -> latest payload (b"" clears it)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._said_down = False
        self._closing = False
        parts = urlsplit(settings.url)
        self._host = parts.hostname or ""
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.client_id = settings.client_id or default_client_id()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=True, protocol=paho.MQTTv311)
        if settings.username is not None:
            register_secret(settings.password)
            c.username_pw_set(settings.username, settings.password)
        if parts.scheme == "mqtts":
            c.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None,
                      cert_reqs=ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE)
            c.tls_insecure_set(not settings.verify_tls)
        c.will_set(self.topic("available"), OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c

    # ---- topics ----------------------------------------------------------------
    def topic(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- life ------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; retries every 1..30 s for as long as it takes."""
        self.client.connect_async(self._host, self._port, keepalive=max(5, int(self.settings.keepalive)))
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        """A clean stop: ``offline`` (retained) instead of the Last Will, then disconnect."""
        self._closing = True
        if self.connected:
            try:
                info = self.client.publish(self.topic("available"), OFFLINE, qos=1, retain=True)
                info.wait_for_publish(CLOSE_WAIT_S)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # ---- publishing ------------------------------------------------------------
    def retain(self, topic: str, payload: bytes | Path) -> None:
        """Publish ``payload`` retained now if connected, and again after every reconnect.

        A Path is read when published (an evidence JPEG is not held in memory);
        ``b""`` clears the topic on the broker and is then forgotten.
        """
        with self._lock:
            if self._retained.get(topic) == payload:
                return
            self._retained[topic] = payload
        if self.connected:
            self._send_retained(topic, payload)

    def _send_retained(self, topic: str, payload: bytes | Path) -> None:
        if isinstance(payload, Path):
            try:
                data = payload.read_bytes()
            except OSError as exc:
                log.warning("MQTT: %s not published: %s", topic, scrub(str(exc)))
                return
        else:
            data = payload
        self.client.publish(topic, data, qos=self.settings.qos, retain=True)
        if data == b"":
            with self._lock:
                if self._retained.get(topic) == b"":
                    del self._retained[topic]

    def publish(self, topic: str, payload: bytes, qos: int) -> paho.MQTTMessageInfo:
        """One message, not retained; its info says when the broker acknowledged it."""
        return self.client.publish(topic, payload, qos=qos, retain=False)

    # ---- paho's callbacks (its network thread) ---------------------------------
    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._down(f"the broker refused the connection: {reason}")
            return
        log.info("MQTT: connected to %s as %s", self.broker, self.client_id)
        self._said_down = False
        client.publish(self.topic("available"), ONLINE, qos=1, retain=True)
        if self.settings.commands:
            client.subscribe(self.topic("+", "set", "+"), qos=1)
        with self._lock:
            held = list(self._retained.items())
        first = self.settings.discovery_prefix + "/"
        held.sort(key=lambda kv: not kv[0].startswith(first))   # discovery before states
        self._connected.set()
        for topic, payload in held:
            self._send_retained(topic, payload)
        if self.on_change is not None:
            self.on_change(True)
        for callback in list(self.on_connected):
            try:
                callback()
            except Exception:
                log.exception("MQTT: a reconnect callback failed")

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        # paho calls this inside its ``except OSError``: the error says why (refused, TLS, DNS).
        exc = sys.exc_info()[1]
        self._down(f"cannot connect: {exc}" if exc is not None else "cannot connect")

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected.clear()
        if not self._closing:
            self._down(f"disconnected ({reason})")

    def _down(self, why: str) -> None:
        self._connected.clear()
        if self.on_change is not None:
            self.on_change(False)
        if not self._said_down:   # once per outage, not at every retry
            self._said_down = True
            log.warning("MQTT: broker %s: %s; retrying every 1-30 s (events wait in the outbox)",
                        self.broker, scrub(why))

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        levels = msg.topic.split("/")
        n = len(self.prefix.split("/"))
        if len(levels) != n + 3 or levels[n + 1] != "set" or self.on_command is None:
            return
        if msg.retain:   # kept by the broker, not sent now: it would be carried out again at every reconnect
            log.warning("MQTT: ignored a retained command on %r: publish commands without retain", msg.topic[:120])
            return
        try:
            self.on_command(levels[n], levels[n + 2], bytes(msg.payload))
        except Exception:
            log.exception("MQTT: command on %s failed", msg.topic)


class MqttSink:
    """Events to ``<prefix>/<camera>/event`` through the outbox (``service/alerts.py``).

    ``send`` returns once the broker acknowledged the message (QoS 1 or 2), or
    raises DeliveryError: not connected (nothing is handed to paho, so nothing is
    queued twice), or no acknowledgement within ``timeout``. In that last case the
    message stays in paho's queue, which sends it again after a reconnect; the
    retry of the same event waits on that message instead of publishing another.
    """

    name = "mqtt"

    def __init__(self, link: MqttLink):
        self.link = link
        self.qos = max(1, link.settings.qos)   # an event must be acknowledged to count as delivered
        self.timeout = float(link.settings.timeout)
        self._inflight: dict[str, paho.MQTTMessageInfo] = {}

    def body(self, event: Event) -> bytes:
        return json.dumps(event.payload()).encode()

    def send(self, event: Event) -> None:
        info = self._inflight.get(event.id)
        if info is None:
            if not self.link.connected:
                raise DeliveryError(f"not connected to the MQTT broker {self.link.broker}")
            info = self.link.publish(self.link.topic(event.camera_id, "event"), self.body(event), self.qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS   # queued by paho: sent on reconnect, waited on here
            elif info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise DeliveryError(f"MQTT publish refused: {paho.error_string(info.rc)}")
            self._inflight[event.id] = info
        try:
            info.wait_for_publish(self.timeout)
            done = info.is_published()
        except (RuntimeError, ValueError) as exc:
            self._inflight.pop(event.id, None)
            raise DeliveryError(f"MQTT publish failed: {exc}") from None
        if not done:
            raise DeliveryError(f"the MQTT broker did not acknowledge within {self.timeout:g} s")
        self._inflight.pop(event.id, None)


class CameraTopics:
    """Each camera's retained topics, fed the observations the pipeline sets the metrics from."""

    def __init__(self, link: MqttLink):
        self.link = link
        self.evidence_on = link.settings.evidence
        self.retain = link.settings.retain

    def _put(self, cid: str, leaf: str, payload: bytes | Path) -> None:
        topic = self.link.topic(cid, leaf)
        if self.retain:
            self.link.retain(topic, payload)
            return
        if not self.link.connected:
            return
        try:
            data = payload.read_bytes() if isinstance(payload, Path) else payload
        except OSError as exc:
            log.warning("MQTT: %s not published: %s", topic, scrub(str(exc)))
            return
        self.link.client.publish(topic, data, qos=self.link.settings.qos, retain=False)

    def state(self, cid: str, state: str, kind: str | None) -> None:
        """``kind``: the open drift's, None while no drift is open."""
        self._put(cid, "state", state.encode())
        self.kind(cid, kind)

    def kind(self, cid: str, kind: str | None) -> None:
        self._put(cid, "kind", (kind or NO_KIND).encode())

    def checked(self, cid: str, similarity: float | None, at: float | None) -> None:
        if similarity is not None:
            self._put(cid, "similarity", f"{similarity:.4f}".encode())
        if at is not None:
            self._put(cid, "last_check", iso(at).encode())

    def evidence(self, cid: str, path: str) -> None:
        if self.evidence_on:
            self._put(cid, "evidence", Path(path))

    def removed(self, cid: str) -> None:
        """A camera gone from the config: its retained topics are cleared on the broker."""
        for leaf in CAMERA_LEAVES:
            self.link.retain(self.link.topic(cid, leaf), b"")
