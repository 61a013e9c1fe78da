"""Delivering events: the Dispatcher that drains the outbox into the sinks (service/sinks.py).

The outbox itself (events and one row per sink, written in one durable
transaction before anything is sent) is ``camwatch.store.events``; this module
is what reads it back and delivers. One worker thread per sink (a slow webhook
never delays the log), retrying with exponential backoff for as long as it
takes: a row is marked delivered only after the sink accepted it, so a
webhook down for an hour, a restart, or ``kill -9`` mid-delivery lose
nothing. The price is a rare duplicate (killed after sending, before
marking), so every delivery carries the event's id as its idempotency key
(``id`` in the body and an ``Idempotency-Key`` header).

An event the store cannot take (disk full, read-only, I/O error) is not
dropped: it waits in memory, in order, in a bounded ``Backlog`` shared by the
daemon's dispatchers, and is written, then delivered, once the store takes
writes again; the outage is logged once, shown by ``camwatch_store_ok`` and
``camwatch_events_unwritten`` and in systemd's status line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from camwatch.core.backoff import Backoff
from camwatch.core.errors import StoreError
from camwatch.core.secrets import scrub
from camwatch.service.metrics import Metrics
from camwatch.service.sinks import DeliveryError, Sink
from camwatch.store.events import SILENCED_UNTIL, Event, EventStore

log = logging.getLogger(__name__)


def delivery_backoff() -> Backoff:
    """Webhook retries: 1 s doubling to 5 min, keeping most of each delay (a receiver that is down
    is not probed again at once)."""
    return Backoff(base=1.0, cap=300.0, jitter=0.2)


#: Events kept in memory while the events store refuses writes; past it, the newest are dropped.
HOLD_LIMIT = 10_000
#: How often the workers try held events (and marks) again while the store is failing.
HOLD_RETRY_S = 2.0


class Backlog:
    """What the events store owes while it cannot be written: events, and delivery marks.

    Why in memory and bounded: an event the disk refused (full, read-only, I/O error)
    must not be lost, nor take the daemon down; ``limit`` events (oldest first) are kept
    and every later one is counted as dropped. ``events`` is in publish order and a new
    event queues behind it while it is non-empty, so nothing overtakes an earlier event
    of its camera. ``marks`` are deliveries a sink accepted but the store could not
    record: they are not sent again. One Backlog outlives the daemon's dispatchers (a
    reload replaces the dispatcher, not what it owes). ``on_change`` is called when the
    store starts or stops failing (it must not block).
    """

    def __init__(self, limit: int = HOLD_LIMIT, on_change: Callable[[], object] | None = None):
        self.limit = limit
        self.on_change = on_change
        self.lock = threading.RLock()
        self.events: deque[Event] = deque()
        self.marks: dict[str, set[str]] = {}          # sink -> event ids sent but not marked
        self.dropped = 0                              # since start
        self.failing_since: float | None = None       # unix time of the first failure of this outage
        self.error = ""                               # the latest failure, for the status line
        self._outage_dropped = 0
        self._outage_written = 0                      # held events written since the outage began

    @property
    def ok(self) -> bool:
        return self.failing_since is None

    def owes(self) -> bool:
        """Whether anything still waits to be written (events or delivery marks)."""
        with self.lock:
            return bool(self.events) or any(self.marks.values())

    def describe(self) -> str:
        """One line for systemd's status and the like; "" while the store is fine."""
        if self.ok:
            return ""
        with self.lock:
            held, dropped = len(self.events), self._outage_dropped
        line = f"EVENTS STORE FAILING: {held} event(s) held in memory"
        return line + (f", {dropped} dropped" if dropped else "")


class Dispatcher:
    """Delivers pending outbox rows: one background thread per sink.

    ``publish(event)`` records the event (durably) for every sink and wakes
    the workers; if the store refuses it, the event waits in ``backlog`` and the
    workers write it when they can (every ``HOLD_RETRY_S``). A sink that fails is
    retried with exponential backoff and all its pending rows wait with it (one
    probe per delay instead of a flood); rows of a sink no longer configured
    stay in the outbox until it is configured again. ``stop()`` returns within
    about the longest webhook timeout.
    """

    def __init__(self, store: EventStore, sinks: Sequence[Sink], backoff: Backoff | None = None,
                 metrics: Metrics | None = None, poll: float = 5.0, backlog: Backlog | None = None,
                 retry: float = HOLD_RETRY_S):
        self.store = store
        self.sinks = list(sinks)
        self.backoff = backoff or delivery_backoff()
        self.metrics = metrics
        self.poll = poll
        self.retry = retry
        self.backlog = backlog if backlog is not None else Backlog()
        self._stop = threading.Event()
        self._wake = {s.name: threading.Event() for s in self.sinks}
        self._not_before: dict[str, float] = {}      # sink -> retry time the store could not record
        self._read_error = ""                         # the last read failure logged (not again each poll)
        self._threads: list[threading.Thread] = []
        if metrics is not None:
            metrics.sinks_added(s.name for s in self.sinks)
            metrics.set_store_ok("events", self.backlog.ok)

    @property
    def sink_names(self) -> list[str]:
        return [s.name for s in self.sinks]

    def start(self) -> None:
        """Resume every pending delivery now, then keep delivering in the background."""
        try:
            for sink in self.sinks:
                legacy = getattr(sink, "legacy_name", None)
                if legacy and legacy != sink.name:
                    moved = self.store.rename_sink(legacy, sink.name)
                    if moved:
                        log.info("%d event deliveries recorded for %s now go to %s (the webhook's new name)",
                                 moved, legacy, sink.name)
            orphans = self.store.pending_sinks() - set(self.sink_names)
            for name in sorted(orphans):
                log.warning("%d event deliveries wait for sink %s, which is no longer configured; "
                            "they are kept until it is", self.store.pending_count(name), name)
            for sink in self.sinks:
                self.store.reschedule_now(sink.name)
        except StoreError as exc:   # a failing store must not stop delivery of what it holds
            self._store_failed(exc)
        for sink in self.sinks:
            t = threading.Thread(target=self._run, args=(sink,), name=f"events-{sink.name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._update_pending()

    def publish(self, event: Event) -> Event:
        """Record ``event`` with an outbox row per sink, then wake the workers.

        Never raises for a store that cannot be written: the event waits in the backlog,
        behind any already waiting, and the workers write it when the store allows.
        """
        b = self.backlog
        with b.lock:
            if b.events and len(b.events) >= b.limit:
                self._write_held()                    # room again, perhaps
            if len(b.events) >= b.limit:
                self._drop(event)
            else:
                b.events.append(event)
                self._write_held()
        self._update_pending()
        for w in self._wake.values():
            w.set()
        return event

    def resume(self, sink: str) -> None:
        """Try ``sink``'s pending rows now rather than at their backoff time (it is reachable again:
        an MQTT reconnect), so a broker back after an hour does not wait out a 5-minute delay."""
        self._not_before.pop(sink, None)
        try:
            self.store.reschedule_now(sink)
        except StoreError as exc:
            self._store_failed(exc)
        wake = self._wake.get(sink)
        if wake is not None:
            wake.set()

    def stop(self, timeout: float = 5.0, flush: bool = True) -> None:
        """Stop the workers; ``flush``: one last try to write held events (not when a reload's new
        dispatcher takes over the backlog: it writes them with its own sinks)."""
        self._stop.set()
        for w in self._wake.values():
            w.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if flush:
            with self.backlog.lock:
                if self.backlog.events:
                    self._write_held()                # a last try: what is left is lost at exit

    # ---- the store's health ----------------------------------------------------------
    def _write_held(self) -> bool:
        """Write held events in order until one fails; True when none is left. Caller holds the lock."""
        b = self.backlog
        wrote = False
        while b.events:
            try:
                self.store.record(b.events[0], self.sink_names)
            except StoreError as exc:
                self._store_failed(exc)
                return False
            b.events.popleft()
            wrote = True
            if not b.ok:
                b._outage_written += 1
        if wrote:
            self._store_worked()
        return True

    def _drop(self, event: Event) -> None:
        b = self.backlog
        b.dropped += 1
        b._outage_dropped += 1
        if b._outage_dropped == 1:
            log.error("events store still failing and %d events held in memory: dropping new events "
                      "(first: %s for camera %s); they are counted in camwatch_events_dropped_total",
                      b.limit, event.type, event.camera_id, extra={"camera": event.camera_id})
        if self.metrics is not None:
            self.metrics.event_dropped()

    def _store_failed(self, exc: Exception) -> None:
        b = self.backlog
        with b.lock:
            first = b.failing_since is None
            b.error = scrub(str(exc))
            if first:
                b.failing_since = time.time()
                b._outage_dropped = b._outage_written = 0
        self._update_store_metrics()
        if first:
            log.error("events store failing: %s; events are kept in memory (up to %d) and written, then "
                      "delivered, when it takes writes again (a full disk? free space in %s)",
                      b.error, b.limit, self.store.state_dir)
            if b.on_change is not None:
                b.on_change()

    def _store_worked(self) -> None:
        """A write succeeded: the outage is over once nothing is owed any more."""
        b = self.backlog
        with b.lock:
            if b.failing_since is None or b.owes():
                return
            took = time.time() - b.failing_since
            b.failing_since, b.error = None, ""
            held, dropped = b._outage_written, b._outage_dropped
        self._update_store_metrics()
        log.info("events store writable again after %.0f s: %d held event(s) written%s", took, held,
                 f", {dropped} dropped while memory was full" if dropped else "")
        if b.on_change is not None:
            b.on_change()

    def _update_store_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.set_store_ok("events", self.backlog.ok)
            self.metrics.set_events_unwritten(len(self.backlog.events))

    def _update_pending(self) -> None:
        if self.metrics is not None:
            try:
                self._update_store_metrics()
                self.metrics.set_events_pending(self.store.pending_count())
            except Exception:  # metrics must never stop delivery
                pass

    # ---- the workers ---------------------------------------------------------------
    def _run(self, sink: Sink) -> None:
        wake = self._wake[sink.name]
        while not self._stop.is_set():
            nxt: float | None = None
            try:
                if self.backlog.events:
                    with self.backlog.lock:
                        self._write_held()
                self._write_marks(sink.name)
                not_before = self._not_before.get(sink.name, 0.0)
                if time.time() >= not_before:
                    self._deliver_due(sink)
                due = self.store.next_due_time(sink.name)
                # nothing pending: sleep until woken or the poll (not until a past not_before: a spin)
                nxt = None if due is None else max(due, not_before)
                self._read_error = ""
            except StoreError as exc:   # a read (writes are handled where they fail): say it, retry
                if str(exc) != self._read_error:
                    self._read_error = str(exc)
                    log.warning("event delivery to %s: cannot read the events store: %s; retrying",
                                sink.name, scrub(str(exc)))
            except Exception:
                log.exception("event delivery to %s failed unexpectedly; retrying", sink.name)
            wait = self.poll if nxt is None else min(self.poll, max(0.0, nxt - time.time()))
            if not self.backlog.ok:   # rows sent but not marked stay due: do not spin on them
                wait = self.retry if wait <= 0 else min(wait, self.retry)
            if wait > 0:
                wake.wait(wait)
            wake.clear()

    def _write_marks(self, sink: str) -> None:
        """Record deliveries the store could not record when they happened (they are not sent again)."""
        with self.backlog.lock:
            pending = sorted(self.backlog.marks.get(sink, ()))
        for event_id in pending:
            try:
                self.store.mark_delivered(event_id, sink)
            except StoreError as exc:
                self._store_failed(exc)
                return
            with self.backlog.lock:
                self.backlog.marks[sink].discard(event_id)
        if pending:
            self._store_worked()
            self._update_pending()

    def _delivered(self, event: Event, sink: str) -> None:
        try:
            self.store.mark_delivered(event.id, sink)
        except StoreError as exc:
            with self.backlog.lock:
                self.backlog.marks.setdefault(sink, set()).add(event.id)
            self._store_failed(exc)
        else:
            self._store_worked()
        if self.metrics is not None:
            self.metrics.delivery(sink, True)
        self._update_pending()

    def _failed(self, event: Event, sink: str, attempts: int, exc: Exception) -> None:
        err = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        retry_at = time.time() + self.backoff.delay(attempts + 1)
        self._not_before[sink] = retry_at          # kept here too: the store may not take it
        try:
            self.store.mark_failed(event.id, sink, err, retry_at)
            self.store.postpone(sink, retry_at)
        except StoreError as store_exc:
            self._store_failed(store_exc)
        else:
            self._store_worked()
        if self.metrics is not None:
            self.metrics.delivery(sink, False)
        log.warning("event %s for camera %s: delivery to %s failed (attempt %d): %s; "
                    "retry in %.0fs", event.id, event.camera_id, sink, attempts + 1,
                    scrub(err), retry_at - time.time())
        self._update_pending()

    def _deliver_due(self, sink: Sink) -> None:
        while not self._stop.is_set():
            with self.backlog.lock:
                sent = set(self.backlog.marks.get(sink.name, ()))
            batch = [(e, n) for e, n in self.store.due(sink.name, limit=50 + len(sent)) if e.id not in sent]
            if not batch:
                return
            for event, attempts in batch:
                if self._stop.is_set():
                    return
                if SILENCED_UNTIL in event.details and sink.name != "log":   # held back: its camera is silenced
                    self._delivered(event, sink.name)
                    continue
                try:
                    sink.send(event)
                except Exception as exc:  # DeliveryError, or a bug in a sink: retry either way
                    self._failed(event, sink.name, attempts, exc)
                    return
                self._delivered(event, sink.name)
