#!/usr/bin/env python3
"""Does a clip's camera hold still? The global shift of each window's static scene against the first.

A false alarm on a busy clip is only a false alarm if the camera really stayed
where it was: stock footage is sometimes filmed handheld or from a slowly
panning head. Traffic and crowds hide the scene in any single frame, so each
window of ``--window`` frames is reduced to its per-pixel median (passing cars
and people vanish), high-passed (Laplacian of a Gaussian, so light does not
count) and located against the first window by phase correlation:

    python benchmarks/clip_steadiness.py ../shared/footage/dev/road_closeup_cars_xts.mp4

prints, per window, its first frame, the shift (dx, dy) in pixels of the
clip's own size, and phase correlation's response (near 1: one clear peak).
A fixed camera's windows stay within a fraction of a pixel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def grey_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, grey, as float32."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"clip_steadiness: cannot open {path}")
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32))
    finally:
        cap.release()
    return frames


def static_scene(frames: list[np.ndarray]) -> np.ndarray:
    """The window's per-pixel median, high-passed."""
    median = np.median(np.stack(frames), axis=0).astype(np.float32)
    return np.asarray(cv2.Laplacian(cv2.GaussianBlur(median, (0, 0), 1.0), cv2.CV_32F))


def shifts(frames: list[np.ndarray], window: int) -> list[tuple[int, float, float, float]]:
    """(first frame, dx, dy, response) of each whole window against the first window."""
    if len(frames) < window:
        raise SystemExit(f"clip_steadiness: the clip has {len(frames)} frames, fewer than --window {window}")
    base = static_scene(frames[:window])
    hann = cv2.createHanningWindow((base.shape[1], base.shape[0]), cv2.CV_32F)
    out = []
    for start in range(0, len(frames) - window + 1, window):
        (dx, dy), response = cv2.phaseCorrelate(base, static_scene(frames[start:start + window]), hann)
        out.append((start, float(dx), float(dy), float(response)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip", type=Path, help="a video file")
    ap.add_argument("--window", type=int, default=30, help="frames per window (default 30)")
    a = ap.parse_args(argv)
    if a.window < 1:
        ap.error("--window must be at least 1")
    frames = grey_frames(a.clip)
    h, w = frames[0].shape if frames else (0, 0)
    print(f"{a.clip.name}: {len(frames)} frames of {w}x{h}, windows of {a.window}")
    print(f"{'frame':>6} {'dx':>7} {'dy':>7} {'response':>9}")
    rows = shifts(frames, a.window)
    for start, dx, dy, response in rows:
        print(f"{start:>6} {dx:>7.2f} {dy:>7.2f} {response:>9.3f}")
    worst = max(max(abs(dx), abs(dy)) for _, dx, dy, _ in rows)
    print(f"largest shift {worst:.2f} px ({100 * worst / w:.2f} % of the width)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
