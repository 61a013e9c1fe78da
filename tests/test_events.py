"""Events and the durable outbox against a real SQLite file and real local HTTP(S) servers.

The webhook receiver is a real HTTP server in this process that fails on
purpose (500s), disappears (connection refused) and comes back; the crash test
kills a real subprocess with SIGKILL while a delivery is in flight.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
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
from camwatch.config import WebhookSettings
from camwatch.core.backoff import Backoff
from camwatch.core.errors import CamwatchError, ConfigError
from camwatch.service.alerts import Dispatcher
from camwatch.service.metrics import Metrics
from camwatch.service.sinks import DeliveryError, LogSink, WebhookSink, build_sinks, legacy_sink_name, webhook_sink_name
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


def test_record_is_durable_and_idempotent(tmp_path):
    store = EventStore(tmp_path)
    e = Event("cam1", "drift_started", kind="moved", similarity=0.41, threshold=0.8,
              evidence="/x/e.jpg", message="moved left")
    store.record(e, ["log", "webhook-aaaa0000"])
    store.record(e, ["log", "webhook-aaaa0000"])  # a retried record does not duplicate
    store.close()
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


def test_prune_forgets_old_delivered_events_and_never_a_pending_one(tmp_path):
    store = EventStore(tmp_path)
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
    again = EventStore(tmp_path)                  # as after a restart: the file says so
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


def test_details_are_stored_delivered_and_read_back(tmp_path):
    """The cues behind a decision travel with the event: events.db, the webhook body, a restart."""
    store = EventStore(tmp_path)
    e = Event("gate", "drift_started", kind="covered", similarity=0.2, threshold=0.6,
              details={"structure_distance": 0.91, "structure_scale": 0.33, "cue": "dark",
                       "sharpness_ratio": float("nan")})
    store.record(e, ["webhook-aaaa0000"])
    store.close()
    again = EventStore(tmp_path)
    [back] = again.list()
    assert back.details == {"structure_distance": 0.91, "structure_scale": 0.33, "cue": "dark",
                            "sharpness_ratio": "nan"}  # JSON has no NaN: kept as its text
    [(due, _)] = again.due("webhook-aaaa0000")
    assert due.details == back.details
    rx = Receiver()
    WebhookSink(rx.url).send(back)
    rx.stop()
    assert rx.accepted[0]["body"]["details"]["structure_distance"] == 0.91
    assert Event("c", "camera_up").payload()["details"] == {}


def test_event_type_is_checked():
    with pytest.raises(ValueError):
        Event("c", "exploded")


def test_webhook_down_then_refusing_then_back_loses_nothing(tmp_path):
    rx = Receiver()
    port = rx.port
    rx.fail_next = 4
    store = EventStore(tmp_path)
    sink = WebhookSink(rx.url, timeout=2)
    d = Dispatcher(store, [LogSink(), sink], backoff=FAST, poll=0.2)
    d.start()
    published = [d.publish(Event(f"cam{i % 2}", "drift_started", kind="moved", similarity=0.3,
                                 threshold=0.8)) for i in range(3)]
    assert wait_for(lambda: len(rx.requests) >= 4)  # the 500s were really tried
    rx.stop()                                         # now: connection refused
    published += [d.publish(Event("cam1", "camera_down")) for _ in range(2)]
    time.sleep(1.0)
    assert store.pending_count(sink.name) >= 1
    assert store.pending_count("log") == 0            # a broken webhook never holds up the log
    rx.start(port)                                    # back on the same address
    assert wait_for(lambda: store.pending_count() == 0, timeout=20)
    d.stop()
    got = rx.accepted_ids()
    assert set(got) == {e.id for e in published}
    assert all(n == 1 for n in got.values()), got    # once per idempotency key
    # order kept: the webhook saw the events in the order they happened
    order = [x["body"]["id"] for x in rx.accepted]
    assert order == [e.id for e in published]
    failures = [dl for e in published for dl in store.deliveries(e.id) if dl.sink == sink.name]
    assert all(dl.delivered_at for dl in failures)
    assert max(dl.attempts for dl in failures) >= 2
    rx.stop()


def test_restart_resumes_pending_deliveries(tmp_path):
    rx = Receiver()
    rx.stop()  # down while the first process records
    store = EventStore(tmp_path)
    sink = WebhookSink(rx.url, timeout=1)
    d = Dispatcher(store, [sink], backoff=Backoff(base=30, cap=60, jitter=0.2), poll=0.2)
    d.start()
    ids = [d.publish(Event("cam", "camera_down")).id for _ in range(3)]
    time.sleep(0.5)
    d.stop()
    store.close()
    rx.start(rx.port)
    store2 = EventStore(tmp_path)
    d2 = Dispatcher(store2, [WebhookSink(rx.url, timeout=1)], backoff=FAST, poll=0.2)
    d2.start()  # the 30 s backoff of the old process must not delay the new one
    assert wait_for(lambda: store2.pending_count() == 0, timeout=5)
    d2.stop()
    assert sorted(rx.accepted_ids()) == sorted(ids)
    rx.stop()


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from camwatch.core.backoff import Backoff
    from camwatch.service.alerts import Dispatcher
    from camwatch.service.sinks import WebhookSink
    from camwatch.store.events import Event, EventStore
    state, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = EventStore(state)
    d = Dispatcher(store, [WebhookSink(url, timeout=5)], backoff=Backoff(0.05, 0.3, jitter=0.2), poll=0.2)
    d.start()
    for i in range(n):
        d.publish(Event("cam%d" % (i % 3), "drift_started", kind="moved", similarity=0.2, threshold=0.8))
    print("recorded", flush=True)
    while store.pending_count():
        time.sleep(0.05)
    print("done", flush=True)
    d.stop()
""")


def test_kill_9_mid_delivery_then_restart_delivers_everything(tmp_path):
    rx = Receiver(delay=0.3)  # each delivery is in flight for 0.3 s: room to kill mid-request
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    state = tmp_path / "state"
    n = 8
    child = subprocess.Popen([sys.executable, str(script), str(state), rx.url, str(n)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "recorded"
        # kill while the third request is being answered: received, not yet acknowledged
        assert wait_for(lambda: len(rx.requests) >= 3, timeout=20)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    before = len(rx.accepted_ids())
    assert before < n
    # restart: a new process with only the state directory resumes the outbox
    rx.delay = 0.0
    child2 = subprocess.run([sys.executable, str(script), str(state), rx.url, "0"],
                            capture_output=True, text=True, timeout=60)
    assert child2.returncode == 0, child2.stderr
    assert "done" in child2.stdout
    store = EventStore(state)
    events = store.list()
    assert len(events) == n                          # every event survived the kill
    assert store.pending_count() == 0
    got = rx.accepted_ids()
    assert set(got) == {e.id for e in events}        # every one delivered
    # the request in flight at the kill may arrive twice, with the same key for the receiver to drop
    assert sum(got.values()) - n <= 1
    with rx.lock:
        keys = {d["headers"].get("Idempotency-Key") for d in rx.accepted}
    assert keys == set(got)
    rx.stop()


def test_body_headers_and_slack_format(tmp_path):
    rx = Receiver()
    e = Event("front-door", "drift_started", kind="covered", similarity=0.312, threshold=0.8,
              evidence="/var/lib/camwatch/evidence/x.jpg", time=1_700_000_000.0)
    WebhookSink(rx.url, headers={"X-Team": "ops"}).send(e)
    WebhookSink(rx.url, format="slack").send(e)
    rx.stop()
    body, headers = rx.accepted[0]["body"], rx.accepted[0]["headers"]
    assert body["id"] == body["idempotency_key"] == e.id == headers["Idempotency-Key"]
    assert headers["X-Team"] == "ops" and headers["Content-Type"] == "application/json"
    assert body["type"] == "drift_started" and body["camera"] == "front-door"
    assert body["kind"] == "covered" and body["similarity"] == 0.312 and body["threshold"] == 0.8
    assert body["time"] == "2023-11-14T22:13:20Z" and body["timestamp"] == 1_700_000_000.0
    assert body["evidence"].endswith("x.jpg")
    assert "front-door" in body["text"] and "covered" in body["text"] and "0.312" in body["text"]
    assert rx.accepted[1]["body"] == {"text": body["text"]}


def test_non_2xx_and_refused_are_failures(tmp_path):
    rx = Receiver()
    rx.fail_next = 1
    with pytest.raises(DeliveryError, match="HTTP 500"):
        WebhookSink(rx.url).send(Event("c", "camera_up"))
    rx.stop()
    with pytest.raises(DeliveryError):
        WebhookSink(rx.url, timeout=1).send(Event("c", "camera_up"))  # refused


def test_timeout_is_bounded(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers
    try:
        t0 = time.monotonic()
        with pytest.raises(DeliveryError):
            WebhookSink(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.5).send(Event("c", "camera_up"))
        assert time.monotonic() - t0 < 5
    finally:
        silent.close()


def test_a_dripping_receiver_cannot_hold_a_delivery_past_its_timeout(tmp_path):
    """A receiver that answers one byte every 0.2 s: each socket read returns in time, so
    only a deadline on the whole send ends it (urllib's per-read timeout never did)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 20:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeliveryError, match="within 1 s"):
            WebhookSink(f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=1).send(Event("c", "camera_up"))
        assert time.monotonic() - t0 < 3   # the whole answer would take 2.4 s of headers alone
    finally:
        stop.set()
        server.close()


def fail_twice_and_read_logs(tmp_path, sink, url: str, caplog) -> str:
    """Publish an event naming ``url`` to a sink whose receiver is down; the log text of two
    failed attempts (every failure is logged, so that is where a secret would leak)."""
    store = EventStore(tmp_path)
    d = Dispatcher(store, [LogSink(), sink], backoff=FAST, poll=0.1)
    with caplog.at_level(logging.DEBUG):
        d.start()
        d.publish(Event("cam", "camera_down", message=f"see {url}"))
        assert wait_for(lambda: any(dl.attempts >= 2 for e in store.list()
                                    for dl in store.deliveries(e.id) if dl.sink == sink.name))
        d.stop()
    store.close()
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert f"delivery to {sink.name} failed" in text
    return text


def test_basic_auth_from_the_url_is_sent_and_never_logged(tmp_path, caplog):
    import base64

    rx = Receiver()
    url = rx.url.replace("http://", "http://hook:s3cr%40t@")
    sink = WebhookSink(url, timeout=1)
    sink.send(Event("c", "camera_up"))
    assert rx.requests[-1]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"hook:s3cr@t").decode()
    rx.stop()  # down: failures get logged
    assert "s3cr" not in fail_twice_and_read_logs(tmp_path, sink, url, caplog)


def test_secrets_never_logged_or_stored(tmp_path, caplog):
    token = "tok-9f8e7d6c5b4a"
    bearer = "bearer-secret-123456"
    rx = Receiver()
    rx.stop()  # down: failures get logged
    url = f"http://127.0.0.1:{rx.port}/hooks/{token}?key={token}x"
    sink = WebhookSink(url, headers={"Authorization": f"Bearer {bearer}"}, timeout=1)
    assert sink.name == webhook_sink_name(url) and token not in sink.name
    text = fail_twice_and_read_logs(tmp_path, sink, url, caplog)
    assert token not in text and bearer not in text
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("events.db"))
    assert token.encode() not in raw and bearer.encode() not in raw


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


def test_tls_verified_unless_turned_off(self_signed):
    rx = Receiver(tls=self_signed)
    try:
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            WebhookSink(rx.url, timeout=3).send(Event("c", "camera_up"))
        WebhookSink(rx.url, timeout=3, verify_tls=False).send(Event("c", "camera_up"))
        assert len(rx.accepted) == 1
    finally:
        rx.stop()


def test_unconfigured_sink_rows_are_kept(tmp_path, caplog):
    store = EventStore(tmp_path)
    store.record(Event("c", "camera_down"), ["log", "webhook-deadbeef"])
    d = Dispatcher(store, [LogSink()], backoff=FAST, poll=0.1)
    with caplog.at_level(logging.WARNING):
        d.start()
        assert wait_for(lambda: store.pending_count("log") == 0)
        d.stop()
    assert store.pending_count("webhook-deadbeef") == 1
    assert "webhook-deadbeef" in caplog.text


# ---- sinks by name (issue 21 item 7) ------------------------------------------------------------
def test_webhooks_are_named_by_their_name_or_host_never_by_path_or_query():
    token = "T000-B000-XXXX"
    sinks = build_sinks([WebhookSettings(url=f"https://hooks.slack.com/services/{token}?key={token}"),
                         WebhookSettings(url=f"http://10.0.0.5:8080/hook/{token}", name="pager"),
                         WebhookSettings(url=f"http://u:{token}@[::1]:9000/h")])
    assert [s.name for s in sinks] == ["log", "hooks.slack.com", "pager", "[::1]:9000"]
    assert all(token not in s.name for s in sinks)


def test_two_sinks_cannot_share_a_name(tmp_path):
    with pytest.raises(ConfigError, match=r"settings.webhooks\[1\]: its name 'hooks.example.com' .*name: of its own"):
        build_sinks([WebhookSettings(url="https://hooks.example.com/a"),
                     WebhookSettings(url="https://hooks.example.com/b")])
    with pytest.raises(ConfigError, match="the log sink's name"):
        build_sinks([WebhookSettings(url="https://hooks.example.com/a", name="log")])
    build_sinks([WebhookSettings(url="https://hooks.example.com/a"),                 # told apart by a name
                 WebhookSettings(url="https://hooks.example.com/b", name="second")])
    bad = tmp_path / "cameras.yaml"
    bad.write_text("settings:\n  webhooks:\n    - url: https://hooks.example.com/a\n      name: Ops Pager\n"
                   "cameras:\n  - id: yard\n    url: /nonexistent/yard.jpg\n")
    r = _cli("--config", str(bad), "validate")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert ":4: settings.webhooks[0].name: 'Ops Pager'" in r.stderr
    state = tmp_path / "state"
    state.mkdir()
    two = tmp_path / "two.yaml"                      # valid one by one; together, one name for two sinks
    two.write_text(f"settings:\n  state_dir: {state}\n  webhooks:\n    - url: https://hooks.example.com/a\n"
                   "    - url: https://hooks.example.com/b\n"
                   "cameras:\n  - id: yard\n    url: /nonexistent/yard.jpg\n")
    r = _cli("--config", str(two), "validate")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "settings.webhooks[1]: its name 'hooks.example.com'" in r.stderr


def test_deliveries_pending_under_the_old_hash_name_are_delivered_after_the_upgrade(tmp_path, caplog):
    rx = Receiver()
    old = legacy_sink_name(rx.url)
    assert old.startswith("webhook-") and len(old) == len("webhook-") + 8
    store = EventStore(tmp_path)                    # as the previous camwatch left it
    done, waiting = Event("gate", "camera_down"), Event("gate", "drift_started", kind="moved")
    store.record(done, [old])
    store.mark_delivered(done.id, old)
    store.record(waiting, [old, "log"])
    metrics = Metrics(process=False)
    d = Dispatcher(store, [LogSink(), WebhookSink(rx.url, name="pager")], backoff=FAST, poll=0.1, metrics=metrics)
    with caplog.at_level(logging.INFO):
        d.start()
        assert wait_for(lambda: store.pending_count() == 0)
        d.stop()
    assert [b["body"]["id"] for b in rx.accepted] == [waiting.id]       # the pending one, once
    assert [x.sink for x in store.deliveries(waiting.id)] == ["log", "pager"]
    assert [x.sink for x in store.deliveries(done.id)] == ["pager"]     # the history follows the name
    assert store.pending_count(old) == 0 and "now go to pager" in caplog.text
    assert metrics.registry.get_sample_value("camwatch_event_deliveries_total",
                                             {"sink": "pager", "result": "ok"}) == 1
    rx.stop()


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
