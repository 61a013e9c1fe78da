#!/usr/bin/env python3
"""Where camwatch's own CPU of a snapshot check goes: thread CPU of each part, in the running daemon.

The real ``Daemon`` runs in process on one camera of the real GStreamer RTSP
server (H.264, --size), calibrated as shipped and past its learned scene's quick
start, checked every second. Each part below is wrapped with
``time.thread_time`` for --seconds, so a part's figure is the CPU of the thread
that ran it; nothing else changes. Printed: milliseconds per check, the median
of --runs runs.

    nice -n 10 python benchmarks/bench_check_parts.py --runs 3 --seconds 30

To compare two commits, run it on each in turn, the other from a worktree
(``git worktree add /tmp/old COMMIT``, then ``python /tmp/old/benchmarks/bench_check_parts.py``):
it imports camwatch from the tree it lives in.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from harness import REPO, Media, RtspServer, need_tools, print_settings, workdir, write_config

sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]   # this tree's camwatch

from camwatch.config import Settings  # noqa: E402
from camwatch.core import calibration  # noqa: E402
from camwatch.core.decision import SHIPPED  # noqa: E402
from camwatch.service import checks, pipeline  # noqa: E402
from camwatch.service.daemon import Daemon  # noqa: E402
from camwatch.sources import rtsp  # noqa: E402

#: (label, module or class, attribute): what is timed, in the order printed.
PARTS: list[tuple[str, Any, str]] = [
    ("fetch worker: open + first frame + release (what the floor does)", rtsp.RtspSnapshotSource, "_grab"),
    ("  of it the RTSP probe", rtsp, "rtsp_probe"),
    ("the inference thread's work on the checked view (all below)", pipeline.Pipeline, "_assess_batch"),
    ("  frame -> model input and view statistics (vision.analyse)", checks, "analyse_batch"),
    ("  embedding and statistics together (analyse + inference)", pipeline, "embed_views"),
    ("  threshold, references, learned scene from the store", pipeline, "threshold_for"),
    ("    of it learning the scene again (relearn_backgrounds)", calibration, "relearn_backgrounds"),
    ("  the decision (the scene's measures, structure, kinds)", pipeline, "judge"),
    ("  monitor, metrics, events (carry_out)", pipeline.Pipeline, "carry_out"),
    ("the scheduler's job in the pool thread (run_check)", pipeline.Pipeline, "run_check"),
]


def instrument(totals: collections.Counter[str], on: list[bool]) -> Callable[[], None]:
    """Wrap each part; returns what undoes it."""
    undo = []
    for label, owner, name in PARTS:
        original = getattr(owner, name)

        def wrapped(*a: Any, _f: Callable[..., Any] = original, _label: str = label, **k: Any) -> Any:
            if not on[0]:
                return _f(*a, **k)
            start = time.thread_time()
            try:
                return _f(*a, **k)
            finally:
                totals[_label] += time.thread_time() - start

        setattr(owner, name, wrapped)
        undo.append((owner, name, original))

    def restore() -> None:
        for owner, name, original in undo:
            setattr(owner, name, original)

    return restore


def one_run(url: str, seconds: float, folder: Any) -> tuple[dict[str, float], int]:
    calibration_checks = Settings().calibration.checks
    warm = 3 + SHIPPED.learn_batch * max(1, int(SHIPPED.learn_spacing + 0.999))
    cfg = write_config(folder / "cameras.yaml", [{"id": "c0", "url": url, "mode": "snapshot", "auto_enroll": True}],
                       interval=1, timeout=5, calibration={"checks": calibration_checks})
    totals: collections.Counter[str] = collections.Counter()
    on = [False]
    checked = [0]
    undo = instrument(totals, on)
    counted = pipeline.Pipeline._assess_batch

    def counting(self: Any, batch: Any) -> None:
        if on[0]:
            checked[0] += len(batch)
        counted(self, batch)

    pipeline.Pipeline._assess_batch = counting     # type: ignore[method-assign]
    d = Daemon(str(cfg))
    try:
        d.start()
        time.sleep(2 + calibration_checks + warm)
        on[0] = True
        time.sleep(seconds)
        on[0] = False
    finally:
        d.stop()
        pipeline.Pipeline._assess_batch = counted   # type: ignore[method-assign]
        undo()
    n = max(1, checked[0])
    return {label: 1000 * totals[label] / n for label, _, _ in PARTS}, checked[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    ap.add_argument("--size", default="1280x720")
    a = ap.parse_args()
    why = need_tools()
    if why:
        print(f"bench_check_parts: cannot run: {why}", file=sys.stderr)
        return 3
    print_settings("bench_check_parts", a)
    tmp = workdir("bench-parts")
    w, h = (int(x) for x in a.size.split("x"))
    server = RtspServer({"p": [Media(tmp / "media").clip("scene", w, h)]})
    server.start()
    runs = []
    try:
        for k in range(a.runs):
            folder = tmp / f"run{k}"
            folder.mkdir()
            runs.append(one_run(server.url("p"), a.seconds, folder))
    finally:
        server.stop()
    print(f"camwatch from {REPO}; {a.size}, one camera every 1 s; thread CPU in ms per check, "
          f"median of {a.runs} runs ({', '.join(str(n) for _, n in runs)} checks)")
    for label, _, _ in PARTS:
        print(f"  {label:<66} {statistics.median(r[label] for r, _ in runs):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
