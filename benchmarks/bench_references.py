"""How long the reference store's operations take on this disk.

Prints medians of several runs: a durable add (synchronous=FULL commit with a
~100 KB JPEG, then the checkpoint that puts it in the main file, so deleted
-wal/-shm files cannot take it), reading one camera's references with and
without images (what a check does; each access also checks the files under
the connection), a calibration sample (one small durable commit, left in the
log), and opening the store (quick_check, identity) at 100 and 1,000 references.
Figures vary with the disk's fsync time; compare runs on one machine.

    python3 benchmarks/bench_references.py [--refs 1000] [--repeat 5] [--dir /var/lib/camwatch]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import harness  # noqa: E402,F401  (puts the repository and tests/ on sys.path)
import numpy as np

from camwatch.store.references import ReferenceStore  # noqa: E402


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to put the test databases (default: the system temp dir; "
                                                "point it at the disk state_dir will live on)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    image = rng.bytes(100_000)
    emb = rng.standard_normal(512).astype(np.float32)
    results: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds * 1000)

    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            store = ReferenceStore(d)
            note("add (durable, 100 KB image)",
                 timed(lambda i: store.add(f"cam{i % 100}", f"l{i // 100}", image, emb, "m"), 100))
            note("open + quick_check, 100 refs", timed(lambda i: ReferenceStore(d).close(), 3))
            note("for_camera with images", timed(lambda i: store.for_camera(f"cam{i % 100}"), 200))
            note("for_camera without images",
                 timed(lambda i: store.for_camera(f"cam{i % 100}", images=False), 200))
            note("add_calibration_sample", timed(lambda i: store.add_calibration_sample("cam1", "m", 0.9), 100))
            note("summary (metrics)", timed(lambda i: store.summary(), 50))
            for i in range(100, args.refs):
                store.add(f"cam{i}", "day", image, emb, "m")
            note(f"open + quick_check, {args.refs} refs", timed(lambda i: ReferenceStore(d).close(), 3))
            note(f"open without check, {args.refs} refs",
                 timed(lambda i: ReferenceStore(d, verify=False).close(), 3))
            store.close()

    print(f"reference store, medians of {args.repeat} runs (ms per operation)")
    for name, values in results.items():
        print(f"  {name:40s} {statistics.median(values):9.3f}")


if __name__ == "__main__":
    main()
