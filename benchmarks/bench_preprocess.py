#!/usr/bin/env python3
"""Where preprocessing time goes, and what the fast route changes.

Three parts, each figure the median of many timed calls (ms per call):

1. steps: each OpenCV step of ``prepare`` / ``view_stats`` on a
   720p and a 1080p BGR frame (cvtColor, pyrDown chain, 2x2 INTER_AREA, final
   INTER_AREA, float conversion, sharpness at 480 px, ROI/mask), at 1 OpenCV
   thread and OpenCV's default;
2. routes: ``prepare`` / ``view_stats`` / ``prepare_batch(32)`` as shipped
   (fast route for HD frames and up, FAST_MIN_PIXELS) against the exact pyrDown route
   (``prepare_exact``, ``view_stats_exact``), for 640x360, 720p and 1080p;
3. ``--compare DIR``: how different the fast route's model input (``prepare``: every 4th row
   at 1080p, a 2x2 mean first at 720p) is from the
   exact one on real frames (videos and images under DIR, 720p+ natively or
   960-px stills upscaled to 1080p with mild sensor noise): max/mean absolute
   pixel difference and the cosine between the model's embeddings of both; for
   scale, the cosine of the exact route against the same frame as a quality-90 JPEG.

    python benchmarks/bench_preprocess.py
    python benchmarks/bench_preprocess.py --compare ../shared/footage/train --stills ../shared/stills
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import harness  # noqa: F401  (puts the repository on sys.path)
import numpy as np

from camwatch.vision.embedder import load_embedder
from camwatch.vision.prepare import FAST_MIN_PIXELS, InputSpec, prepare, prepare_batch, prepare_exact
from camwatch.vision.regions import apply_regions
from camwatch.vision.stats import view_stats, view_stats_exact


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A textured BGR frame (smooth noise + sensor noise), like bench_embed's."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    base = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC) * 40 + 128
    base += rng.normal(0, 8, base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def ms(fn: Callable[[], object], calls: int) -> float:
    """Median milliseconds per call over ``calls`` timed calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def steps(calls: int) -> None:
    area = cv2.INTER_AREA
    for h, w in ((720, 1280), (1080, 1920)):
        img = frame(h, w)
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        half = cv2.resize(img, (w // 2, h // 2), interpolation=area)
        half_grey = cv2.cvtColor(half, cv2.COLOR_BGR2GRAY)
        small = half_grey
        while small.shape[1] >= 256 and small.shape[0] >= 256:
            small = cv2.pyrDown(small)
        stats_grey = cv2.pyrDown(half_grey) if w >= 1920 else cv2.resize(half_grey, (480, 270), interpolation=area)
        x128 = cv2.resize(small, (128, 128), interpolation=area)
        roi = [[(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]]
        mask = [[(0.0, 0.0), (0.3, 0.0), (0.3, 0.3)]]
        rows = [
            ("cvtColor BGR->grey, full frame", lambda: cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)),
            ("pyrDown grey, full frame", lambda: cv2.pyrDown(grey)),
            ("pyrDown BGR, full frame", lambda: cv2.pyrDown(img)),
            ("INTER_AREA 2x2 BGR, full frame (fast path)",
             lambda: cv2.resize(img, (w // 2, h // 2), interpolation=area)),
            ("INTER_AREA BGR full -> 480 wide (non-int)", lambda: cv2.resize(img, (480, 270), interpolation=area)),
            ("INTER_AREA grey full -> 128x128 (non-int)", lambda: cv2.resize(grey, (128, 128), interpolation=area)),
            ("cvtColor BGR->grey, half frame", lambda: cv2.cvtColor(half, cv2.COLOR_BGR2GRAY)),
            ("pyrDown grey, half frame", lambda: cv2.pyrDown(half_grey)),
            (f"INTER_AREA {small.shape[1]}x{small.shape[0]} -> 128x128",
             lambda: cv2.resize(small, (128, 128), interpolation=area)),
            ("astype float32 128x128", lambda: x128.astype(np.float32)),
            ("Laplacian energy at 480 px (float32, as before)",
             lambda: float(np.mean(cv2.Laplacian(stats_grey, cv2.CV_32F, ksize=3) ** 2))),
            ("apply_regions ROI + mask, full frame", lambda: apply_regions(img, roi, mask)),
        ]
        for threads in (1, None):
            cv2.setNumThreads(-1 if threads is None else threads)
            label = "1 OpenCV thread" if threads == 1 else f"OpenCV default ({cv2.getNumThreads()} threads)"
            print(f"\n{w}x{h}, {label}: median ms per call")
            for name, fn in rows:
                print(f"  {name:<48} {ms(fn, calls):8.3f}")
    cv2.setNumThreads(-1)


def routes(calls: int) -> None:
    spec = InputSpec()
    print(f"\nroutes (fast = 2x2 mean first for frames of >= {FAST_MIN_PIXELS} px; exact = pyrDown chain)")
    print(f"  {'frame':>9} {'cv2 thr':>7} {'prepare exact':>14} {'prepare fast':>13} {'stats exact':>12} "
          f"{'stats fast':>11} {'batch32 fast/view':>18}")
    for h, w in ((360, 640), (720, 1280), (1080, 1920)):
        img = frame(h, w)
        batch = [frame(h, w, s) for s in range(32)]
        for threads in (1, None):
            cv2.setNumThreads(-1 if threads is None else threads)
            figures = [ms(lambda: prepare_exact(img, spec), calls), ms(lambda: prepare(img, spec), calls),
                       ms(lambda: view_stats_exact(img), calls // 2), ms(lambda: view_stats(img), calls // 2),
                       ms(lambda: prepare_batch(batch, spec), max(5, calls // 32)) / 32]
            print(f"  {w:>4}x{h:<4} {cv2.getNumThreads():>7} " + " ".join(
                f"{v:>{n}.3f}" for v, n in zip(figures, (14, 13, 12, 11, 18))))
    cv2.setNumThreads(-1)


def real_frames(root: Path, stills: Path | None, per_video: int = 8) -> list[tuple[str, np.ndarray]]:
    """(label, BGR frame) pairs with a side > 640 px: native video frames (768-px ones must not change),
    upscaled stills."""
    out: list[tuple[str, np.ndarray]] = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
            continue
        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 100
        for k in range(per_video):
            cap.set(cv2.CAP_PROP_POS_FRAMES, k * max(1, n // per_video))
            ok, f = cap.read()
            if ok and max(f.shape[:2]) > 640:
                out.append((f"{f.shape[1]}x{f.shape[0]} video", f))
        cap.release()
    rng = np.random.default_rng(0)
    for path in sorted(stills.rglob("*.*")) if stills else []:
        img = cv2.imread(str(path)) if path.suffix.lower() in (".jpg", ".png", ".jpeg") else None
        if img is None or img.shape[1] != 960 or img.shape[0] < 500:
            continue
        big = cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        big += rng.normal(0, 3, big.shape).astype(np.float32)      # sensor noise at full resolution
        out.append(("1920x1080 upscaled still", np.clip(big, 0, 255).astype(np.uint8)))
        if sum(1 for lab, _ in out if lab.startswith("1920x1080")) >= 40:
            break
    return out


def compare(root: Path, stills: Path | None, model: str | None) -> None:
    emb = load_embedder(model, device="cpu", threads=1)
    spec = emb.spec.input
    frames = real_frames(root, stills)
    print(f"\nfast vs exact route on {len(frames)} real frames; model {emb.spec.name} {emb.spec.version} "
          f"({emb.spec.short_id})")
    print(f"  {'frames':<26} {'n':>3} {'max |diff|':>10} {'mean |diff|':>11} {'cos min':>8} {'cos mean':>9} "
          f"{'sharpness fast/exact':>21} {'cos JPEG-90':>13}")
    for label in sorted({lab for lab, _ in frames}):
        group = [f for lab, f in frames if lab == label]
        exact = np.stack([prepare_exact(f, spec) for f in group])
        fast = np.stack([prepare(f, spec) for f in group])
        cos = np.sum(emb.run_prepared(exact) * emb.run_prepared(fast), axis=1)
        diff = np.abs(exact - fast)
        sharp = [view_stats(f).sharpness / max(1e-9, view_stats_exact(f).sharpness) for f in group]
        # context: the same frame re-encoded as a JPEG at quality 90 (as a snapshot camera sends it)
        jpeg = [cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
                for f in group]
        cos_jpeg = np.sum(emb.run_prepared(exact) * emb.run_prepared(
            np.stack([prepare_exact(f, spec) for f in jpeg])), axis=1)
        print(f"  {label:<26} {len(group):>3} {diff.max():>10.1f} {diff.mean():>11.2f} {cos.min():>8.5f} "
              f"{cos.mean():>9.5f} {statistics.median(sharp):>21.3f} {cos_jpeg.min():>13.5f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200, help="timed calls per figure")
    ap.add_argument("--compare", type=Path, help="folder of real footage (videos) for the fast-vs-exact check")
    ap.add_argument("--stills", type=Path, help="folder of 960-px stills to upscale to 1080p for the check")
    ap.add_argument("--model", help="ONNX model for the embedding cosine (default: the shipped one)")
    ap.add_argument("--skip-timing", action="store_true")
    a = ap.parse_args()
    if not a.skip_timing:
        steps(a.calls)
        routes(a.calls)
    if a.compare:
        compare(a.compare, a.stills, a.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
