"""Costs of the operations side, so they are known figures rather than guesses.

    nice -n 10 python3 benchmarks/bench_operations.py [--repeats 5]

Prints medians over --repeats runs of:
- recording one event durably (SQLite WAL, synchronous=FULL, event + 2 outbox rows);
- delivering events through the Dispatcher to a real local HTTP webhook (events/s);
- writing one evidence JPEG from two 1280x720 views (compose + encode + fsync + retention);
- rendering /metrics for 100 and 1,000 cameras (what one Prometheus scrape costs), and its size;
- one gzipped scrape of 1,000 cameras over HTTP, alone and with 1,000 idle connections held open
  against the listener, and the listener's thread count then (a fixed pool: it must not grow).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness  # noqa: E402,F401  (puts the repository and tests/ on sys.path)
import numpy as np

from camwatch.core.backoff import Backoff  # noqa: E402
from camwatch.service.alerts import Dispatcher
from camwatch.service.metrics import Metrics  # noqa: E402
from camwatch.service.sinks import WebhookSink  # noqa: E402
from camwatch.store.events import Event, EventStore  # noqa: E402
from camwatch.store.evidence import write_evidence  # noqa: E402


def bench_record(n: int = 200) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = EventStore(d)
        times = []
        for i in range(n):
            e = Event(f"cam{i % 10}", "drift_started", kind="moved", similarity=0.4, threshold=0.8)
            t0 = time.perf_counter()
            store.record(e, ["log", "pager"])
            times.append(time.perf_counter() - t0)
        store.close()
    return statistics.median(times)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def log_message(self, *a):
        pass


def bench_dispatch(n: int = 300) -> float:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as d:
            store = EventStore(d)
            sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook", timeout=5)
            disp = Dispatcher(store, [sink], backoff=Backoff(0.05, 0.5, jitter=0.2), poll=0.1)
            for i in range(n):  # recorded first, then drained: the delivery rate alone
                store.record(Event(f"cam{i % 10}", "camera_down"), [sink.name])
            t0 = time.perf_counter()
            disp.start()
            while store.pending_count():
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            disp.stop()
            store.close()
    finally:
        server.shutdown()
        server.server_close()
    return n / elapsed


def bench_evidence(n: int = 10) -> float:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    cur = np.roll(ref, 40, axis=1)
    times = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(n):
            t0 = time.perf_counter()
            write_evidence(d, "cam", ref, cur, 0.4, 0.8, "moved", keep=5)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_render(cameras: int, n: int = 5) -> tuple[float, int]:
    m = Metrics()
    for i in range(cameras):
        cid = f"camera-{i:04d}"
        m.camera_added(cid)
        m.check_done(cid, "ok", 0.9, 0.8)
        m.set_state(cid, "ok")
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        size = len(m.render())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def _scrape(port: int) -> float:
    t0 = time.perf_counter()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
    return time.perf_counter() - t0


def bench_listener(cameras: int = 1000, idle: int = 1000, n: int = 5) -> tuple[float, float, int]:
    """Median scrape alone, median scrape with ``idle`` open idle connections, listener threads then."""
    m = Metrics()
    for i in range(cameras):
        m.camera_added(f"camera-{i:04d}")
    server = m.serve("127.0.0.1", 0)
    conns: list[socket.socket] = []
    try:
        alone = statistics.median(_scrape(server.port) for _ in range(n))
        conns = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(idle)]
        time.sleep(0.5)
        crowded = statistics.median(_scrape(server.port) for _ in range(n))
        threads = sum(1 for t in threading.enumerate() if t.name.startswith("metrics-http"))
    finally:
        for c in conns:
            c.close()
        server.close()
    return alone, crowded, threads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    med = lambda f: statistics.median(f() for _ in range(args.repeats))  # noqa: E731
    print(f"record one event (sync=FULL, 2 outbox rows): {med(bench_record) * 1000:.2f} ms "
          f"(median of {args.repeats} runs)")
    print(f"webhook delivery to a local HTTP server:      {med(bench_dispatch):.0f} events/s")
    print(f"evidence JPEG from two 1280x720 views:        {med(bench_evidence) * 1000:.1f} ms")
    for cams in (100, 1000):
        results = [bench_render(cams) for _ in range(args.repeats)]
        t = statistics.median(r[0] for r in results)
        print(f"/metrics render, {cams:>4} cameras:             {t * 1000:.1f} ms, {results[0][1] / 1024:.0f} KiB")
    alone, crowded, threads = bench_listener()
    print(f"/metrics scrape, 1000 cameras, gzip:          {alone * 1000:.0f} ms alone, {crowded * 1000:.0f} ms "
          f"beside 1000 idle connections ({threads} listener threads)")


if __name__ == "__main__":
    main()
