"""No alert is lost when the disk fills: on a real, small, really full filesystem.

The state directory lives on a tmpfs mounted for the test (``mount -t tmpfs``, or
an ext4 image on a loop device where tmpfs is refused; skipped, saying so, only
when the container allows neither), and it is filled with a real file until
the kernel answers ENOSPC, so SQLite fails exactly as it does on a full disk
("database or disk is full"). Webhooks go to a real HTTP server in the test;
the daemon test runs a real ``camwatch`` process on a file camera whose image
is swapped, with a real AF_UNIX socket as NOTIFY_SOCKET (what systemd does).
Nothing is mocked.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from daemon_helpers import Daemon, write_config
from media import scene_image, write_image
from modelkit import grid_model
from test_daemon import wait
from test_signals import NotifySocket

from camwatch.core.backoff import Backoff
from camwatch.service.alerts import Backlog, Dispatcher
from camwatch.service.metrics import Metrics
from camwatch.service.sinks import LogSink, WebhookSink
from camwatch.store.events import Event, EventStore

FAST = Backoff(base=0.05, cap=0.4, jitter=0.2)


# ---- a real small filesystem, really filled ---------------------------------------------------
def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 24 MiB filesystem of its own: tmpfs, else ext4 on a loop device."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    tried = _run("mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mnt))
    if tried.returncode != 0:
        image = tmp_path / "small.img"
        with open(image, "wb") as f:
            f.truncate(24 << 20)
        made = _run("mkfs.ext4", "-q", "-F", str(image))
        loop = _run("mount", "-o", "loop", str(image), str(mnt)) if made.returncode == 0 else made
        if loop.returncode != 0:
            pytest.skip(f"this container can mount neither a tmpfs ({tried.stderr.strip()}) nor a loop "
                        f"device ({loop.stderr.strip()}): no small real filesystem to fill")
    try:
        yield mnt
    finally:
        _run("umount", "-l", str(mnt))


class Filler:
    """Fills a filesystem to its last byte with one file, and frees it again."""

    def __init__(self, folder: Path):
        self.path = folder / "filler.bin"

    def fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break
        finally:
            os.close(fd)
        probe = self.path.parent / "probe"
        with pytest.raises(OSError) as full:
            with open(probe, "wb") as f:
                f.write(b"x" * 8192)
                f.flush()
                os.fsync(f.fileno())
        assert full.value.errno == errno.ENOSPC
        probe.unlink(missing_ok=True)

    def free(self) -> None:
        self.path.unlink()


# ---- a real webhook receiver -------------------------------------------------------------------
class Receiver:
    """Records every POSTed body in arrival order; answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with outer.lock:
                    outer.bodies.append(body)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def got(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return [(b["camera"], b["type"], b["id"]) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def store_with_an_empty_log(folder: Path) -> EventStore:
    """events.db reopened as after a restart: its write-ahead log starts empty, so the next commit
    must grow it, which a full disk refuses. (A daemon that ran for a while reaches the same point
    as soon as its main file must grow: the checkpoint after a commit then fails, and the next
    commit appends to the log. Until then a full disk still takes small events, and nothing is lost.)
    """
    EventStore(folder).close()        # the last connection closing folds the log into the main file
    return EventStore(folder)


def stored(state: Path) -> list[tuple[str, str, str]]:
    """(camera, type, id) of every event in events.db, in the order it was written."""
    con = sqlite3.connect(state / "events.db")
    try:
        return [tuple(r) for r in con.execute("SELECT camera_id, type, id FROM events ORDER BY seq")]
    finally:
        con.close()


# ---- the dispatcher on a full disk, in process ------------------------------------------------
def test_events_refused_by_a_full_disk_are_held_in_order_then_written_and_delivered_once(small_fs, caplog):
    caplog.set_level(logging.INFO)
    rx = Receiver()
    store = store_with_an_empty_log(small_fs)
    metrics = Metrics(process=False)
    d = Dispatcher(store, [LogSink(), WebhookSink(rx.url, name="pager")], backoff=FAST, poll=0.2,
                   metrics=metrics, retry=0.1)
    d.start()
    filler = Filler(small_fs)
    try:
        filler.fill()
        held = [d.publish(Event("a", "drift_started", kind="moved")), d.publish(Event("b", "camera_down")),
                d.publish(Event("a", "drift_cleared"))]
        assert [e.id for e in d.backlog.events] == [e.id for e in held]      # in order, none written
        assert metrics.registry.get_sample_value("camwatch_events_unwritten") == 3
        assert metrics.registry.get_sample_value("camwatch_store_ok", {"store": "events"}) == 0
        assert "EVENTS STORE FAILING: 3 event(s) held" in d.backlog.describe()
        time.sleep(0.5)                                                         # retried: still full
        assert len(d.backlog.events) == 3 and stored(small_fs) == [] and rx.got() == []
    finally:
        filler.free()
    wait("the held events delivered", lambda: len(rx.got()) == 3)
    time.sleep(0.3)
    d.stop()
    want = [(e.camera_id, e.type, e.id) for e in held]
    assert rx.got() == want                                                     # once each, in order
    assert stored(small_fs) == want
    assert not d.backlog.events and d.backlog.ok
    assert metrics.registry.get_sample_value("camwatch_events_unwritten") == 0
    assert metrics.registry.get_sample_value("camwatch_store_ok", {"store": "events"}) == 1
    failing = [r for r in caplog.records if "events store failing" in r.getMessage()]
    assert len(failing) == 1 and failing[0].levelname == "ERROR"               # once per outage
    assert "database or disk is full" in failing[0].getMessage()
    assert any("events store writable again" in r.getMessage() and "3 held event(s) written" in r.getMessage()
               for r in caplog.records)
    store.close()
    rx.close()


def test_a_delivery_the_full_disk_could_not_mark_is_not_sent_again(small_fs):
    rx = Receiver()
    store = EventStore(small_fs)
    e = Event("a", "drift_started", kind="covered")
    store.record(e, ["pager"])                                  # recorded before the disk filled
    store.close()
    store = store_with_an_empty_log(small_fs)
    filler = Filler(small_fs)
    filler.fill()
    d = Dispatcher(store, [WebhookSink(rx.url, name="pager")], backoff=FAST, poll=0.1, retry=0.1)
    try:
        d.start()
        wait("the delivery", lambda: rx.got())
        wait("its mark held in memory", lambda: d.backlog.marks.get("pager") == {e.id})
        time.sleep(0.6)                                          # several retries while still full
        assert rx.got() == [("a", "drift_started", e.id)] and not d.backlog.ok
        assert store.pending_count("pager") == 1                # the store could not record it yet
    finally:
        filler.free()
    wait("the mark written", lambda: store.pending_count("pager") == 0)
    d.stop()
    assert rx.got() == [("a", "drift_started", e.id)] and d.backlog.ok
    store.close()
    rx.close()


def test_past_the_bound_the_newest_are_dropped_and_counted(small_fs):
    store = store_with_an_empty_log(small_fs)
    metrics = Metrics(process=False)
    d = Dispatcher(store, [LogSink()], metrics=metrics, backlog=Backlog(limit=2), retry=0.1)
    filler = Filler(small_fs)
    filler.fill()
    try:
        kept = [d.publish(Event("a", "camera_down")), d.publish(Event("a", "camera_up"))]
        d.publish(Event("a", "camera_down"))                        # the third: past the bound
        assert [e.id for e in d.backlog.events] == [e.id for e in kept]   # the oldest are kept
        assert metrics.registry.get_sample_value("camwatch_events_dropped_total") == 1
        assert d.backlog.describe().endswith("2 event(s) held in memory, 1 dropped")
    finally:
        filler.free()
    d.publish(Event("b", "camera_down"))                           # room again: written behind them
    assert [x[1:] for x in stored(small_fs)][:2] == [("camera_down", kept[0].id), ("camera_up", kept[1].id)]
    assert len(stored(small_fs)) == 3 and d.backlog.ok
    store.close()


def test_held_events_outlive_a_reload_that_replaces_the_dispatcher(small_fs):
    """A reload (new webhooks) builds a new Dispatcher; what the old one held is the daemon's Backlog."""
    rx = Receiver()
    store = store_with_an_empty_log(small_fs)
    backlog = Backlog()
    old = Dispatcher(store, [LogSink()], backlog=backlog, retry=0.1)
    old.start()
    filler = Filler(small_fs)
    filler.fill()
    try:
        held = old.publish(Event("a", "drift_started", kind="moved"))
        old.stop(flush=False)                                            # as Daemon._restart_dispatcher
        assert [e.id for e in backlog.events] == [held.id]
        new = Dispatcher(store, [LogSink(), WebhookSink(rx.url, name="pager")], backlog=backlog, retry=0.1)
        new.start()
        later = new.publish(Event("a", "drift_cleared"))                # queued behind the held one
        assert [e.id for e in backlog.events] == [held.id, later.id]
    finally:
        filler.free()
    wait("both delivered by the new dispatcher", lambda: len(rx.got()) == 2)
    new.stop()
    assert [x[2] for x in rx.got()] == [held.id, later.id] == [x[2] for x in stored(small_fs)]
    store.close()
    rx.close()


# ---- the real daemon -----------------------------------------------------------------------------
def test_daemon_on_a_full_disk_keeps_drift_started_and_delivers_it_once_in_order(tmp_path, small_fs):
    grid_model(tmp_path / "grid.onnx")
    image = write_image(tmp_path / "gate.png", scene_image(seed=1, scene="street"))
    state = small_fs / "state"
    rx = Receiver()
    cfg = write_config(tmp_path / "cameras.yaml",
                       [{"id": "gate", "url": str(image), "auto_enroll": True, "confirm": 4}],
                       model=str(tmp_path / "grid.onnx"), device="cpu", state_dir=str(state),
                       webhooks=[{"url": rx.url, "name": "pager", "timeout": 3}])
    first = Daemon(cfg, log_level="INFO")              # enrols the camera, then stops: as after a restart,
    try:                                               # events.db's log starts empty (store_with_an_empty_log)
        first.wait_state("gate", "ok", timeout=60)
    finally:
        assert first.stop() == 0
    ns = NotifySocket(tmp_path / "notify.sock")
    d = Daemon(cfg, env={"NOTIFY_SOCKET": str(ns.path), "WATCHDOG_USEC": "2000000"}, log_level="INFO")
    filler = Filler(small_fs)
    try:
        d.wait_state("gate", "ok", timeout=60)
        drifted = lambda: d.value("camwatch_checks_total", camera="gate", result="drifted") or 0  # noqa: E731
        write_image(image, scene_image(seed=1, scene="street", moved=True))
        d.wait("the first drifted check", lambda: drifted() >= 1, step=0.05)
        assert d.state("gate") == "ok"                   # confirm: 4, so the drift is being confirmed
        filler.fill()
        full_at = time.monotonic()
        d.wait_state("gate", "drifted", timeout=30)
        d.wait("drift_started held in memory", lambda: d.value("camwatch_events_unwritten") == 1)
        assert d.value("camwatch_store_ok", store="events") == 0
        d.wait("the status line to say so",
               lambda: any("EVENTS STORE FAILING" in m.get("STATUS", "") for t, m in ns.messages if t >= full_at),
               timeout=15)
        time.sleep(3)                                    # retried meanwhile; nothing written nor sent
        assert [t for _, t, _ in rx.got()] == [] and [t for _, t, _ in stored(state)] == []
        assert d.value("camwatch_events_unwritten") == 1
        pings = [m for t, m in ns.messages if t >= full_at and "WATCHDOG" in m]
        assert len(pings) >= 2, "a full disk must not starve the watchdog (a restart frees nothing)"
        log = d.log()
        assert log.count("events store failing") == 1 and "database or disk is full" in log

        filler.free()
        d.wait("drift_started delivered", lambda: [t for _, t, _ in rx.got()] == ["drift_started"], timeout=30)
        d.wait("the store healthy again", lambda: d.value("camwatch_store_ok", store="events") == 1)
        assert d.value("camwatch_events_unwritten") == 0
        assert "events store writable again" in d.log()

        write_image(image, scene_image(seed=1, scene="street"))
        d.wait("drift_cleared delivered", lambda: len(rx.got()) == 2, timeout=30)
        time.sleep(1)
        got = rx.got()
        assert [t for _, t, _ in got] == ["drift_started", "drift_cleared"]   # exactly once each, in order
        assert stored(state) == got
    finally:
        d.stop()
        ns.close()
        rx.close()
        if filler.path.exists():
            filler.free()
