"""Events (drift started/cleared, camera down/up), their durable outbox, and the sinks.

An alert that is lost is worse than one that arrives late, so an event is
written to SQLite together with one outbox row per sink in ONE transaction
(``synchronous=FULL``) before anything is sent. A background ``Dispatcher``
then delivers pending rows, one worker thread per sink (a slow webhook never
delays the log), retrying with exponential backoff for as long as it takes. A
webhook down for an hour, a restart, or ``kill -9`` mid-delivery lose nothing:
a row is marked delivered only after the sink accepted it. The price is a rare
duplicate (killed after sending, before marking), so every delivery carries
the event's id as its idempotency key (``id`` in the body and an
``Idempotency-Key`` header) for a receiver to drop repeats.

Events live in their own file, ``<state_dir>/events.db``, so their schema and
write load are independent of the reference store.

Webhook URLs and headers often hold tokens: they are registered as secrets
(scrubbed from every log line), never stored in the database and never put in
an event; sinks are named ``log`` and ``webhook-<8 hex of sha256(url)>``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import random
import re
import socket
import sqlite3
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from camwatch.core.errors import CamwatchError, StoreError
from camwatch.core.secrets import register_secret, scrub

log = logging.getLogger(__name__)

DB_NAME = "events.db"
BUSY_TIMEOUT_MS = 10_000
EVENT_TYPES = ("drift_started", "drift_cleared", "camera_down", "camera_up")
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,          -- uuid4, the idempotency key
    camera_id   TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    kind        TEXT,
    similarity  REAL,
    threshold   REAL,
    evidence    TEXT,
    message     TEXT    NOT NULL DEFAULT '',
    time        REAL    NOT NULL                  -- unix seconds
);
CREATE INDEX IF NOT EXISTS events_camera_time ON events (camera_id, time);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS outbox (
    event_id     TEXT    NOT NULL REFERENCES events (id),
    sink         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL    NOT NULL DEFAULT 0,      -- unix seconds
    delivered_at REAL,                            -- NULL while pending
    last_error   TEXT,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, delivered_at, next_attempt);
"""


@dataclass
class Event:
    """Something a person may need to act on, as stored and as delivered.

    ``id`` is a uuid4 string, generated once and kept through every retry:
    it is the idempotency key receivers deduplicate on. ``evidence`` is the
    path of the evidence JPEG (drift_started) or None. ``time`` is unix
    seconds. ``message`` must not hold a URL or a secret (use
    ``CameraConfig.redacted_url`` if a URL is needed at all).
    """

    camera_id: str
    type: str
    kind: str | None = None
    similarity: float | None = None
    threshold: float | None = None
    evidence: str | None = None
    message: str = ""
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; expected one of {', '.join(EVENT_TYPES)}")

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.time, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    def text(self) -> str:
        """One human line, also the Slack-compatible ``text`` field."""
        title = {
            "drift_started": "view drifted",
            "drift_cleared": "view back to normal",
            "camera_down": "camera unavailable",
            "camera_up": "camera available again",
        }[self.type]
        parts = [f"camwatch: {self.camera_id}: {title}"]
        if self.kind and self.type == "drift_started":
            parts[0] += f" ({self.kind})"
        if self.similarity is not None and self.threshold is not None:
            parts.append(f"similarity {self.similarity:.3f} vs threshold {self.threshold:.3f}")
        if self.message:
            parts.append(self.message)
        parts.append(self.iso_time)
        return scrub(" - ".join(parts))

    def payload(self) -> dict[str, Any]:
        """The documented JSON body a webhook receives (docs/deploy.md, "Webhooks")."""
        return {
            "id": self.id,
            "idempotency_key": self.id,
            "type": self.type,
            "camera": self.camera_id,
            "kind": self.kind,
            "similarity": self.similarity,
            "threshold": self.threshold,
            "time": self.iso_time,
            "timestamp": self.time,
            "message": scrub(self.message),
            "evidence": self.evidence,
            "text": self.text(),
            "source": "camwatch",
        }


@dataclass(frozen=True)
class Delivery:
    """The outbox state of one event for one sink."""

    sink: str
    attempts: int
    delivered_at: float | None
    last_error: str | None


class EventStore:
    """Events and their outbox in ``<state_dir>/events.db`` (SQLite, WAL, synchronous=FULL).

    Thread-safe: one connection behind a lock; statements are small. Other
    processes (``camwatch events`` while the daemon runs) go through SQLite's
    locking and the busy timeout.
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, create: bool = True):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._lock = threading.RLock()
        if create:
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"state dir {self.state_dir}: cannot create: {exc.strerror or exc}") from None
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise StoreError(f"state dir {self.state_dir}: is a file, not a directory")
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: events schema version {version} is newer than this "
                                 f"camwatch understands ({SCHEMA_VERSION}); upgrade camwatch")
            self._conn.executescript(SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the events database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---- writing -------------------------------------------------------------------
    def record(self, event: Event, sinks: Iterable[str] = ()) -> None:
        """Store ``event`` and one pending outbox row per sink, atomically and durably.

        Returns only after the commit reached the disk; recording the same
        event id twice is a no-op (so a retried record cannot duplicate).
        """
        row = (event.id, event.camera_id, event.type, event.kind, event.similarity,
               event.threshold, event.evidence, scrub(event.message), event.time)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO events (id, camera_id, type, kind, similarity, threshold,"
                    " evidence, message, time) VALUES (?,?,?,?,?,?,?,?,?)", row)
                if cur.rowcount:
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO outbox (event_id, sink, next_attempt) VALUES (?,?,0)",
                        [(event.id, s) for s in dict.fromkeys(sinks)])
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot record event for camera {event.camera_id}: {exc}") from None

    def due(self, sink: str, now: float | None = None, limit: int = 50) -> list[tuple[Event, int]]:
        """Pending deliveries of ``sink`` whose retry time has come, oldest event first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._conn.execute(
                "SELECT e.id, e.camera_id, e.type, e.kind, e.similarity, e.threshold, e.evidence,"
                " e.message, e.time, o.attempts FROM outbox o JOIN events e ON e.id = o.event_id"
                " WHERE o.sink = ? AND o.delivered_at IS NULL AND o.next_attempt <= ?"
                " ORDER BY e.seq LIMIT ?", (sink, now, limit)).fetchall()
        return [(_event(r[:9]), r[9]) for r in rows]

    def next_due_time(self, sink: str) -> float | None:
        """When the earliest pending delivery of ``sink`` may be tried, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE sink = ? AND delivered_at IS NULL",
                (sink,)).fetchone()
        return row[0]

    def mark_delivered(self, event_id: str, sink: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
                " WHERE event_id = ? AND sink = ?", (time.time(), event_id, sink))

    def mark_failed(self, event_id: str, sink: str, error: str, retry_at: float) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
                " WHERE event_id = ? AND sink = ?", (scrub(error)[:500], retry_at, event_id, sink))

    def postpone(self, sink: str, until: float) -> None:
        """Push every pending row of a failing sink to ``until`` (one probe, not a flood)."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET next_attempt = MAX(next_attempt, ?) WHERE sink = ? AND delivered_at IS NULL",
                (until, sink))

    def reschedule_now(self, sink: str) -> None:
        """Make every pending row of ``sink`` due now (at start-up: resume at once)."""
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET next_attempt = 0 WHERE sink = ? AND delivered_at IS NULL", (sink,))

    def prune(self, before: float) -> int:
        """Forget events older than ``before`` (unix time) that every sink has delivered.

        Why: the history would otherwise grow for as long as the daemon runs. An
        event still waiting for any sink is never removed, however old: nothing
        is lost because a webhook was down. Returns how many events went.
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                old = "SELECT id FROM events e WHERE e.time < ? AND NOT EXISTS (SELECT 1 FROM outbox o" \
                      " WHERE o.event_id = e.id AND o.delivered_at IS NULL)"
                self._conn.execute(f"DELETE FROM outbox WHERE event_id IN ({old})", (before,))
                gone = self._conn.execute(f"DELETE FROM events WHERE id IN ({old})", (before,)).rowcount
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot prune old events: {exc}") from None
        return int(gone)

    # ---- reading -------------------------------------------------------------------
    def pending_count(self, sink: str | None = None) -> int:
        with self._lock:
            if sink is None:
                return self._conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
            return self._conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND sink = ?", (sink,)).fetchone()[0]

    def pending_sinks(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._conn.execute(
                "SELECT DISTINCT sink FROM outbox WHERE delivered_at IS NULL")}

    def list(self, camera_id: str | None = None, since: float | None = None,
             limit: int = 200) -> list[Event]:
        """Events, newest last (the ``limit`` newest that match)."""
        sql = ("SELECT id, camera_id, type, kind, similarity, threshold, evidence, message, time"
               " FROM events WHERE 1=1")
        params: list[Any] = []
        if camera_id is not None:
            sql += " AND camera_id = ?"
            params.append(camera_id)
        if since is not None:
            sql += " AND time >= ?"
            params.append(since)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(max(0, int(limit)))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_event(r) for r in reversed(rows)]

    def deliveries(self, event_id: str) -> list[Delivery]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT sink, attempts, delivered_at, last_error FROM outbox WHERE event_id = ?"
                " ORDER BY sink", (event_id,)).fetchall()
        return [Delivery(*r) for r in rows]


def _event(r: Sequence[Any]) -> Event:
    return Event(id=r[0], camera_id=r[1], type=r[2], kind=r[3], similarity=r[4], threshold=r[5],
                 evidence=r[6], message=r[7] or "", time=r[8])


# ---- sinks --------------------------------------------------------------------------------
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
        self._log = logger or logging.getLogger("camwatch.store.events")

    def send(self, event: Event) -> None:
        level = logging.WARNING if event.type in ("drift_started", "camera_down") else logging.INFO
        extra = {"camera": event.camera_id, "event": event.type}
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
        self._ssl = ssl.create_default_context()
        if not verify_tls:
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
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
    def from_settings(cls, ws: Any) -> WebhookSink:
        """Build from a ``config.WebhookSettings`` (url, headers, timeout, verify_tls, format)."""
        return cls(ws.url, getattr(ws, "headers", None) or {}, getattr(ws, "timeout", 10.0),
                   getattr(ws, "verify_tls", True), getattr(ws, "format", "json") or "json")

    def body(self, event: Event) -> bytes:
        doc = event.payload()
        if self.format == "slack":
            doc = {"text": doc["text"]}
        return json.dumps(doc).encode()

    def send(self, event: Event) -> None:
        """POST one event, all of it (connect, request, answer) within ``timeout`` seconds.

        Why not urllib's timeout: it bounds each socket operation, so a receiver that
        answers a byte every few seconds held the sink (and every later event) for as
        long as it liked. A timer shuts the socket down at the deadline instead.
        """
        headers = {"Content-Type": "application/json", "User-Agent": "camwatch",
                   "Idempotency-Key": event.id, **self.headers}
        parts = urllib.parse.urlsplit(self.url)
        if parts.username is not None:   # https://user:pass@host/...: HTTP basic auth, as curl does
            cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers.setdefault("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
        try:
            if parts.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    parts.hostname or "", parts.port, timeout=self.timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        except ValueError as exc:   # a port that is not a number
            raise DeliveryError(scrub(f"bad webhook URL: {exc}")) from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        expired = threading.Event()
        late = f"no complete answer within {self.timeout:g} s"

        def cut() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)   # wakes a recv or send blocked in another thread
                except OSError:
                    pass

        guard = threading.Timer(self.timeout, cut)
        guard.daemon = True
        guard.start()
        try:
            conn.request("POST", path, body=self.body(event), headers=headers)
            resp = conn.getresponse()
            resp.read(65536)
            status = resp.status
        except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, bad status line
            if expired.is_set():
                raise DeliveryError(late) from None
            raise DeliveryError(scrub(f"{type(exc).__name__}: {exc}")) from None
        finally:
            guard.cancel()
            conn.close()
        if expired.is_set():   # the timer fired just as the answer completed
            raise DeliveryError(late)
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")


def build_sinks(webhooks: Iterable[Any] = ()) -> list[Sink]:
    """The log sink plus one WebhookSink per configured webhook."""
    sinks: list[Sink] = [LogSink()]
    for ws in webhooks:
        sinks.append(WebhookSink.from_settings(ws))
    return sinks


# ---- dispatcher ---------------------------------------------------------------------------
@dataclass
class Backoff:
    """Retry delays: base * 2**(attempts-1), capped, with +-20% jitter."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempts: int) -> float:
        d = min(self.cap, self.base * (2 ** max(0, attempts - 1)))
        return d * random.uniform(0.8, 1.2)


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
                 metrics: Any = None, poll: float = 5.0):
        self.store = store
        self.sinks = list(sinks)
        self.backoff = backoff or Backoff()
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


# ---- camwatch events ---------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """``2h``/``30m``/``3d`` (ago) or an ISO time (naive = local time) -> unix seconds."""
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2).lower()]
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CamwatchError(f"--since {text!r}: expected a duration such as 30m, 2h, 3d "
                            f"or an ISO time such as 2024-05-01T08:00") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.timestamp()


def cli_events(args: Any) -> int:
    """``camwatch events [--camera C] [--since 2h|ISO] [--json] [--limit N]``."""
    from camwatch.config.loader import load_config

    config = load_config(args.config)
    since = parse_since(args.since) if getattr(args, "since", None) else None
    camera = getattr(args, "camera", None)
    path = Path(config.settings.state_dir) / DB_NAME
    if not path.exists():
        if camera:
            config.camera(camera)  # an unknown id is an error even with no events yet
        events: list[Event] = []
        store = None
    else:
        store = EventStore(config.settings.state_dir, create=False)
        events = store.list(camera, since, getattr(args, "limit", 200))
        if camera and not events:
            config.camera(camera)  # unknown and never seen: error with did-you-mean
    try:
        if getattr(args, "json", False):
            docs = []
            for e in events:
                doc = e.payload()
                doc.pop("idempotency_key", None)
                doc["deliveries"] = {d.sink: ({"delivered": True} if d.delivered_at else
                                              {"delivered": False, "attempts": d.attempts,
                                               "last_error": d.last_error})
                                     for d in (store.deliveries(e.id) if store else [])}
                docs.append(doc)
            print(json.dumps({"events": docs}, indent=2))
        elif not events:
            print("no events" + (f" for camera {camera}" if camera else "")
                  + (" in that period" if since is not None else ""))
        else:
            for e in events:
                local = datetime.fromtimestamp(e.time).astimezone().isoformat(timespec="seconds")
                sim = (f"  similarity {e.similarity:.3f}/{e.threshold:.3f}"
                       if e.similarity is not None and e.threshold is not None else "")
                pending = [d.sink for d in store.deliveries(e.id) if d.delivered_at is None] if store else []
                extra = f"  (pending: {', '.join(pending)})" if pending else ""
                kind = f" {e.kind}" if e.kind else ""
                print(scrub(f"{local}  {e.camera_id:<16} {e.type}{kind}{sim}"
                            f"{'  ' + e.message if e.message else ''}{extra}"))
    finally:
        if store is not None:
            store.close()
    return 0
