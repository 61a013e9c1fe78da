"""What one /metrics scrape costs at N cameras: camwatch's renderer against plain prometheus_client.

    nice -n 10 python3 benchmarks/bench_metrics.py [--cameras 1000] [--runs 7]

Builds one ``Metrics`` for N cameras with realistic values (mixed states, counters in the
thousands, full-precision similarities, NaN for cameras never assessed, timestamps), then
prints medians over --runs of the CPU time (and wall time) of:

- ``Metrics.render()`` against ``prometheus_client.generate_latest(registry)`` on the same
  registry (the camera series reach generate_latest through camwatch's collector, as the
  same samples the former Gauge and Counter objects gave), with the ratio;
- a whole /metrics answer as Prometheus 2.42 asks for it (its Accept header, gzip):
  camwatch's WSGI app against prometheus_client's ``make_wsgi_app``, which negotiates
  OpenMetrics and gzips at level 9 (what camwatch served before).

CPU time is process time of this single-threaded script; on a shared machine it is the
steadier figure. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from harness import print_settings, timed
from prometheus_client import generate_latest
from prometheus_client.exposition import make_wsgi_app

from camwatch.service.metrics import ALERT_KINDS, FRAME_ERROR_REASONS, Metrics

#: What Prometheus 2.42 (Debian 12's, the one tests/test_prometheus.py runs) sends.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def build(cameras: int, seed: int = 0) -> Metrics:
    """A Metrics as a daemon has it after days of running ``cameras`` cameras."""
    rng = random.Random(seed)
    m = Metrics()
    m.set_build_info("0.1.0", "camwatch-drift", "1.2.0")
    m.set_provider("CPUExecutionProvider")
    m.sinks_added(["log", "webhook-0123abcd"])
    now = time.time()
    states = ["ok"] * 90 + ["drifted"] * 3 + ["unavailable"] * 3 + ["no_reference"] * 2 + ["disabled"] * 2
    for i in range(cameras):
        cid = f"site{i // 50:02d}-cam-{i:04d}"
        state = rng.choice(states)
        m.camera_added(cid, "disabled" if state == "disabled" else "unavailable")
        if state in ("disabled", "no_reference"):
            m.set_state(cid, state)  # never assessed: similarity and threshold stay NaN
            continue
        m.set_references(cid, rng.randint(1, 5), now - rng.uniform(0, 30 * 86400))
        for _ in range(rng.randint(5, 40)):  # a few real increments; counts below come from the rate
            m.check_done(cid, "ok", rng.uniform(0.8, 1.0), 0.8)
        for _ in range(rng.randint(0, 3)):
            m.frame_error(cid, rng.choice(FRAME_ERROR_REASONS))
            m.reconnected(cid)
        if rng.random() < 0.2:
            m.alert(cid, rng.choice(ALERT_KINDS))
        m.check_done(cid, "drifted" if state == "drifted" else "ok", rng.uniform(0.3, 1.0),
                     rng.uniform(0.75, 0.85), at=now - rng.uniform(0, 30))
        if state == "unavailable":
            m.frame_error(cid, "timeout")
        m.set_state(cid, state)
    for _ in range(2000):
        m.observe_fetch(rng.uniform(0.005, 0.5))
        m.observe_lag(rng.uniform(0, 0.05))
        m.observe_inference(rng.uniform(0.002, 0.05), rng.randint(1, 32))
    m.set_events_pending(3)
    return m


def serve_once(app: Callable) -> Callable[[], bytes]:
    """One GET /metrics through a WSGI app, as Prometheus sends it."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
               "HTTP_ACCEPT": PROMETHEUS_ACCEPT, "HTTP_ACCEPT_ENCODING": "gzip"}
    return lambda: b"".join(app(environ, lambda status, headers: None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    print_settings("bench_metrics", args)
    m = build(args.cameras)
    text = m.render()
    lines = text.count(b"\n")
    print(f"{args.cameras} cameras: {lines:,} lines, {len(text) / 1024:.0f} KiB; "
          f"medians of {args.runs} runs (CPU ms / wall ms)")
    rows = [
        ("render", "Metrics.render()", lambda: m.render(),
         "prometheus_client.generate_latest", lambda: generate_latest(m.registry)),
        ("serve", "camwatch /metrics app", serve_once(m.wsgi_app()),
         "prometheus_client app (OpenMetrics, gzip 9)", serve_once(make_wsgi_app(m.registry))),
    ]
    for what, new_name, new_fn, old_name, old_fn in rows:
        new_cpu, new_wall = timed(new_fn, args.runs)
        old_cpu, old_wall = timed(old_fn, args.runs)
        print(f"{what}: {new_name:<44} {new_cpu * 1000:8.1f} / {new_wall * 1000:8.1f}")
        print(f"{what}: {old_name:<44} {old_cpu * 1000:8.1f} / {old_wall * 1000:8.1f}")
        print(f"{what}: ratio (CPU)                                  {old_cpu / new_cpu:8.1f}x")


if __name__ == "__main__":
    main()
