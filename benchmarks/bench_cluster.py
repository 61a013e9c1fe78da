"""Rendezvous hashing at fleet scale: balance, cameras moved by a new member, cost of ownership.

    nice -n 10 python3 benchmarks/bench_cluster.py [--cameras 50000] [--runs 5]

For each fleet shape (members N, replication R) over N cameras ids like the ones a site uses:

- balance: each member's cameras against the mean R*cameras/N (max/mean, min/mean, and the
  coefficient of variation next to the binomial one, sqrt((1-R/N)/(R*cameras/N)));
- moved: the share of cameras whose owners change when member N joins (expected R/(N+1)) and
  when member N-1 leaves (expected R/N), and whether only cameras of the new or gone member moved;
- cost: seconds to compute every camera's owners (what a daemon does at start and on each
  reload; ``Cluster.owns`` per camera), median of --runs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import harness  # noqa: F401  (puts the repository on sys.path)

from camwatch.core.cluster import Cluster  # noqa: E402

SHAPES = ((3, 1), (3, 2), (5, 2), (10, 2), (10, 3), (30, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ids = [f"site{i % 40:02d}-cam-{i:06d}" for i in range(args.cameras)]
    print(f"{args.cameras} cameras, medians of {args.runs} runs for times\n")
    print("| N | R | per member (mean) | max/mean | min/mean | CV | binomial CV | moved +1 (expected) "
          "| moved -1 (expected) | owners of all, s | owns() of all on one member, s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, r in SHAPES:
        fleet = Cluster(n, 0, r)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            before = fleet.assignment(ids)
            times.append(time.perf_counter() - t0)
        owns_times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sum(1 for cid in ids if fleet.owns(cid))
            owns_times.append(time.perf_counter() - t0)
        counts = fleet.counts(before)
        mean = args.cameras * r / n
        cv = statistics.pstdev(counts) / mean
        binomial = math.sqrt((1 - r / n) / mean)
        grown = Cluster(n + 1, 0, r).assignment(ids)
        moved_up = [c for c in ids if set(before[c]) != set(grown[c])]
        assert all(n in grown[c] for c in moved_up), "a camera moved between old members"
        shrunk = Cluster(n - 1, 0, min(r, n - 1)).assignment(ids) if n > r else None
        if shrunk is not None:
            moved_down = [c for c in ids if set(before[c]) != set(shrunk[c])]
            assert all(n - 1 in before[c] for c in moved_down), "a camera of a staying member moved"
            down = f"{len(moved_down) / len(ids):.4f} ({r / n:.4f})"
        else:
            down = "-"
        print(f"| {n} | {r} | {mean:.0f} | {max(counts) / mean:.3f} | {min(counts) / mean:.3f} | {cv:.4f} "
              f"| {binomial:.4f} | {len(moved_up) / len(ids):.4f} ({r / (n + 1):.4f}) | {down} "
              f"| {statistics.median(times):.3f} | {statistics.median(owns_times):.3f} |")


if __name__ == "__main__":
    main()
