"""Events (drift started/cleared, camera down/up) and their durable outbox.

An alert that is lost is worse than one that arrives late, so an event is
written to SQLite together with one outbox row per sink in ONE transaction
(``synchronous=FULL``) before anything is sent; ``camwatch.service.alerts``
delivers the rows and marks each delivered only after its sink accepted it.

Events live in their own file, ``<state_dir>/events.db``, so their schema and
write load are independent of the reference store; with ``settings.store``
set they live in that PostgreSQL database instead (``store.pg``), beside the
references, one outbox for the whole fleet. Nothing here holds a URL or a
secret: sinks are known by name only.

Several dispatchers may drain one outbox (the members of a fleet; on SQLite,
tests): ``due`` *claims* the rows it returns for its ``owner`` for
``CLAIM_LEASE_S``, in one transaction: ``SELECT ... FOR UPDATE SKIP LOCKED``
on PostgreSQL, SQLite's write lock (``BEGIN IMMEDIATE``) on SQLite. Another
owner sees neither rows being claimed nor rows claimed, so each delivery is
sent by one member. A claim ends when the row is marked delivered or failed,
or when its lease runs out (its owner died mid-delivery: another member sends
it again, the rare duplicate the idempotency key is for). The default owner is
this host and state directory, which the state-directory lock
(``store.lock``) makes one daemon's at a time and which stays the same across
a restart: a restarted daemon takes up its own claims at once. A SQLite file
that takes no write (a full disk) is read without a claim: that lock already
makes its rows one daemon's.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from camwatch.core.errors import StoreError
from camwatch.core.secrets import scrub
from camwatch.core.types import EVENT_TYPES
from camwatch.store import migrations
from camwatch.store.backend import POSTGRESQL, Database, Param, is_postgres, marks
from camwatch.store.db import open_database, prepare_state_dir

DB_NAME = "events.db"
#: What moving a damaged events.db aside costs, named in its error.
_LOST = "the event history and any undelivered alerts will be gone"

# The schema's steps per backend (``store.migrations``); events.db's version is len(MIGRATIONS).
MIGRATIONS = migrations.EVENTS
PG_MIGRATIONS = migrations.EVENTS_PG
SCHEMA_VERSION = len(MIGRATIONS)
#: The ``details`` key of an event owed while its camera's alerts were silenced (unix time the
#: silence lasts until): recorded, told by the log sink only (``service.alerts``).
SILENCED_UNTIL = "silenced_until"

#: How long a claimed delivery stays its owner's: longer than a batch of deliveries takes
#: (50 events, each within a webhook's timeout), short enough that a dead member's rows move on.
CLAIM_LEASE_S = 300.0


def default_owner(state_dir: str | os.PathLike[str]) -> str:
    """Who claims deliveries (see the module doc): this host and state directory."""
    return f"{socket.gethostname()}:{Path(state_dir).resolve()}"


@dataclass
class Event:
    """Something a person may need to act on, as stored and as delivered.

    ``id`` is a uuid4 string, generated once and kept through every retry:
    it is the idempotency key receivers deduplicate on. ``evidence`` is the
    path of the evidence JPEG (drift_started) or None. ``time`` is unix
    seconds. ``message`` must not hold a URL or a secret (use
    ``CameraConfig.redacted_url`` if a URL is needed at all). ``details`` holds
    the cues behind a decision (e.g. structure distance and scale, sharpness
    ratio), so a person or a script can see why without reading the log at
    debug level; names and values only, never a URL or a secret.
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
    details: dict[str, float | str] = field(default_factory=dict)

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
            "reference_accepted": "view accepted as the reference",
            "reference_added": "reference added",
            "reference_removed": "reference removed",
            "camera_silenced": "alerts silenced",
            "camera_unsilenced": "alerts no longer silenced",
            "camera_disabled": "checks disabled",
            "camera_enabled": "checks enabled",
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
            "details": dict(self.details),
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
    """Events and their outbox in ``<state_dir>/events.db``, opened by ``store.db`` (WAL,
    synchronous=FULL, checked, migrated), or in the PostgreSQL database ``url`` names.

    Thread-safe: one connection behind a lock (a pool on PostgreSQL); statements
    are small. Other processes (``camwatch events`` while the daemon runs, other
    members) go through the database's locking. ``create=False`` opens an
    existing state directory only (``camwatch events`` reads; it must not make
    folders). ``owner`` claims deliveries in ``due`` (``default_owner``).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, url: str | None = None, create: bool = True,
                 verify: bool = True, owner: str | None = None):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self.owner = owner or default_owner(self.state_dir)
        self._db: Database
        if is_postgres(url):
            from camwatch.store.pg import PgDatabase

            db = self._db = PgDatabase(str(url), "events")
            try:
                db.migrate(PG_MIGRATIONS)
            except BaseException:
                db.close()
                raise
        else:
            if create:
                prepare_state_dir(self.state_dir)
            self._db = open_database(self.path, MIGRATIONS, lost=_LOST, verify=verify)
        self.where = self._db.where

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------
    def record(self, event: Event, sinks: Iterable[str] = ()) -> None:
        """Store ``event`` and one pending outbox row per sink, atomically and durably.

        Returns only after the commit reached the disk; recording the same
        event id twice is a no-op (so a retried record cannot duplicate).
        """
        row = (event.id, event.camera_id, event.type, event.kind, event.similarity,
               event.threshold, event.evidence, scrub(event.message), event.time, _details_json(event.details))
        with self._db.transaction(f"record event for camera {event.camera_id}") as conn:
            cur = conn.execute(
                "INSERT INTO events (id, camera_id, type, kind, similarity, threshold,"
                " evidence, message, time, details) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING", row)
            if cur.rowcount:
                conn.executemany(
                    "INSERT INTO outbox (event_id, sink, next_attempt) VALUES (?,?,0) ON CONFLICT DO NOTHING",
                    [(event.id, s) for s in dict.fromkeys(sinks)])

    def due(self, sink: str, now: float | None = None, limit: int = 50) -> builtins.list[tuple[Event, int]]:
        """Pending deliveries of ``sink`` whose retry time has come, oldest event first, claimed for ``owner``.

        Rows another owner claims (lease not run out) are not returned, nor are rows another
        transaction is claiming right now (PostgreSQL: SKIP LOCKED; SQLite: one writer at a time).
        Rows this owner already claimed are returned again (a retry after a failed send goes on at once).
        """
        now = time.time() if now is None else now
        pg = self._db.dialect == POSTGRESQL
        select = ("SELECT e.id, e.camera_id, e.type, e.kind, e.similarity, e.threshold, e.evidence,"
                  " e.message, e.time, e.details, o.attempts FROM outbox o JOIN events e ON e.id = o.event_id"
                  " WHERE o.sink = ? AND o.delivered_at IS NULL AND o.next_attempt <= ?"
                  " AND (o.claimed_until IS NULL OR o.claimed_until <= ? OR o.claimed_by = ?)"
                  f" ORDER BY e.seq LIMIT ?{' FOR UPDATE OF o SKIP LOCKED' if pg else ''}")
        params = (sink, now, now, self.owner, limit)
        try:
            # Not checkpointed on SQLite: a claim lost with a deleted log only means the next due claims again.
            with self._db.transaction(f"claim deliveries to {sink}", checkpoint=False) as conn:
                rows = conn.execute(select, params).fetchall()
                if rows:
                    ids = [r[0] for r in rows]
                    conn.execute(f"UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE sink = ?"
                                 f" AND event_id IN ({marks(len(ids))})",
                                 (self.owner, now + CLAIM_LEASE_S, sink, *ids))
        except StoreError:
            if pg:
                raise
            # A SQLite file that takes no write (a full disk) still delivers what it holds: one daemon
            # per events.db (store.lock) makes its rows this daemon's without a claim, and the marks it
            # cannot write wait in the dispatcher's backlog.
            rows = self._db.read(select, params)
        return [(_event(r[:10]), int(r[10])) for r in rows]

    def next_due_time(self, sink: str) -> float | None:
        """When the earliest pending delivery of ``sink`` may be tried, or None."""
        rows = self._db.read("SELECT MIN(next_attempt) FROM outbox WHERE sink = ? AND delivered_at IS NULL",
                             (sink,))
        return None if rows[0][0] is None else float(rows[0][0])

    def mark_delivered(self, event_id: str, sink: str) -> None:
        self._db.write("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL,"
                       " claimed_by = NULL, claimed_until = NULL"
                       " WHERE event_id = ? AND sink = ?", (time.time(), event_id, sink),
                       f"mark event {event_id} delivered to {sink}")

    def mark_failed(self, event_id: str, sink: str, error: str, retry_at: float) -> None:
        self._db.write("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?,"
                       " claimed_by = NULL, claimed_until = NULL WHERE event_id = ? AND sink = ?",
                       (scrub(error)[:500], retry_at, event_id, sink),
                       f"record a failed delivery of event {event_id} to {sink}")

    def postpone(self, sink: str, until: float) -> None:
        """Push every pending row of a failing sink to ``until`` (one probe, not a flood)."""
        self._db.write("UPDATE outbox SET next_attempt = ? WHERE sink = ? AND delivered_at IS NULL"
                       " AND next_attempt < ?", (until, sink, until), f"postpone deliveries to {sink}")

    def reschedule_now(self, sink: str) -> None:
        """Make every pending row of ``sink`` due now (at start-up: resume at once)."""
        self._db.write("UPDATE outbox SET next_attempt = 0 WHERE sink = ? AND delivered_at IS NULL",
                       (sink,), f"resume deliveries to {sink}")

    def rename_sink(self, old: str, new: str) -> int:
        """Give ``old``'s outbox rows to ``new`` (a sink renamed: its pending deliveries follow it).

        A row ``new`` already has for the same event stays as it is. Returns the rows moved.
        """
        return self._db.write("UPDATE outbox SET sink = ? WHERE sink = ? AND NOT EXISTS (SELECT 1 FROM outbox"
                              " o WHERE o.event_id = outbox.event_id AND o.sink = ?)", (new, old, new),
                              f"rename deliveries of {old} to {new}")

    def prune(self, before: float) -> int:
        """Forget events older than ``before`` (unix time) that every sink has delivered.

        Why: the history would otherwise grow for as long as the daemon runs. An
        event still waiting for any sink is never removed, however old: nothing
        is lost because a webhook was down. Returns how many events went.
        """
        old = ("SELECT id FROM events e WHERE e.time < ? AND NOT EXISTS (SELECT 1 FROM outbox o"
               " WHERE o.event_id = e.id AND o.delivered_at IS NULL)")
        with self._db.transaction("prune old events") as conn:
            conn.execute(f"DELETE FROM outbox WHERE event_id IN ({old})", (before,))
            gone = conn.execute(f"DELETE FROM events WHERE id IN ({old})", (before,)).rowcount
        return int(gone)

    # ---- reading -------------------------------------------------------------------
    def pending_count(self, sink: str | None = None) -> int:
        if sink is None:
            rows = self._db.read("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
        else:
            rows = self._db.read("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND sink = ?", (sink,))
        return int(rows[0][0])

    def pending_sinks(self) -> set[str]:
        return {str(r[0]) for r in self._db.read("SELECT DISTINCT sink FROM outbox WHERE delivered_at IS NULL")}

    def list(self, camera_id: str | None = None, since: float | None = None,
             limit: int = 200) -> builtins.list[Event]:
        """Events, newest last (the ``limit`` newest that match)."""
        sql = ("SELECT id, camera_id, type, kind, similarity, threshold, evidence, message, time, details"
               " FROM events WHERE 1=1")
        params: builtins.list[Param] = []
        if camera_id is not None:
            sql += " AND camera_id = ?"
            params.append(camera_id)
        if since is not None:
            sql += " AND time >= ?"
            params.append(since)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(max(0, int(limit)))
        return [_event(r) for r in reversed(self._db.read(sql, params))]

    def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        rows = self._db.read("SELECT sink, attempts, delivered_at, last_error FROM outbox WHERE event_id = ?"
                             " ORDER BY sink", (event_id,))
        return [Delivery(*r) for r in rows]


def _details_json(details: dict[str, float | str]) -> str:
    """``details`` as stored: JSON, strings scrubbed, a number JSON cannot hold (nan, inf) as its text."""
    clean: dict[str, float | str] = {}
    for key, value in details.items():
        if isinstance(value, str):
            clean[str(key)] = scrub(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            clean[str(key)] = float(value)
        else:
            clean[str(key)] = str(value)
    return json.dumps(clean, sort_keys=True)


def _details(text: str | None) -> dict[str, float | str]:
    """The stored JSON back; a row that is not an object of names gives nothing rather than fail a read."""
    try:
        doc = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): v for k, v in doc.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}


def _event(r: Sequence[Any]) -> Event:
    return Event(id=r[0], camera_id=r[1], type=r[2], kind=r[3], similarity=r[4], threshold=r[5],
                 evidence=r[6], message=r[7] or "", time=r[8], details=_details(r[9]))
