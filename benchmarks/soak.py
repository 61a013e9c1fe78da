"""Soak: a real camwatch process under injected faults, watched for leaks.

Runs ``camwatch --config ...`` as a subprocess on N cameras served by local
real servers (GStreamer RTSP server looping H.264, snapshot and stream modes;
a threaded HTTP snapshot server), and on a timer injects faults in turn:

  rtsp-down   the RTSP server is stopped, then started again (same port)
  rtsp-freeze the RTSP server is SIGSTOPped (sockets open, nothing sent), then SIGCONTed
  http-500    every HTTP camera answers 500, then images again

Every ``--sample`` seconds it reads the process's RSS, open file descriptors
and threads (/proc/PID), its CPU time and the checks counted on /metrics, and
prints a table. Growth is judged on the samples taken in healthy phases (a
fault holds sockets and hung workers by design) after the warm-up: the median
of the last three against the median of the first three. Exit 1 if RSS or
open files grew more than ``--max-growth`` percent, or if the daemon died or
stopped checking; exit 3 if a needed tool is missing.

    nice -n 10 python3 benchmarks/soak.py --minutes 10 --cameras 20

The helpers it shares with the other daemon benchmarks are in harness.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass

import harness


@dataclass
class Sample:
    at: float          # seconds since start
    rss_mb: float
    fds: int
    threads: int
    cpu_s: float       # user + system seconds so far
    checks: float      # camwatch_checks_total summed over cameras and results
    phase: str


def site(cameras: int, rtsp: harness.RtspServer, http: harness.SnapshotServer) -> tuple[list[dict], list[str]]:
    """Camera entries: half RTSP (alternating snapshot/stream over the mounts), half HTTP."""
    cams, http_paths = [], []
    mounts = list(rtsp.mounts)
    n_rtsp = cameras // 2
    for i in range(n_rtsp):
        cams.append({"id": f"rtsp{i:03d}", "url": rtsp.url(mounts[i % len(mounts)]),
                     "mode": "stream" if i % 2 else "snapshot", "auto_enroll": True})
    for i in range(cameras - n_rtsp):
        path = f"/cam{i}.jpg"
        http.image(path, harness.scene_image(640, 360, seed=100 + i, scene=("street", "shop", "lobby")[i % 3]))
        http_paths.append(path)
        cams.append({"id": f"http{i:03d}", "url": http.url(path), "auto_enroll": True})
    return cams, http_paths


# -- the soak -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--cameras", type=int, default=20)
    ap.add_argument("--interval", type=float, default=2.0, help="check interval per camera (s)")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--fault-every", type=float, default=30.0, help="seconds from one fault to the next")
    ap.add_argument("--fault-for", type=float, default=8.0, help="seconds each fault lasts")
    ap.add_argument("--warmup", type=float, default=0.25, help="share of the run before growth is judged")
    ap.add_argument("--max-growth", type=float, default=10.0, help="percent")
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    args = ap.parse_args(argv)
    why = harness.need_tools()
    if why:
        print(f"soak: cannot run: {why}", file=sys.stderr)
        return 3

    harness.print_settings("soak", args)
    tmp = harness.workdir("soak")
    rtsp = harness.rtsp_server(tmp)
    http = harness.SnapshotServer().start()
    cams, http_paths = site(args.cameras, rtsp, http)
    cfg = harness.write_config(tmp / "cameras.yaml", cams, interval=args.interval,
                       **({"model": args.model} if args.model else {}))
    daemon = harness.CamwatchProcess(cfg)
    samples: list[Sample] = []
    faults = ["rtsp-down", "rtsp-freeze", "http-500"]
    phase = "healthy"
    lock = threading.Lock()
    stop = threading.Event()
    injected: list[tuple[float, str]] = []

    def inject() -> None:
        nonlocal phase
        k = 0
        while not stop.wait(max(0.0, args.fault_every - args.fault_for)):
            kind = faults[k % len(faults)]
            k += 1
            with lock:
                phase = kind
            injected.append((time.monotonic() - t0, kind))
            if kind == "rtsp-down":
                rtsp.stop()
            elif kind == "rtsp-freeze":
                rtsp.freeze()
            else:
                for p in http_paths:
                    http.status(p, 500)
            stop.wait(args.fault_for)
            if kind == "rtsp-down":
                rtsp.start()
            elif kind == "rtsp-freeze":
                rtsp.thaw()
            else:
                for i, p in enumerate(http_paths):
                    http.image(p, harness.scene_image(640, 360, seed=100 + i, scene=("street", "shop", "lobby")[i % 3]))
            with lock:
                phase = "recovering"
            stop.wait(min(10.0, args.fault_every - args.fault_for))  # recovery, not yet healthy
            with lock:
                if phase == "recovering":
                    phase = "healthy"

    code = 0
    try:
        daemon.wait_ready()
        t0 = time.monotonic()
        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
        end = t0 + args.minutes * 60
        print(f"soak: {args.cameras} cameras ({args.cameras // 2} RTSP, {args.cameras - args.cameras // 2} HTTP), "
              f"interval {args.interval:g} s, {args.minutes:g} min, a fault every {args.fault_every:g} s "
              f"for {args.fault_for:g} s; pid {daemon.proc.pid}; state in {tmp}", flush=True)
        print(f"{'t (s)':>7} {'RSS MB':>8} {'fds':>5} {'threads':>7} {'CPU %':>6} {'checks/s':>8}  phase", flush=True)
        prev: Sample | None = None
        while time.monotonic() < end:
            time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
            if daemon.proc.poll() is not None:
                print(f"soak: camwatch exited {daemon.proc.returncode}:\n{daemon.log_tail()}", file=sys.stderr)
                return 1
            rss, fds, threads, cpu = harness.proc_stats(daemon.proc.pid)
            try:
                checks = harness.metric_sum(harness.scrape(daemon.port), "camwatch_checks_total")
            except OSError:
                checks = float("nan")
            with lock:
                ph = phase
            s = Sample(time.monotonic() - t0, rss, fds, threads, cpu, checks, ph)
            samples.append(s)
            dt = s.at - prev.at if prev else s.at
            cpu_pct = 100 * (s.cpu_s - (prev.cpu_s if prev else s.cpu_s)) / dt if prev else float("nan")
            rate = (s.checks - prev.checks) / dt if prev else float("nan")
            print(f"{s.at:7.0f} {s.rss_mb:8.1f} {s.fds:5d} {s.threads:7d} {cpu_pct:6.1f} {rate:8.2f}  {ph}",
                  flush=True)
            prev = s
        stop.set()
        injector.join(args.fault_for + 15)
        rc = daemon.stop()
        if rc != 0:
            print(f"soak: camwatch exited {rc} on SIGTERM:\n{daemon.log_tail()}", file=sys.stderr)
            code = 1

        warm = args.minutes * 60 * args.warmup
        judged = [s for s in samples if s.at >= warm and s.phase == "healthy"]
        if len(judged) < 4:
            print(f"soak: only {len(judged)} healthy samples after the warm-up; run longer", file=sys.stderr)
            return 1
        first, last = judged[:3], judged[-3:]
        print(f"\nfaults injected: {len(injected)} ({', '.join(k for _, k in injected)})")
        print(f"growth after warm-up ({warm:.0f} s), healthy samples {first[0].at:.0f}-{first[-1].at:.0f} s "
              f"vs {last[0].at:.0f}-{last[-1].at:.0f} s:")
        for name, key in (("RSS", "rss_mb"), ("open files", "fds"), ("threads", "threads")):
            a = statistics.median(getattr(s, key) for s in first)
            b = statistics.median(getattr(s, key) for s in last)
            growth = 100 * (b - a) / a if a else 0.0
            judged_key = key in ("rss_mb", "fds")
            verdict = "" if not judged_key else ("  OK" if growth <= args.max_growth else "  TOO MUCH")
            print(f"  {name:<11} {a:9.1f} -> {b:9.1f}   {growth:+6.1f} %{verdict}")
            if judged_key and growth > args.max_growth:
                code = 1
        total_rate = (samples[-1].checks - samples[0].checks) / (samples[-1].at - samples[0].at)
        cpu_pct = 100 * (samples[-1].cpu_s - samples[0].cpu_s) / (samples[-1].at - samples[0].at)
        print(f"checks/s over the run {total_rate:.2f} (expected about {args.cameras / args.interval:.1f} "
              f"less skips during faults), CPU {cpu_pct:.0f} % of one core")
        if not total_rate > 0:
            print("soak: no checks were counted", file=sys.stderr)
            code = 1
        text = daemon.log_tail(10**9)
        if "Traceback" in text:
            print("soak: the camwatch log holds a traceback:\n" + text[text.index("Traceback"):][:2000],
                  file=sys.stderr)
            code = 1
        print("soak: " + ("PASS" if code == 0 else "FAIL"))
        return code
    finally:
        stop.set()
        daemon.stop()
        rtsp.stop()
        http.stop()


if __name__ == "__main__":
    sys.exit(main())
