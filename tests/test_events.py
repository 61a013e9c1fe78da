"""Events and the durable outbox against a real SQLite file, a real PostgreSQL server (``store_url``:
the store's behaviour tests run on both) and real local HTTP(S) servers.

The webhook receiver is a real HTTP server in this process that fails on
purpose (500s), disappears (connection refused) and comes back; the crash test
kills a real subprocess with SIGKILL while a delivery is in flight.

Delivery through the outbox and its sinks is in test_event_delivery.py, which imports the
helpers below (Receiver, wait_for, FAST, _cli).
"""

from __future__ import annotations

import json
import os
import sqlite3
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from camwatch.cli.events import parse_since
from camwatch.core.backoff import Backoff
from camwatch.core.errors import CamwatchError
from camwatch.service.sinks import WebhookSink
from camwatch.store.events import SCHEMA_VERSION, Event, EventStore

REPO = Path(__file__).resolve().parents[1]


class Receiver:
    """A webhook receiver: records every request; ``fail_next`` requests get a 500."""

    def __init__(self, port: int = 0, delay: float = 0.0, tls: ssl.SSLContext | None = None):
        self.requests: list[dict] = []   # every request that reached the handler
        self.accepted: list[dict] = []   # those answered 2xx
        self.fail_next = 0
        self.delay = delay
        self.lock = threading.Lock()
        self.tls = tls
        self.server = None
        self.start(port)

    def start(self, port: int = 0) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                doc = {"body": json.loads(body), "headers": dict(self.headers), "path": self.path}
                with outer.lock:
                    outer.requests.append(doc)
                    fail = outer.fail_next > 0
                    if fail:
                        outer.fail_next -= 1
                if outer.delay:
                    time.sleep(outer.delay)
                status = 500 if fail else 200
                if not fail:
                    with outer.lock:
                        outer.accepted.append(doc)
                # headers and body in one write (no Nagle delay, see GUIDE.md)
                self.wfile.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                                 .encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if self.tls:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop and close the socket: connections are now refused."""
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def accepted_ids(self) -> Counter:
        with self.lock:
            return Counter(d["body"]["id"] for d in self.accepted)


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


FAST = Backoff(base=0.05, cap=0.4, jitter=0.2)


def test_record_is_durable_and_idempotent(tmp_path, store_url):
    store = EventStore(tmp_path, url=store_url)
    e = Event("cam1", "drift_started", kind="moved", similarity=0.41, threshold=0.8,
              evidence="/x/e.jpg", message="moved left")
    store.record(e, ["log", "webhook-aaaa0000"])
    store.record(e, ["log", "webhook-aaaa0000"])  # a retried record does not duplicate
    store.close()
    if store_url is not None:
        import psycopg

        with psycopg.connect(store_url) as pg:   # another connection, as after a restart
            assert pg.execute("SELECT id, camera_id, type, kind, similarity FROM events").fetchall() == [
                (e.id, "cam1", "drift_started", "moved", 0.41)]
            assert sorted(pg.execute("SELECT sink, delivered_at FROM outbox").fetchall()) == [
                ("log", None), ("webhook-aaaa0000", None)]
        again = EventStore(tmp_path, url=store_url)
        assert [x.id for x in again.list()] == [e.id] and again.pending_count() == 2
        again.close()
        return
    # a separate connection (as after a restart) sees event and outbox rows
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT id, camera_id, type, kind, similarity FROM events").fetchall() == [
        (e.id, "cam1", "drift_started", "moved", 0.41)]
    assert sorted(conn.execute("SELECT sink, delivered_at FROM outbox").fetchall()) == [
        ("log", None), ("webhook-aaaa0000", None)]
    conn.close()
    again = EventStore(tmp_path)
    assert [x.id for x in again.list()] == [e.id]
    assert again.pending_count() == 2


def test_prune_forgets_old_delivered_events_and_never_a_pending_one(tmp_path, store_url):
    store = EventStore(tmp_path, url=store_url)
    now = time.time()
    old_done = Event("cam1", "drift_started", kind="moved", time=now - 100 * 86400)
    old_pending = Event("cam1", "drift_cleared", time=now - 99 * 86400)
    old_half = Event("cam2", "camera_down", time=now - 98 * 86400)     # one sink of two delivered
    recent = Event("cam2", "camera_up", time=now - 86400)
    for e in (old_done, old_pending, old_half, recent):
        store.record(e, ["log", "webhook-aaaa0000"])
    for e in (old_done, recent):
        store.mark_delivered(e.id, "log")
        store.mark_delivered(e.id, "webhook-aaaa0000")
    store.mark_delivered(old_half.id, "log")
    assert store.prune(now - 90 * 86400) == 1
    assert store.prune(now - 90 * 86400) == 0
    store.close()
    with EventStore(tmp_path, url=store_url) as again:   # as after a restart: the database says so
        assert [e.id for e in again.list()] == [old_pending.id, old_half.id, recent.id]
        assert again.deliveries(old_done.id) == []
        assert again.pending_count() == 3              # old_pending x2, old_half's webhook
        assert {e.id for e, _ in again.due("webhook-aaaa0000")} == {old_pending.id, old_half.id}


# events.db exactly as camwatch wrote it before the store had versioned migrations: the
# schema by executescript (CREATE ... IF NOT EXISTS), then user_version set to 1.
OLD_EVENTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " camera_id TEXT NOT NULL, type TEXT NOT NULL, kind TEXT, similarity REAL, threshold REAL, evidence TEXT,"
    " message TEXT NOT NULL DEFAULT '', time REAL NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_camera_time ON events (camera_id, time);"
    "CREATE INDEX IF NOT EXISTS events_time ON events (time);"
    "CREATE TABLE IF NOT EXISTS outbox (event_id TEXT NOT NULL REFERENCES events (id), sink TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, delivered_at REAL,"
    " last_error TEXT, PRIMARY KEY (event_id, sink));"
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, delivered_at, next_attempt);"
)


@pytest.mark.parametrize("old_version", [1, 0])  # 0: killed between creating the tables and the version
def test_an_events_db_from_before_versioned_migrations_opens_with_its_events(tmp_path, old_version):
    con = sqlite3.connect(tmp_path / "events.db")
    con.executescript(OLD_EVENTS_SCHEMA)
    con.execute(f"PRAGMA user_version = {old_version}")
    con.execute("INSERT INTO events (id, camera_id, type, kind, time) VALUES ('e-old', 'gate', 'drift_started',"
                " 'moved', 1700000000.0)")
    con.execute("INSERT INTO outbox (event_id, sink, attempts, next_attempt, last_error) VALUES"
                " ('e-old', 'webhook-aaaa0000', 3, 1700000100.0, 'HTTP 500')")
    con.commit()
    con.close()
    store = EventStore(tmp_path)
    [old] = store.list()
    assert (old.id, old.camera_id, old.type, old.kind, old.time) == ("e-old", "gate", "drift_started", "moved",
                                                                     1_700_000_000.0)
    assert old.details == {}                       # rows from before the details column have none
    assert store.deliveries("e-old")[0].attempts == 3 and store.pending_count("webhook-aaaa0000") == 1
    new = Event("gate", "drift_cleared")
    store.record(new, ["webhook-aaaa0000"])
    assert [e.id for e in store.list()] == ["e-old", new.id]
    store.close()
    con = sqlite3.connect(tmp_path / "events.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_details_are_stored_delivered_and_read_back(tmp_path, store_url):
    """The cues behind a decision travel with the event: events.db, the webhook body, a restart."""
    store = EventStore(tmp_path, url=store_url)
    e = Event("gate", "drift_started", kind="covered", similarity=0.2, threshold=0.6,
              details={"structure_distance": 0.91, "structure_scale": 0.33, "cue": "dark",
                       "sharpness_ratio": float("nan")})
    store.record(e, ["webhook-aaaa0000"])
    store.close()
    with EventStore(tmp_path, url=store_url) as again:
        [back] = again.list()
        [(due, _)] = again.due("webhook-aaaa0000")
    assert back.details == {"structure_distance": 0.91, "structure_scale": 0.33, "cue": "dark",
                            "sharpness_ratio": "nan"}  # JSON has no NaN: kept as its text
    assert due.details == back.details
    rx = Receiver()
    WebhookSink(rx.url).send(back)
    rx.stop()
    assert rx.accepted[0]["body"]["details"]["structure_distance"] == 0.91
    assert Event("c", "camera_up").payload()["details"] == {}


def test_event_type_is_checked():
    with pytest.raises(ValueError):
        Event("c", "exploded")


def test_parse_since():
    now = 1_700_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("30m", now) == now - 1800
    assert parse_since("3d", now) == now - 3 * 86400
    assert parse_since("2023-11-14T22:13:20Z", now) == 1_700_000_000.0
    with pytest.raises(CamwatchError, match="--since 'yesterday'"):
        parse_since("yesterday", now)


# ---- camwatch events (a real CLI process on a real config and events.db) -----------------------
def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwatch", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=env)


@pytest.fixture
def cli_config(tmp_path):
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(textwrap.dedent("""
        settings:
          state_dir: ./state
        cameras:
          - id: front-door
            url: rtsp://viewer:${FRONT_PASS}@10.0.0.5/stream1
          - id: yard
            url: /nonexistent/yard.jpg
    """))
    return cfg


def test_cli_events_lists_filters_and_hides_secrets(tmp_path, cli_config):
    secret = "hunter2-front"
    env = {**os.environ, "FRONT_PASS": secret}
    r = _cli("--config", str(cli_config), "events", env=env)
    assert r.returncode == 0 and "no events" in r.stdout, r.stderr
    store = EventStore(tmp_path / "state")
    now = time.time()
    old = Event("yard", "camera_down", time=now - 3 * 3600)
    drift = Event("front-door", "drift_started", kind="moved", similarity=0.41, threshold=0.8,
                  evidence=str(tmp_path / "state/evidence/x.jpg"),
                  message=f"from rtsp://viewer:{secret}@10.0.0.5/stream1", time=now - 60,
                  details={"structure_distance": 0.93})
    back = Event("front-door", "drift_cleared", similarity=0.93, threshold=0.8, time=now - 5)
    for e in (old, drift, back):
        store.record(e, ["log"])
    store.mark_delivered(drift.id, "log")
    store.close()

    r = _cli("--config", str(cli_config), "events", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and "yard" in lines[0] and "camera_down" in lines[0]
    assert "drift_started moved" in lines[1] and "0.410/0.800" in lines[1]
    assert "(pending: log)" in lines[2] and "(pending" not in lines[1]
    assert secret not in r.stdout + r.stderr

    r = _cli("--config", str(cli_config), "events", "--camera", "front-door", "--since", "2h", "--json", env=env)
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)["events"]
    assert [d["id"] for d in docs] == [drift.id, back.id]
    assert docs[0]["kind"] == "moved" and docs[0]["deliveries"] == {"log": {"delivered": True}}
    assert docs[0]["details"] == {"structure_distance": 0.93} and docs[1]["details"] == {}
    assert docs[1]["deliveries"]["log"]["delivered"] is False
    assert secret not in r.stdout


def test_cli_events_bad_arguments_are_one_line_errors(tmp_path, cli_config):
    env = {**os.environ, "FRONT_PASS": "x-secret-x"}
    r = _cli("--config", str(cli_config), "events", "--since", "last tuesday", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--since 'last tuesday'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("--config", str(cli_config), "events", "--camera", "front-dor", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "front-dor" in r.stderr and "front-door" in r.stderr  # names it, suggests the right one
