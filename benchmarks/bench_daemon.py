"""How many cameras one daemon keeps up with: checks/s, scheduler lag, batch sizes, CPU.

Runs the real ``Daemon`` in process (APScheduler, worker pool, inference
thread, shipped model, SQLite state) on N file cameras (synthetic 640x360
JPEG views, enrolled by auto_enroll in the first round), every camera due each ``--interval``
seconds, for ``--seconds``; repeats ``--runs`` times and prints medians.
Lag is actual start minus scheduled start of each check, as the
``camwatch_scheduler_lag_seconds`` metric sees it.

    nice -n 10 python3 benchmarks/bench_daemon.py --cameras 8 32 --seconds 20 --runs 3
    # a GPU host (onnxruntime-gpu): the model on CUDA, the rest as above
    python3 benchmarks/bench_daemon.py --cameras 64 256 --device cuda
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import yaml
from harness import scene_image  # first: puts the repository and tests/ on sys.path

from camwatch.service.daemon import Daemon


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def skipped(d: Daemon) -> float:
    """Checks skipped because the camera's previous one was still in flight (or backing off)."""
    return sum(d.metrics.registry.get_sample_value("camwatch_checks_total",
                                                   {"camera": c, "result": "skipped"}) or 0
               for c in d.runtimes)


def one_run(n: int, interval: float, seconds: float, folder: Path, device: str = "cpu") -> dict[str, float]:
    cams = []
    for i in range(n):
        path = folder / f"cam{i}.jpg"
        cv2.imwrite(str(path), scene_image(seed=100 + i, scene=("street", "shop", "lobby")[i % 3]))
        cams.append({"id": f"cam{i}", "url": str(path), "auto_enroll": True})
    cfg = folder / "cameras.yaml"
    cfg.write_text(yaml.safe_dump({
        "settings": {"state_dir": str(folder / "state"), "interval": interval, "timeout": 5,
                     "workers": 8, "calibration": {"checks": 0}, "device": device,
                     "metrics": {"enabled": False}},
        "cameras": cams}))
    d = Daemon(str(cfg))
    lags: list[float] = []
    batches: list[int] = []
    infer: list[float] = []
    try:
        d.start()
        real_lag, real_inf = d.metrics.observe_lag, d.metrics.observe_inference
        d.metrics.observe_lag = lambda s: (lags.append(s), real_lag(s))[1]
        d.metrics.observe_inference = lambda s, b: (infer.append(s), batches.append(b), real_inf(s, b))[2]
        time.sleep(2 * interval + 1)  # past the first round (enrolment), synchronised
        lags.clear(), batches.clear(), infer.clear()
        skipped0 = skipped(d)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        done = sum(batches)
        skips = skipped(d) - skipped0
    finally:
        d.stop()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"checks_per_s": done / wall, "skipped_per_s": skips / wall, "due_per_s": n / interval,
            "lag_median_ms": 1000 * pct(lags, 0.5), "lag_p95_ms": 1000 * pct(lags, 0.95),
            "batch_median": pct([float(b) for b in batches], 0.5),
            "batch_max": max(batches, default=0),
            "infer_ms_per_view": 1000 * sum(infer) / max(1, done),
            "cpu_core_share": cpu / wall, "cpu_ms_per_check": 1000 * cpu / max(1, done)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "tensorrt", "auto"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"file cameras, 640x360 JPEG, interval {args.interval:g} s, {args.seconds:g} s per run, "
          f"median of {args.runs} runs, model on {args.device}")
    for n in args.cameras:
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(one_run(n, args.interval, args.seconds, Path(tmp), args.device))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{n:4d} cameras: {med['checks_per_s']:.1f} checks/s of {med['due_per_s']:.1f} due "
              f"({med['skipped_per_s']:.1f}/s skipped: camera still in flight), "
              f"lag median {med['lag_median_ms']:.1f} ms p95 {med['lag_p95_ms']:.1f} ms, "
              f"batch median {med['batch_median']:.0f} max {med['batch_max']:.0f}, "
              f"inference {med['infer_ms_per_view']:.2f} ms/view, "
              f"CPU {med['cpu_ms_per_check']:.1f} ms/check ({med['cpu_core_share']:.2f} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
