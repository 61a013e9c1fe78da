#!/usr/bin/env python3
"""CPU an idle daemon burns, thread by thread: what it costs to wait.

Runs the real daemon (``python -m camwatch``) on one camera of a real RTSP
stream, checked at ``--interval`` (default one hour: after its first check it
only waits), and reads each thread's run time from /proc/PID/task/TID/schedstat
(nanoseconds, unlike the 10 ms ticks of /proc/.../stat) over ``--seconds``.
Thread names come from ``py-spy dump`` when py-spy is installed, else "?".

Why it matters: bench_check_cpu.py divides the daemon's whole CPU by its
checks, so at one check a second every wake-up of a waiting thread is paid by
a check. A polling loop (a queue read or a flag check with a timeout) shows
here as a thread that burns CPU while nothing happens.

    python3 benchmarks/bench_idle.py [--seconds 30] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import CamwatchProcess, Media, RtspServer, need_tools, print_settings, workdir, write_config


def thread_ns(pid: int) -> dict[str, int]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def thread_names(pid: int) -> dict[str, str]:
    if not shutil.which("py-spy"):
        return {}
    dump = subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    return dict(re.findall(r'Thread (\d+) \(\w+\): "([^"]+)"', dump))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interval", type=float, default=3600.0)
    args = ap.parse_args(argv)
    why = need_tools()
    if why:
        print(f"bench_idle: cannot run: {why}", file=sys.stderr)
        return 3
    print_settings("bench_idle", args)
    tmp = workdir("bench-idle")
    server = RtspServer({"p720": [Media(tmp / "media").clip("scene", 1280, 720)]})
    server.start()
    totals: list[float] = []
    try:
        for run in range(args.runs):
            cams = [{"id": "c0", "url": server.url("p720"), "mode": "snapshot", "auto_enroll": True}]
            d = CamwatchProcess(write_config(tmp / f"cameras{run}.yaml", cams, interval=args.interval,
                                             timeout=5), log_level="WARNING")
            try:
                d.wait_ready()
                time.sleep(8)                      # enrolled, first check done, only waiting now
                a = thread_ns(d.proc.pid)
                time.sleep(args.seconds)
                b = thread_ns(d.proc.pid)
                names = thread_names(d.proc.pid)
            finally:
                d.stop()
            per = {tid: (ns - a.get(tid, 0)) / 1e6 / args.seconds for tid, ns in b.items()}
            totals.append(sum(per.values()))
            print(f"run {run + 1}: {totals[-1]:.3f} ms CPU per second idle, {len(b)} threads")
            for tid, ms in sorted(per.items(), key=lambda kv: -kv[1])[:6]:
                if ms > 0:
                    print(f"  {names.get(tid, '?'):<16} {ms:.3f} ms/s")
    finally:
        server.stop()
    print(f"median over {args.runs} runs: {statistics.median(totals):.3f} ms CPU per second idle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
