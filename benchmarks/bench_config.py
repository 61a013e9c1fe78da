"""How long loading and validating a cameras file takes (daemon start, every reload, `validate`).

    nice -n 10 python3 benchmarks/bench_config.py [--cameras 500] [--runs 7]

Prints the median of several runs of load_config on a generated file with N cameras,
each with credentials from ${ENV}, an ROI, a mask and active hours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import harness  # noqa: E402,F401  (puts the repository and tests/ on sys.path)

from camwatch.config import load_config  # noqa: E402


def make(path: Path, n: int) -> None:
    lines = ["settings:", "  state_dir: ./state", "  interval: 60s", "cameras:"]
    for i in range(n):
        lines += [f"  - id: cam-{i:04d}",
                  f"    name: Camera {i}",
                  f"    url: rtsp://viewer:${{BENCH_PASS}}@10.0.{i // 250}.{i % 250 + 1}:554/stream1",
                  "    interval: 30s",
                  "    roi: [[[0, 0.1], [1, 0.1], [1, 1], [0, 1]]]",
                  "    mask: [[[0.7, 0.1], [1, 0.1], [1, 0.5], [0.7, 0.5]]]",
                  "    active_hours: [\"06:00-12:00\", \"13:00-22:00\"]"]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    os.environ["BENCH_PASS"] = "bench-secret-pass"
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.cameras:
            path = Path(tmp) / f"cameras-{n}.yaml"
            make(path, n)
            load_config(path)  # warm imports
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                config = load_config(path)
                times.append(time.perf_counter() - t0)
            assert len(config.cameras) == n
            med = statistics.median(times)
            print(f"load_config {n:5d} cameras: median {med * 1000:8.1f} ms "
                  f"({med / n * 1e6:6.0f} us/camera, {args.runs} runs, min {min(times) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
