#!/usr/bin/env python3
"""What the structure cue costs per check: the thumbnail (made with the view's
statistics) and one structure distance against the nearest reference; what the
learned scene costs per check: the focus grid (made with the view's statistics)
and the scene's measures against a camera's background; what learning the
scene costs (again from 9 views, every ``learn_batch`` benign checks; and at
calibration, where each view is also left out in turn); what searching for a
view's structure under global moves costs (``scene.displaced``, paid only by
views the embedding calls drifted that align under their camera's line with
nothing soft in view); and what naming a drifted view's kind costs
(core/kinds.py's cues, paid only by drifted views).

    python benchmarks/bench_structure.py [--repeats 7]

One OpenCV thread (as the daemon runs it); medians of ``--repeats`` runs of
200 calls each, on a 640x480 synthetic view and its reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit

import cv2
import harness  # noqa: F401  (puts the repository and tests/ on sys.path)
import numpy as np
from modelkit import view, world

from camwatch.core import decision, scene, structure
from camwatch.vision.prepare import single_threaded_opencv
from camwatch.vision.stats import view_stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    single_threaded_opencv()
    img = view(world(3))
    grey = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (480, 360), interpolation=cv2.INTER_AREA)
    ref, query = view_stats(img), view_stats(np.clip(img * 0.8, 0, 255).astype(np.uint8))
    turned = view_stats(np.roll(img, img.shape[1] // 5, axis=1))
    focus_grey = cv2.resize(grey, (640, 360), interpolation=cv2.INTER_LINEAR)
    learning = [view_stats(view(world(3), x=200 + s % 2)) for s in range(8)]
    background = scene.learn([v.layout for v in learning], [v.focus_grid for v in learning])
    layouts, grids = [ref.layout] + [v.layout for v in learning], [ref.focus_grid] + [v.focus_grid for v in learning]
    for name, fn, n in (("thumbnail of a 480-px grey view", lambda: structure.thumbnail(grey), 200),
                        ("structure distance (decode both, SSIM)",
                         lambda: structure.distance(query.thumb, ref.thumb), 200),
                        ("focus grid of a 640x360 grey view", lambda: scene.focus_cells(focus_grey, 12, 8), 200),
                        ("the learned scene's measures (scene.measure)",
                         lambda: scene.measure(query.layout, query.focus_grid, background), 200),
                        ("learning the scene again (9 views)",
                         lambda: scene.learn(layouts, grids, calibrated=background), 20),
                        ("learning it at calibration (9 views)", lambda: scene.learn(layouts, grids), 5),
                        ("structure under global moves (scene.displaced)",
                         lambda: scene.displaced(turned.layout, background), 20),
                        ("kind cues of a drifted view (decision.view_cues)",
                         lambda: decision.view_cues(turned, ref), 20)):
        runs = [t / n * 1e3 for t in timeit.repeat(fn, number=n, repeat=a.repeats)]
        print(f"{name:<42} median {statistics.median(runs):.3f} ms  (min {min(runs):.3f}, max {max(runs):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
