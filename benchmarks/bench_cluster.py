"""Rendezvous hashing at fleet scale: balance, cameras moved by a new member, cost of ownership.

    nice -n 10 python3 benchmarks/bench_cluster.py [--cameras 50000] [--runs 5]

For each fleet shape (members N, replication R) over N cameras ids like the ones a site uses:

- balance: each member's cameras against the mean R*cameras/N (max/mean, min/mean, and the
  coefficient of variation next to the binomial one, sqrt((1-R/N)/(R*cameras/N)));
- moved: the share of cameras whose owners change when member N joins (expected R/(N+1)) and
  when member N-1 leaves (expected R/N), and whether only cameras of the new or gone member moved;
- cost: seconds to compute every camera's owners (what a daemon does at start and on each
  reload; ``Cluster.owns`` per camera), median of --runs.

With ``--live`` it runs a fleet instead (not in CI: minutes of CPU):

    nice -n 10 python3 benchmarks/bench_cluster.py --live [--live-cameras 900] [--interval 30] [--seconds 120]

three real ``camwatch`` processes (members 3, replication 2) on this machine, each with its own
state directory, on one real PostgreSQL (tests/pg_server.py: Debian's server in a temporary
folder) holding every reference and event, checking ``--live-cameras`` file cameras (640x360
JPEGs) with the shipped model, enrolled once by ``camwatch enroll --all`` from a fourth state
directory. After a warm-up round, a window of ``--seconds``: per member, its cameras, the
checks/s it made (``camwatch_checks_total``) against what its cameras ask, the scheduler lag
(``camwatch_scheduler_lag_seconds``, bucket bounds), CPU (cores) and ms of CPU per check, RSS;
and the PostgreSQL server's CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness  # (puts the repository and tests/ on sys.path)

from camwatch.core.cluster import Cluster  # noqa: E402

SHAPES = ((3, 1), (3, 2), (5, 2), (10, 2), (10, 3), (30, 2))


def _postgres_cpu(data: Path) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster and every backend it forked."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / harness.CLK_TCK
    return total


def live(args: argparse.Namespace) -> int:
    """Three members on one PostgreSQL, measured from their /metrics and /proc (see the module doc)."""
    from pg_server import PostgresServer, unavailable

    why = unavailable()
    if why:
        print(f"bench_cluster --live: cannot run: {why}", file=sys.stderr)
        return 3
    members, replication = 3, 2
    harness.print_settings("bench_cluster", args)
    tmp = harness.workdir("bench-cluster")
    views = []
    for i in range(4):
        views.append(tmp / f"view{i}.jpg")
        harness.write_image(views[-1], harness.scene_image(640, 360, seed=200 + i,
                                                           scene=("street", "shop", "lobby")[i % 3]))
    server = PostgresServer().init()
    os.environ["CAMWATCH_BENCH_PG_PASSWORD"] = server.password
    store = server.url(server.new_schema(), connect_timeout=5).replace(server.password,
                                                                        "${CAMWATCH_BENCH_PG_PASSWORD}")
    cameras = [{"id": f"cam-{i:05d}", "url": str(views[i % len(views)])} for i in range(args.live_cameras)]
    common = {"store": store, "interval": args.interval, "timeout": 5, "workers": 8, "device": "cpu"}
    daemons: list[harness.CamwatchProcess] = []
    try:
        laptop = tmp / "enroller"
        laptop.mkdir()
        cfg = harness.write_config(laptop / "cameras.yaml", cameras, **common)
        t_enrol = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "camwatch", "--config", str(cfg), "enroll", "--all"],
                              capture_output=True, text=True, cwd=harness.REPO)
        if done.returncode != 0:
            print(f"bench_cluster --live: enroll failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        print(f"{args.live_cameras} file cameras (640x360 JPEG), interval {args.interval:g} s, members "
              f"{members}, replication {replication}: {replication * args.live_cameras / args.interval:.1f} "
              f"checks/s asked of the fleet; enrolled once in {time.monotonic() - t_enrol:.0f} s", flush=True)
        t0 = time.monotonic()
        for m in range(members):
            folder = tmp / f"member-{m}"
            folder.mkdir()
            cfg = harness.write_config(folder / "cameras.yaml", cameras, **common, cluster={
                "members": members, "member": f"camwatch-{m}", "replication": replication})
            daemons.append(harness.CamwatchProcess(cfg))
        for d in daemons:
            d.wait_ready()
        # Warm-up: every member through its first round (each camera checked by its owners).
        deadline = time.monotonic() + 10 * args.interval + 120
        while True:
            texts = [harness.scrape(d.port, 30) for d in daemons]
            if sum(harness.metric_sum(t, "camwatch_checks_total") for t in texts) >= \
                    replication * args.live_cameras:
                break
            if time.monotonic() > deadline:
                print("bench_cluster --live: the fleet never finished its first round", file=sys.stderr)
                return 1
            time.sleep(1)
        # Then until an interval's checks are what the cameras ask and started on time (the first
        # round's backlog drained), for at most 6 intervals: the window measures the steady state.
        settled = False
        for _ in range(6):
            t_a = [harness.scrape(d.port, 30) for d in daemons]
            time.sleep(args.interval)
            t_b = [harness.scrape(d.port, 30) for d in daemons]
            made = sum(harness.metric_sum(b, "camwatch_checks_total") - harness.metric_sum(a, "camwatch_checks_total")
                       for a, b in zip(t_a, t_b))
            late = max(harness.quantile(harness.histogram(a, "camwatch_scheduler_lag_seconds"),
                                        harness.histogram(b, "camwatch_scheduler_lag_seconds"), 0.99)
                       for a, b in zip(t_a, t_b))
            if abs(made - replication * args.live_cameras) <= 0.05 * replication * args.live_cameras and late <= 1:
                settled = True
                break
        print(f"warm-up {time.monotonic() - t0:.0f} s from the members' start; "
              + ("settled" if settled else "NOT settled: the machine does not keep up"), flush=True)
        before = [(harness.scrape(d.port, 30), harness.proc_stats(d.proc.pid)) for d in daemons]
        pg0, w0 = _postgres_cpu(server.data), time.monotonic()
        time.sleep(args.seconds)
        after = [(harness.scrape(d.port, 30), harness.proc_stats(d.proc.pid)) for d in daemons]
        pg1, wall = _postgres_cpu(server.data), time.monotonic() - w0
        print("| member | cameras | checks/s (asked) | lag p50 / p99, s | CPU, cores | CPU per check, ms "
              "| RSS, MB | errors |")
        print("|---|---|---|---|---|---|---|---|")
        total_rate = total_cpu = 0.0
        for m, ((text0, s0), (text1, s1)) in enumerate(zip(before, after)):
            owned = harness.metric_sum(text1, "camwatch_cluster_member_cameras", member=str(m))
            checks = (harness.metric_sum(text1, "camwatch_checks_total")
                      - harness.metric_sum(text0, "camwatch_checks_total"))
            errors = (harness.metric_sum(text1, "camwatch_checks_total", result="error")
                      - harness.metric_sum(text0, "camwatch_checks_total", result="error"))
            lag0 = harness.histogram(text0, "camwatch_scheduler_lag_seconds")
            lag1 = harness.histogram(text1, "camwatch_scheduler_lag_seconds")
            cpu = (s1[3] - s0[3]) / wall
            total_rate += checks / wall
            total_cpu += cpu
            print(f"| {m} | {owned:.0f} | {checks / wall:.1f} ({owned / args.interval:.1f}) "
                  f"| {harness.quantile(lag0, lag1, 0.5):g} / {harness.quantile(lag0, lag1, 0.99):g} "
                  f"| {cpu:.2f} | {1000 * cpu * wall / max(checks, 1):.1f} | {s1[0]:.0f} | {errors:.0f} |")
        print(f"fleet: {total_rate:.1f} checks/s of {replication * args.live_cameras / args.interval:.1f} asked, "
              f"{total_cpu:.2f} cores for the members, {(pg1 - pg0) / wall:.2f} for PostgreSQL "
              f"({1000 * (pg1 - pg0) / max(total_rate * wall, 1):.2f} ms per check), over {wall:.0f} s")
        return 0
    finally:
        for d in daemons:
            d.stop(60)
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--live", action="store_true", help="run three real members on one PostgreSQL instead")
    parser.add_argument("--live-cameras", type=int, default=900, help="file cameras of the --live fleet")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between a camera's checks (--live)")
    parser.add_argument("--seconds", type=float, default=120.0, help="the measured window (--live)")
    args = parser.parse_args()
    if args.live:
        return live(args)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
