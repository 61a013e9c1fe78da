"""Memory: RSS of the camwatch process at start, and per configured camera in each mode.

For each mode it starts the real daemon (``python -m camwatch``, shipped model
unless --model) twice: with one camera and with N cameras of that mode, lets
every camera be enrolled (auto_enroll) and checked a few times, samples the RSS
(/proc/PID/statm) several times and takes the median; per camera = (RSS(N) -
RSS(1)) / (N - 1). Modes:

  file           an image file re-read per check
  file-learned   the same, calibrated (the default 8 checks) and then learning its scene (8 views kept),
                 so the difference from ``file`` is what a calibrated reference's scene costs
  http           HTTP snapshot (one real threaded HTTP server, one path per camera)
  rtsp-snapshot  RTSP, connect per check (real GStreamer RTSP server, 640x360 H.264)
  rtsp-stream    RTSP, a held connection decoding 15 fps (fewer cameras: each costs CPU)

"At start" is the daemon with one disabled camera: Python, OpenCV, ONNX Runtime
with the model loaded, SQLite, the metrics server. Medians of --runs runs.

    nice -n 10 python3 benchmarks/bench_memory.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from harness import (
    CamwatchProcess,
    RtspServer,
    SnapshotServer,
    metric_sum,
    need_tools,
    print_settings,
    proc_stats,
    rtsp_server,
    scene_image,
    scrape,
    workdir,
    write_config,
    write_image,
)

from camwatch.config import Settings
from camwatch.core.decision import SHIPPED


def cameras_for(mode: str, n: int, folder: Path, http: SnapshotServer | None, rtsp: RtspServer | None) -> list[dict]:
    cams = []
    for i in range(n):
        cid = f"cam{i:03d}"
        if mode in ("file", "file-learned"):
            path = write_image(folder / f"{cid}.jpg", scene_image(640, 360, seed=300 + i))
            url = str(path)
        elif mode == "http":
            http.image(f"/{cid}.jpg", scene_image(640, 360, seed=300 + i))
            url = http.url(f"/{cid}.jpg")
        else:
            url = rtsp.url(f"m{i % len(rtsp.mounts)}")
        entry = {"id": cid, "url": url, "auto_enroll": True}
        if mode == "rtsp-stream":
            entry["mode"] = "stream"
        cams.append(entry)
    return cams


#: The product's default calibration.checks, which a ``file-learned`` camera runs with.
CALIBRATION = Settings().calibration.checks
#: Checks a ``file-learned`` camera needs: calibration, then a full history of learned views and two more.
LEARNED_CHECKS = CALIBRATION + SHIPPED.learn_views + 2


def rss_of(folder: Path, cams: list[dict], interval: float, model: str | None, settle_checks: int = 3,
           calibration: int = 0) -> float:
    """Median RSS (MB) once every enabled camera has done ``settle_checks`` checks."""
    cfg = write_config(folder / "cameras.yaml", cams, interval=interval, timeout=5,
                       calibration={"checks": calibration}, **({"model": model} if model else {}))
    d = CamwatchProcess(cfg, log_level="WARNING")
    try:
        d.wait_ready(120)
        enabled = sum(1 for c in cams if c.get("enabled", True))
        end = time.monotonic() + 60 + 10 * settle_checks * interval
        while enabled and time.monotonic() < end:
            done = metric_sum(scrape(d.port, 10), "camwatch_checks_total", result="ok")
            if done >= settle_checks * enabled:
                break
            time.sleep(1)
        else:
            if enabled:
                raise RuntimeError(f"cameras did not settle:\n{d.log_tail()}")
        time.sleep(2 if enabled else 5)
        samples = []
        for _ in range(5):
            samples.append(proc_stats(d.proc.pid)[0])
            time.sleep(interval / 2)
        return statistics.median(samples)
    finally:
        d.stop(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["file", "http", "rtsp-snapshot", "rtsp-stream"])
    ap.add_argument("--cameras", type=int, default=100, help="N for file, http, rtsp-snapshot")
    ap.add_argument("--stream-cameras", type=int, default=16, help="N for rtsp-stream")
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    args = ap.parse_args(argv)
    need_rtsp = any(m.startswith("rtsp") for m in args.modes)
    if need_rtsp and need_tools():
        print(f"bench_memory: cannot run the RTSP modes: {need_tools()}", file=sys.stderr)
        return 3
    print_settings("bench_memory", args)
    tmp = workdir("bench-mem")
    http = SnapshotServer().start() if "http" in args.modes else None
    rtsp = rtsp_server(tmp, mounts=2) if need_rtsp else None
    print(f"RSS medians of {args.runs} runs, model: {args.model or 'shipped'}, interval {args.interval:g} s")
    try:
        starts = []
        for r in range(args.runs):
            folder = tmp / f"start{r}"
            folder.mkdir()
            starts.append(rss_of(folder, [{"id": "off", "url": str(folder / "none.png"), "enabled": False}],
                                 args.interval, args.model))
        print(f"at start (model loaded, no camera checking): {statistics.median(starts):.1f} MB", flush=True)
        print(f"{'mode':<14} {'N':>4} {'RSS(1) MB':>10} {'RSS(N) MB':>10} {'per camera MB':>14}", flush=True)
        for mode in args.modes:
            n = args.stream_cameras if mode == "rtsp-stream" else args.cameras
            ones, alls, per = [], [], []
            for r in range(args.runs):
                f1, fn = tmp / f"{mode}-1-{r}", tmp / f"{mode}-n-{r}"
                f1.mkdir()
                fn.mkdir()
                extra = {"settle_checks": LEARNED_CHECKS, "calibration": CALIBRATION} if mode == "file-learned" else {}
                a = rss_of(f1, cameras_for(mode, 1, f1, http, rtsp), args.interval, args.model, **extra)
                b = rss_of(fn, cameras_for(mode, n, fn, http, rtsp), args.interval, args.model, **extra)
                ones.append(a)
                alls.append(b)
                per.append((b - a) / (n - 1))
            print(f"{mode:<14} {n:>4} {statistics.median(ones):10.1f} {statistics.median(alls):10.1f} "
                  f"{statistics.median(per):14.2f}", flush=True)
    finally:
        if http:
            http.stop()
        if rtsp:
            rtsp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
