#!/usr/bin/env python3
"""Is this machine fit to measure camwatch's CPU per check? (a check of the machine, not of camwatch)

camwatch works in short bursts (one check per camera per interval) and sleeps in
between, while bench_check_cpu's floor decodes back to back. On some virtual
machines work that follows a sleep runs several times slower (vCPU wake-up,
frequency ramp, caches flushed by neighbours), which inflates camwatch's CPU
per check and not the floor's. This times the same small numpy job back to back
and after 0.3 s sleeps, single-threaded (OPENBLAS_NUM_THREADS=1 is set here).

    python benchmarks/machine_wake_check.py [--repeats 5]

Session 3's figures (camwatch 1.28x its floor at 720p) came from a machine
without this penalty; on session 4's machine the job took 2.6 ms back to back
and 9.4 ms after a sleep (3.6x), and bench_check_cpu gave camwatch 2.5-3.3x its
floor for the code of either session. A ratio near 1 means CPU-per-check figures
can be compared with the floor; well above it, they cannot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402  (after the thread setting)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    m = np.random.default_rng(0).random((300, 300))

    def job() -> float:
        return float((m @ m).sum() + (m @ m.T).sum() + (m.T @ m).sum())

    job()
    hot, cold = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        for _ in range(50):
            job()
        hot.append((time.perf_counter() - t) / 50)
        walls = []
        for _ in range(10):
            time.sleep(0.3)
            t = time.perf_counter()
            job()
            walls.append(time.perf_counter() - t)
        cold.append(statistics.median(walls))
    h, c = statistics.median(hot), statistics.median(cold)
    print(f"back to back: {h * 1000:.2f} ms per job; after a 0.3 s sleep: {c * 1000:.2f} ms "
          f"(x{c / h:.1f}; medians of {a.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
