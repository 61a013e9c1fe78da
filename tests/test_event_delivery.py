"""Delivering events through the durable outbox to real local HTTP(S) webhooks: receivers that
fail, vanish and come back, restarts, kill -9 mid-delivery, body formats, timeouts, secrets in
logs, TLS, and sinks by name.

Split from test_events.py (the events store and ``camwatch events``), whose helpers this imports.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from test_events import FAST, REPO, Receiver, _cli, wait_for

from camwatch.config import WebhookSettings
from camwatch.core.backoff import Backoff
from camwatch.core.errors import ConfigError
from camwatch.service.alerts import Dispatcher
from camwatch.service.metrics import Metrics
from camwatch.service.sinks import DeliveryError, LogSink, WebhookSink, build_sinks, legacy_sink_name, webhook_sink_name
from camwatch.store.events import Event, EventStore


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


def test_restart_resumes_pending_deliveries(tmp_path, store_url):
    rx = Receiver()
    rx.stop()  # down while the first process records
    store = EventStore(tmp_path, url=store_url)
    sink = WebhookSink(rx.url, timeout=1)
    d = Dispatcher(store, [sink], backoff=Backoff(base=30, cap=60, jitter=0.2), poll=0.2)
    d.start()
    ids = [d.publish(Event("cam", "camera_down")).id for _ in range(3)]
    time.sleep(0.5)
    d.stop()
    store.close()
    rx.start(rx.port)
    store2 = EventStore(tmp_path, url=store_url)
    d2 = Dispatcher(store2, [WebhookSink(rx.url, timeout=1)], backoff=FAST, poll=0.2)
    d2.start()  # the 30 s backoff of the old process must not delay the new one
    assert wait_for(lambda: store2.pending_count() == 0, timeout=5)
    d2.stop()
    store2.close()
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
    store = EventStore(state, url=sys.argv[4] or None)
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


def test_kill_9_mid_delivery_then_restart_delivers_everything(tmp_path, store_url):
    """Also on PostgreSQL: the restarted process is the same outbox owner (host and state directory),
    so the rows the killed one had claimed are sent at once, not after their lease."""
    rx = Receiver(delay=0.3)  # each delivery is in flight for 0.3 s: room to kill mid-request
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    state = tmp_path / "state"
    n = 8
    child = subprocess.Popen([sys.executable, str(script), str(state), rx.url, str(n), store_url or ""],
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
    child2 = subprocess.run([sys.executable, str(script), str(state), rx.url, "0", store_url or ""],
                            capture_output=True, text=True, timeout=60)
    assert child2.returncode == 0, child2.stderr
    assert "done" in child2.stdout
    store = EventStore(state, url=store_url)
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
    store.close()


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


class _CountingStore(EventStore):
    """A real EventStore that counts how often a worker asks it what is due."""

    asked = 0

    def next_due_time(self, sink: str) -> float | None:
        type(self).asked += 1
        return super().next_due_time(sink)


def test_an_idle_dispatcher_sleeps_between_polls(tmp_path):
    # Nothing pending (and, after one delivery, nothing left): each worker asks the store once
    # per poll, not in a loop. A spin here costs a whole core for the daemon's life.
    store = _CountingStore(tmp_path / "events.db")
    d = Dispatcher(store, [LogSink()], backoff=FAST, poll=0.25)
    d.start()
    try:
        time.sleep(1.0)
        idle = _CountingStore.asked
        assert idle <= 8, f"the idle worker asked the store {idle} times in 1 s (poll 0.25 s)"
        d.publish(Event("c0", "drift_started", kind="moved", similarity=0.3))
        wait_for(lambda: store.pending_count("log") == 0, timeout=5)
        before = _CountingStore.asked
        time.sleep(1.0)
        assert _CountingStore.asked - before <= 8
    finally:
        d.stop()
