"""Where events go: the sinks (the log, webhooks, MQTT in service/mqtt.py), each under a name of its own.

A sink's ``send`` either delivers an event or raises ``DeliveryError`` with a
message safe to log; ``service/alerts.py`` decides when to send and retries.
Webhook URLs and headers often hold tokens: they are registered as secrets
(scrubbed from every log line), never stored in the database and never put in
an event; sinks are named ``log`` and, for a webhook, its ``name:`` or else its
URL's host[:port] (never its path or query, where tokens live).
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Protocol

from camwatch.config import WebhookSettings
from camwatch.core.errors import CamwatchError, ConfigError
from camwatch.core.secrets import register_secret, scrub, url_secrets
from camwatch.sources.httpclient import HttpClient, HttpError
from camwatch.store.events import Event

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A sink did not accept an event; the message is safe to log (no URL, no token)."""


class Sink(Protocol):
    name: str

    def send(self, event: Event) -> None:
        """Deliver or raise DeliveryError; must return within a bounded time."""


class LogSink:
    """One log line per event (structured with ``--log-format json``)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None):
        self._log = logger or logging.getLogger("camwatch.events")

    def send(self, event: Event) -> None:
        level = logging.WARNING if event.type in ("drift_started", "camera_down") else logging.INFO
        extra: dict[str, object] = {"camera": event.camera_id, "event": event.type}
        if event.kind:
            extra["kind"] = event.kind
        if event.similarity is not None:
            extra["similarity"] = round(event.similarity, 4)
        if event.threshold is not None:
            extra["threshold"] = round(event.threshold, 4)
        self._log.log(level, "%s [event %s]", event.text(), event.id, extra=extra)


def webhook_sink_name(url: str) -> str:
    """A webhook's default name: its URL's host[:port] (metrics label, outbox key, log lines).

    Why the host: it is what a person recognises (``hooks.slack.com``) and holds no
    token, unlike the path or the query. Two webhooks on one host get told apart by
    ``name:`` (``build_sinks`` refuses the clash otherwise).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "webhook"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def legacy_sink_name(url: str) -> str:
    """What camwatch called a webhook before sinks had names; outbox rows may still carry it."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:8]


class WebhookSink:
    """HTTP POST of ``Event.payload()`` (format ``json``) or ``{"text": ...}`` (``slack``).

    2xx is success; anything else, a timeout or a refused connection is a
    DeliveryError to be retried. TLS certificates are verified unless the
    webhook says ``verify_tls: false``. The URL and header values are
    registered as secrets so no log line can show them.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 verify_tls: bool = True, format: str = "json", name: str | None = None):
        if format not in ("json", "slack"):
            raise CamwatchError(f"settings.webhooks: format {format!r}: expected json or slack")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = float(timeout)
        self.format = format
        self.name = name or webhook_sink_name(url)
        #: The name earlier camwatch gave this webhook (a hash of its URL): its outbox rows are renamed.
        self.legacy_name = legacy_sink_name(url)
        self._client = HttpClient(url, self.timeout, auth="basic", verify=verify_tls, name=self.name)
        register_secret(url)
        for secret in url_secrets(url, webhook=True):  # password, every query value, token-like path parts
            register_secret(secret)
        for value in self.headers.values():
            register_secret(value)
            if " " in value:  # "Bearer TOKEN": the token alone too
                register_secret(value.split(" ", 1)[1])

    @classmethod
    def from_settings(cls, ws: WebhookSettings) -> WebhookSink:
        return cls(ws.url, ws.headers or {}, ws.timeout, ws.verify_tls, ws.format or "json",
                   ws.name)

    def body(self, event: Event) -> bytes:
        doc = event.payload()
        if self.format == "slack":
            doc = {"text": doc["text"]}
        return json.dumps(doc).encode()

    def send(self, event: Event) -> None:
        """POST one event, all of it (connect, request, answer) within ``timeout`` seconds.

        The shared HttpClient bounds the whole exchange (a receiver that answers a byte
        every few seconds cannot hold the sink, and every later event, past it), sends the
        URL's user:password as basic auth unless an Authorization header is configured,
        and verifies TLS unless the webhook turned it off.
        """
        headers = {"Content-Type": "application/json", "Idempotency-Key": event.id, **self.headers}
        try:
            resp = self._client.request("POST", body=self.body(event), headers=headers,
                                        max_bytes=65536, follow_redirects=False)
        except HttpError as exc:
            raise DeliveryError(scrub(str(exc))) from None
        if not 200 <= resp.status < 300:
            raise DeliveryError(f"HTTP {resp.status}")


def build_sinks(webhooks: Iterable[WebhookSettings] = (), extra: Iterable[Sink] = ()) -> list[Sink]:
    """The log sink, ``extra`` (the MQTT sink) and one WebhookSink per configured webhook, each under a
    name of its own.

    A name given twice, or ``log``, is a ConfigError: two sinks sharing a name would share
    one outbox queue, and each event would reach only one of them.
    """
    sinks: list[Sink] = [LogSink(), *extra]
    for i, ws in enumerate(webhooks):
        sink = WebhookSink.from_settings(ws)
        clash = next((s for s in sinks if s.name == sink.name), None)
        if clash is not None:
            what = ("the log sink's name" if clash.name == "log" else "the MQTT sink's name" if clash.name == "mqtt"
                    else "the name of another webhook")
            raise ConfigError(f"settings.webhooks[{i}]: its name {sink.name!r} is {what}; "
                              f"give it a name: of its own")
        sinks.append(sink)
    return sinks
