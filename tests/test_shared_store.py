"""The shared store: several members on one outbox, a PostgreSQL server lost and back, the identity of
a shared database, its schema versions, ``camwatch enroll`` from another host, the state-directory lock.

Real parts only: a real PostgreSQL server (tests/pg_server.py, one per session, a fresh schema per
test), real SQLite files, a real webhook receiver (test_events.Receiver), real ``camwatch`` processes.
The store behaviour both backends share runs in test_references.py, test_events.py and the like,
parametrized by ``store_url``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import psycopg
import pytest
from test_events import Receiver, wait_for
from test_references import in_threads, jpeg, scene, tiny_model, unit

from camwatch.core.backoff import Backoff
from camwatch.core.errors import StoreError
from camwatch.service.alerts import Dispatcher
from camwatch.service.sinks import WebhookSink
from camwatch.store import references
from camwatch.store.events import CLAIM_LEASE_S, Event, EventStore
from camwatch.store.identity import MARKER_NAME
from camwatch.store.lock import lock_state_dir
from camwatch.store.references import ReferenceStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Backoff(base=0.05, cap=0.2, jitter=0.2)


def members(tmp_path, store_url, n):
    """``n`` members' event stores on one outbox, each with its own connection and owner: on
    PostgreSQL each its own state directory (as hosts are), on SQLite one events.db."""
    if store_url is None:
        return [EventStore(tmp_path / "state", owner=f"member-{i}") for i in range(n)]
    return [EventStore(tmp_path / f"member-{i}", url=store_url) for i in range(n)]


# -- the outbox drained by several members ---------------------------------------------------------

def test_claimed_deliveries_are_hidden_from_other_members_until_their_lease_runs_out(tmp_path, store_url):
    a, b = members(tmp_path, store_url, 2)
    assert a.owner != b.owner
    events = [Event("gate", "camera_down") for _ in range(4)]
    for e in events:
        a.record(e, ["webhook-x"])
    now = time.time()
    assert [e.id for e, _ in a.due("webhook-x", now=now, limit=3)] == [e.id for e in events[:3]]
    assert [e.id for e, _ in b.due("webhook-x", now=now)] == [events[3].id]      # only what a left
    assert [e.id for e, _ in a.due("webhook-x", now=now)] == [e.id for e in events[:3]]  # a's own, again
    a.mark_delivered(events[0].id, "webhook-x")
    a.mark_failed(events[1].id, "webhook-x", "HTTP 500", retry_at=now)           # a failure ends the claim
    assert [e.id for e, _ in b.due("webhook-x", now=now)] == [events[1].id, events[3].id]
    # a dies holding events[2]: once its lease has run out, b takes it
    assert events[2].id not in [e.id for e, _ in b.due("webhook-x", now=now + CLAIM_LEASE_S - 1)]
    assert events[2].id in [e.id for e, _ in b.due("webhook-x", now=now + CLAIM_LEASE_S + 1)]
    for s in (a, b):
        s.close()


class CountingSink(WebhookSink):
    """A real webhook sink that also counts what this member sent (which member sent is not in the body)."""

    def __init__(self, url: str):
        super().__init__(url, timeout=2)
        self.sent: list[str] = []

    def send(self, event: Event) -> None:
        super().send(event)
        self.sent.append(event.id)


def test_three_members_draining_one_outbox_deliver_each_event_once(tmp_path, store_url):
    rx = Receiver(delay=0.005)
    stores = members(tmp_path, store_url, 3)
    sinks = [CountingSink(rx.url) for _ in stores]
    dispatchers = [Dispatcher(s, [k], backoff=FAST, poll=0.05) for s, k in zip(stores, sinks)]
    for d in dispatchers:
        d.start()
    published = [dispatchers[i % 3].publish(Event(f"cam{i % 5}", "drift_started", kind="moved")).id
                 for i in range(45)]
    try:
        assert wait_for(lambda: stores[0].pending_count() == 0, timeout=30)
    finally:
        for d in dispatchers:
            d.stop()
        rx.stop()
        for s in stores:
            s.close()
    got = rx.accepted_ids()
    assert set(got) == set(published)
    assert all(n == 1 for n in got.values()), {k: n for k, n in got.items() if n > 1}
    assert sum(len(k.sent) for k in sinks) == 45
    assert sum(1 for k in sinks if k.sent) >= 2          # they really drained it together


# -- the server lost and back ----------------------------------------------------------------------

def test_losing_the_server_fails_each_operation_in_one_line_and_the_next_one_after_it_is_back_works(
        tmp_path, pg_server, caplog):
    url = pg_server.url(pg_server.new_schema(), connect_timeout=1)
    refs = ReferenceStore(tmp_path / "state", url=url)
    events = EventStore(tmp_path / "state", url=url)
    rx = Receiver()
    dispatcher = Dispatcher(events, [WebhookSink(rx.url, timeout=2)], backoff=FAST, poll=0.1, retry=0.1)
    dispatcher.start()
    refs.add("gate", "day", jpeg(scene(1)), unit(1), "m")
    before = dispatcher.publish(Event("gate", "camera_down"))
    assert wait_for(lambda: before.id in rx.accepted_ids(), timeout=10)
    pg_server.stop()                                         # mid-run: pools and a dispatcher working
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            refs.add("gate", "night", jpeg(scene(2)), unit(2), "m")
        took = time.monotonic() - started
        message = str(err.value)
        assert message.startswith(f"database postgresql://127.0.0.1:{pg_server.port}/camwatch: cannot ")
        assert "\n" not in message and pg_server.password not in message
        assert took < 5, took                                # bounded by POOL_WAIT_S and connect_timeout
        with pytest.raises(StoreError, match=r"^database postgresql://"):
            refs.for_camera("gate", images=False)            # a cached read asks the server too
        during = dispatcher.publish(Event("gate", "camera_up"))  # held in memory, not lost, not raised
        assert wait_for(lambda: not dispatcher.backlog.ok, timeout=5)
    finally:
        pg_server.start()
    # The next operation works: the pools reconnect.
    refs.add("gate", "night", jpeg(scene(2)), unit(2), "m")
    assert [r.label for r in refs.for_camera("gate", images=False)] == ["day", "night"]
    assert wait_for(lambda: during.id in rx.accepted_ids() and dispatcher.backlog.ok, timeout=15)
    dispatcher.stop()
    rx.stop()
    assert Counter(rx.accepted_ids()) == Counter({before.id: 1, during.id: 1})
    for s in (refs, events):
        s.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert pg_server.password not in logged


def test_a_server_that_is_not_there_or_refuses_the_password_is_one_line_at_open(tmp_path, pg_server):
    wrong = pg_server.url(connect_timeout=1).replace(pg_server.password, "not-it")
    with pytest.raises(StoreError) as err:
        ReferenceStore(tmp_path / "a", url=wrong)
    assert "password authentication failed" in str(err.value) and "\n" not in str(err.value)
    assert "not-it" not in str(err.value)
    with pytest.raises(StoreError, match=r"^database postgresql://127\.0\.0\.1:1/camwatch: cannot connect: "):
        EventStore(tmp_path / "a", url="postgresql://camwatch:x@127.0.0.1:1/camwatch?connect_timeout=1")


# -- identity and schema of a shared database ----------------------------------------------------------

def test_a_member_refuses_an_emptied_or_another_fleets_database_and_a_new_member_adopts_the_store(
        tmp_path, pg_server):
    schema = pg_server.new_schema()
    url = pg_server.url(schema)
    with ReferenceStore(tmp_path / "member-a", url=url) as a:
        fleet = a.identity
        a.add("gate", "day", jpeg(scene(1)), unit(1), "m")
    with ReferenceStore(tmp_path / "member-b", url=url) as b:     # a new member: no marker, adopts it
        assert b.identity == fleet and [r.camera_id for r in b.list()] == ["gate"]
    assert (tmp_path / "member-b" / MARKER_NAME).read_text().strip() == fleet
    # the database emptied (or settings.store pointed at a new one): refused, nothing created there
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    with pytest.raises(StoreError) as err:
        ReferenceStore(tmp_path / "member-a", url=url)
    message = str(err.value)
    assert "holds no camwatch store" in message and str(tmp_path / "member-a" / MARKER_NAME) in message
    assert "backup" in message and "delete" in message and "\n" not in message
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('camwatch_schema')").fetchone()[0] is None
    # another fleet's store in its place
    ReferenceStore(tmp_path / "other-fleet", url=url).close()
    with pytest.raises(StoreError, match="of another installation"):
        ReferenceStore(tmp_path / "member-a", url=url)


def test_a_newer_schema_is_refused_and_members_starting_at_once_migrate_once(tmp_path, pg_server):
    url = pg_server.url(pg_server.new_schema())
    opened: list[ReferenceStore] = []
    errors = in_threads(lambda i: opened.append(ReferenceStore(tmp_path / f"m{i}", url=url)), 4, 30)
    assert errors == [] and len({s.identity for s in opened}) == 1
    for s in opened:
        s.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM camwatch_schema WHERE store = 'references'").fetchone()[0] == len(
            references.PG_MIGRATIONS)
        conn.execute("UPDATE camwatch_schema SET version = version + 5 WHERE store = 'references'")
    with pytest.raises(StoreError, match=r"references schema version \d+ is newer than this camwatch knows.*upgrade"):
        ReferenceStore(tmp_path / "m0", url=url)


# -- camwatch enroll from any host; one daemon per state directory -------------------------------------

def test_enroll_from_another_host_is_seen_by_every_member(tmp_path, pg_server):
    url = pg_server.url(pg_server.new_schema()).replace(pg_server.password, "${CAMWATCH_PG_PASSWORD}")
    tiny_model(tmp_path / "tiny.onnx", seed=7)
    import cv2
    cv2.imwrite(str(tmp_path / "gate.png"), scene(11, 160, 120))
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / "cameras.yaml").write_text(
        f"settings:\n  model: ../tiny.onnx\n  device: cpu\n  state_dir: state\n  store: \"{url}\"\n"
        f"  calibration: {{checks: 0}}\ncameras:\n  - id: gate\n    url: {(tmp_path / 'gate.png').as_uri()}\n")
    os.chmod(laptop / "cameras.yaml", 0o600)
    env = {**os.environ, "PYTHONPATH": REPO, "CAMWATCH_PG_PASSWORD": pg_server.password}
    out = subprocess.run([sys.executable, "-m", "camwatch", "enroll", "--config", str(laptop / "cameras.yaml"),
                          "gate", "--label", "day"], capture_output=True, text=True, timeout=90, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert pg_server.password not in out.stdout + out.stderr
    with ReferenceStore(tmp_path / "member-0", url=url.replace("${CAMWATCH_PG_PASSWORD}", pg_server.password)) as m:
        [ref] = m.for_camera("gate")
        assert ref.label == "day" and ref.image_jpeg and np.isclose(np.linalg.norm(ref.embedding), 1, atol=1e-4)


def test_the_state_lock_is_per_member_with_a_shared_store(tmp_path, pg_server):
    """One daemon per state directory, whatever the store; with a shared store several members
    (each its own state directory, lock and outbox owner) run on it at once."""
    url = pg_server.url(pg_server.new_schema())
    locks = [lock_state_dir(tmp_path / "a"), lock_state_dir(tmp_path / "b")]
    with pytest.raises(StoreError, match="another camwatch daemon"):
        lock_state_dir(tmp_path / "a")
    with ReferenceStore(tmp_path / "a", url=url) as ra, ReferenceStore(tmp_path / "b", url=url) as rb:
        assert ra.identity == rb.identity
    ea, eb = EventStore(tmp_path / "a", url=url), EventStore(tmp_path / "b", url=url)
    assert ea.owner != eb.owner and ea.owner.endswith(str((tmp_path / "a").resolve()))
    for x in (ea, eb, *locks):
        x.close() if isinstance(x, EventStore) else x.release()
