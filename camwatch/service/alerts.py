"""Delivering events: the sinks (log, webhooks) and the Dispatcher that drains the outbox.

The outbox itself (events and one row per sink, written in one durable
transaction before anything is sent) is ``camwatch.store.events``; this module
is what reads it back and delivers. One worker thread per sink (a slow webhook
never delays the log), retrying with exponential backoff for as long as it
takes: a row is marked delivered only after the sink accepted it, so a
webhook down for an hour, a restart, or ``kill -9`` mid-delivery lose
nothing. The price is a rare duplicate (killed after sending, before
marking), so every delivery carries the event's id as its idempotency key
(``id`` in the body and an ``Idempotency-Key`` header).

Webhook URLs and headers often hold tokens: they are registered as secrets
(scrubbed from every log line), never stored in the database and never put in
an event; sinks are named ``log`` and ``webhook-<8 hex of sha256(url)>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from camwatch.config import WebhookSettings
from camwatch.core.backoff import Backoff
from camwatch.core.errors import CamwatchError
from camwatch.core.secrets import register_secret, scrub
from camwatch.service.metrics import Metrics
from camwatch.sources.httpclient import HttpClient, HttpError
from camwatch.store.events import Event, EventStore

log = logging.getLogger(__name__)


def delivery_backoff() -> Backoff:
    """Webhook retries: 1 s doubling to 5 min, keeping most of each delay (a receiver that is down
    is not probed again at once)."""
    return Backoff(base=1.0, cap=300.0, jitter=0.2)


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
    """A stable, bounded, secret-free name for a webhook (metrics label, outbox key)."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:8]


class WebhookSink:
    """HTTP POST of ``Event.payload()`` (format ``json``) or ``{"text": ...}`` (``slack``).

    2xx is success; anything else, a timeout or a refused connection is a
    DeliveryError to be retried. TLS certificates are verified unless the
    webhook says ``verify_tls: false``. The URL and header values are
    registered as secrets so no log line can show them.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 verify_tls: bool = True, format: str = "json"):
        if format not in ("json", "slack"):
            raise CamwatchError(f"settings.webhooks: format {format!r}: expected json or slack")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = float(timeout)
        self.format = format
        self.name = webhook_sink_name(url)
        self._client = HttpClient(url, self.timeout, auth="basic", verify=verify_tls, name=self.name)
        register_secret(url)
        password = urllib.parse.urlsplit(url).password
        if password:
            register_secret(password)
            register_secret(urllib.parse.unquote(password))
        for m in re.finditer(r"[?&][^=&]+=([^&#]+)", url):
            register_secret(m.group(1))
        for value in self.headers.values():
            register_secret(value)
            if " " in value:  # "Bearer TOKEN": the token alone too
                register_secret(value.split(" ", 1)[1])

    @classmethod
    def from_settings(cls, ws: WebhookSettings) -> WebhookSink:
        return cls(ws.url, ws.headers or {}, ws.timeout, ws.verify_tls, ws.format or "json")

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


def build_sinks(webhooks: Iterable[WebhookSettings] = ()) -> list[Sink]:
    """The log sink plus one WebhookSink per configured webhook."""
    sinks: list[Sink] = [LogSink()]
    for ws in webhooks:
        sinks.append(WebhookSink.from_settings(ws))
    return sinks


class Dispatcher:
    """Delivers pending outbox rows: one background thread per sink.

    ``publish(event)`` records the event (durably) for every sink and wakes
    the workers. A sink that fails is retried with exponential backoff and
    all its pending rows wait with it (one probe per delay instead of a
    flood); rows of a sink no longer configured stay in the outbox until it
    is configured again. ``stop()`` returns within about the longest webhook
    timeout.
    """

    def __init__(self, store: EventStore, sinks: Sequence[Sink], backoff: Backoff | None = None,
                 metrics: Metrics | None = None, poll: float = 5.0):
        self.store = store
        self.sinks = list(sinks)
        self.backoff = backoff or delivery_backoff()
        self.metrics = metrics
        self.poll = poll
        self._stop = threading.Event()
        self._wake = {s.name: threading.Event() for s in self.sinks}
        self._threads: list[threading.Thread] = []
        if metrics is not None:
            metrics.sinks_added(s.name for s in self.sinks)

    @property
    def sink_names(self) -> list[str]:
        return [s.name for s in self.sinks]

    def start(self) -> None:
        """Resume every pending delivery now, then keep delivering in the background."""
        orphans = self.store.pending_sinks() - set(self.sink_names)
        for name in sorted(orphans):
            log.warning("%d event deliveries wait for sink %s, which is no longer configured; "
                        "they are kept until it is", self.store.pending_count(name), name)
        for sink in self.sinks:
            self.store.reschedule_now(sink.name)
            t = threading.Thread(target=self._run, args=(sink,), name=f"events-{sink.name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._update_pending()

    def publish(self, event: Event) -> Event:
        """Record ``event`` with an outbox row per sink, then wake the workers."""
        self.store.record(event, self.sink_names)
        self._update_pending()
        for w in self._wake.values():
            w.set()
        return event

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for w in self._wake.values():
            w.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _update_pending(self) -> None:
        if self.metrics is not None:
            try:
                self.metrics.set_events_pending(self.store.pending_count())
            except Exception:  # metrics must never stop delivery
                pass

    def _run(self, sink: Sink) -> None:
        wake = self._wake[sink.name]
        while not self._stop.is_set():
            try:
                self._deliver_due(sink)
                nxt = self.store.next_due_time(sink.name)
            except Exception:
                log.exception("event delivery to %s failed unexpectedly; retrying", sink.name)
                nxt = None
            wait = self.poll if nxt is None else min(self.poll, max(0.0, nxt - time.time()))
            if wait > 0:
                wake.wait(wait)
            wake.clear()

    def _deliver_due(self, sink: Sink) -> None:
        while not self._stop.is_set():
            batch = self.store.due(sink.name)
            if not batch:
                return
            for event, attempts in batch:
                if self._stop.is_set():
                    return
                try:
                    sink.send(event)
                except Exception as exc:  # DeliveryError, or a bug in a sink: retry either way
                    err = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
                    retry_at = time.time() + self.backoff.delay(attempts + 1)
                    self.store.mark_failed(event.id, sink.name, err, retry_at)
                    self.store.postpone(sink.name, retry_at)
                    if self.metrics is not None:
                        self.metrics.delivery(sink.name, False)
                    log.warning("event %s for camera %s: delivery to %s failed (attempt %d): %s; "
                                "retry in %.0fs", event.id, event.camera_id, sink.name, attempts + 1,
                                scrub(err), retry_at - time.time())
                    self._update_pending()
                    return
                self.store.mark_delivered(event.id, sink.name)
                if self.metrics is not None:
                    self.metrics.delivery(sink.name, True)
                self._update_pending()
