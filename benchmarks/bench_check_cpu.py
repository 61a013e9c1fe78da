"""CPU seconds per drift check over RTSP, against the floor of a bare OpenCV loop.

For 720p and 1080p H.264 served by the real GStreamer RTSP server, it runs:

  camwatch   the real daemon (``python -m camwatch``, shipped model unless --model)
             on --cameras cameras of that stream, interval --interval, for --seconds
             after a warm-up; CPU = the process's user+system time over the window,
             divided by the checks /metrics counted in it. Everything a check costs
             is in: scheduling, RTSP probe, open, decode, release, preprocessing,
             inference, decision, metrics, SQLite reads.
  floor      a bare Python process doing only what OpenCV must do for a frame:
             snapshot mode: VideoCapture(url, FFmpeg, same options and timeouts) +
             read() + release(), back to back; stream mode: one held capture
             reading every frame for the same window (per check = its CPU over the
             window divided by the checks camwatch did in it). Shown twice: with
             OpenCV's default decoder threads, and with one thread (as camwatch's
             snapshot mode opens), so the gain from that choice is not hidden.

Each figure is the median of --runs runs; the ratio camwatch/floor is what
the ≤1.3x snapshot-mode target is about.

    nice -n 10 python3 benchmarks/bench_check_cpu.py [--runs 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import (
    CamwatchProcess,
    Media,
    RtspServer,
    metric_sum,
    need_tools,
    print_settings,
    proc_stats,
    scrape,
    workdir,
    write_config,
)

from camwatch.config import Settings
from camwatch.core.decision import SHIPPED

#: The product's default calibration.checks: the window is measured after it, as a camera lives.
CALIBRATION = Settings().calibration.checks
#: Checks after calibration before the window: the learned scene's quick start (learned again after
#: each of its first ``learn_batch`` views, ``learn_spacing`` apart) is over, as for a camera that
#: has run for a few minutes.
WARM = 3 + SHIPPED.learn_batch * max(1, math.ceil(SHIPPED.learn_spacing))

FLOOR = r"""
import os, resource, sys, time
os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp|analyzeduration;0|probesize;32"
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2
url, mode = sys.argv[1], sys.argv[2]
seconds, timeout_ms, threads = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
if threads:
    params += [cv2.CAP_PROP_N_THREADS, threads]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0, n = cpu(), time.monotonic(), 0
if mode == "snapshot":
    while time.monotonic() - t0 < seconds:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        ok, img = cap.read()
        cap.release()
        n += bool(ok)
else:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    c0, t0 = cpu(), time.monotonic()  # the one open is not counted: only the steady reading
    while time.monotonic() - t0 < seconds:
        ok, img = cap.read()
        n += bool(ok)
    cap.release()
print(cpu() - c0, n, time.monotonic() - t0)
"""


def floor(url: str, mode: str, seconds: float, threads: int = 0) -> tuple[float, int, float]:
    """(CPU s, frames, wall s) of the bare loop; ``threads`` FFmpeg decoder threads (0 = default)."""
    out = subprocess.run([sys.executable, "-c", FLOOR, url, mode, str(seconds), "5000", str(threads)],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"floor loop failed: {out.stderr[-800:]}")
    cpu, n, wall = out.stdout.split()
    return float(cpu), int(n), float(wall)


def camwatch_run(folder: Path, url: str, mode: str, cameras: int, interval: float, seconds: float,
                 model: str | None) -> tuple[float, float, float]:
    """(CPU s per check, checks in window, checks/s) of the real daemon."""
    cams = [{"id": f"c{i}", "url": url, "mode": mode, "auto_enroll": True} for i in range(cameras)]
    # calibration as shipped: the learned scene (and its later learning) is part of every check
    cfg = write_config(folder / "cameras.yaml", cams, interval=interval, timeout=5,
                       calibration={"checks": CALIBRATION}, **({"model": model} if model else {}))
    d = CamwatchProcess(cfg, log_level="WARNING")
    try:
        d.wait_ready()
        # warm-up: every camera enrolled and checked a few times
        end = time.monotonic() + 60 + (CALIBRATION + WARM) * interval
        while time.monotonic() < end:
            ok = metric_sum(scrape(d.port), "camwatch_checks_total", result="ok")
            if ok >= (CALIBRATION + WARM) * cameras:
                break
            time.sleep(0.5)
        text = scrape(d.port)
        n0 = metric_sum(text, "camwatch_checks_total", result="ok") \
            + metric_sum(text, "camwatch_checks_total", result="drifted")
        _, _, _, c0 = proc_stats(d.proc.pid)
        t0 = time.monotonic()
        time.sleep(seconds)
        _, _, _, c1 = proc_stats(d.proc.pid)
        wall = time.monotonic() - t0
        text = scrape(d.port)
        n1 = metric_sum(text, "camwatch_checks_total", result="ok") \
            + metric_sum(text, "camwatch_checks_total", result="drifted")
        errors = metric_sum(text, "camwatch_checks_total", result="error")
        if errors:
            print(f"  (camwatch counted {errors:.0f} failed checks)", file=sys.stderr)
        n = n1 - n0
        if n <= 0:
            raise RuntimeError(f"camwatch did no check in the window:\n{d.log_tail()}")
        return (c1 - c0) / n, n, n / wall
    finally:
        d.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    ap.add_argument("--cameras", type=int, default=1,
                    help="cameras checked at once (2+ adds the cost of concurrent decodes on 2 cores)")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"])
    ap.add_argument("--modes", nargs="+", default=["snapshot", "stream"])
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    args = ap.parse_args(argv)
    why = need_tools()
    if why:
        print(f"bench_check_cpu: cannot run: {why}", file=sys.stderr)
        return 3
    print_settings("bench_check_cpu", args)
    tmp = workdir("bench-cpu")
    media = Media(tmp / "media")
    mounts = {}
    for size in args.sizes:
        w, h = (int(x) for x in size.split("x"))
        mounts[f"p{h}"] = [media.clip("scene", w, h)]
    server = RtspServer(mounts)
    server.start()
    print(f"camwatch: {args.cameras} camera(s) every {args.interval:g} s, {args.seconds:g} s windows, "
          f"median of {args.runs} runs; model: {args.model or 'shipped'}")
    print(f"{'stream':<7} {'mode':<9} {'camwatch':>9} {'floor':>7} {'ratio':>6} {'floor 1t':>9} {'ratio':>6} "
          f"{'checks/s':>9}   (ms CPU per check)")
    try:
        for mount in mounts:
            url = server.url(mount)
            for mode in args.modes:
                ours, theirs, theirs1, rates = [], [], [], []
                for run in range(args.runs):
                    folder = tmp / f"{mount}-{mode}-{run}"
                    folder.mkdir()
                    per_check, n, rate = camwatch_run(folder, url, mode, args.cameras, args.interval,
                                                      args.seconds, args.model)
                    ours.append(per_check)
                    rates.append(rate)
                    for threads, out in ((0, theirs), (1, theirs1)):
                        cpu, frames, wall = floor(url, mode, args.seconds, threads)
                        # stream: the bare reader's CPU over the window, per check camwatch made in it
                        out.append(cpu / frames if mode == "snapshot"
                                   else cpu / max(1.0, rate / args.cameras * wall))
                a, b, c = (statistics.median(x) for x in (ours, theirs, theirs1))
                print(f"{mount:<7} {mode:<9} {1000 * a:9.1f} {1000 * b:7.1f} {a / b:6.2f} {1000 * c:9.1f} "
                      f"{a / c:6.2f} {statistics.median(rates):9.2f}", flush=True)
    finally:
        server.stop()
    print("floor: a bare Python loop with OpenCV's defaults; floor 1t: the same with one FFmpeg decoder\n"
          "thread (camwatch's snapshot mode asks for one). snapshot: open + first frame + release per\n"
          "frame; stream: a bare reader's CPU over the window divided by camwatch's checks in it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
