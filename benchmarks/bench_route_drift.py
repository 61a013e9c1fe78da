#!/usr/bin/env python3
"""Does a model-input route change how far benign and drifted HD views sit from their reference?

What users see is the similarity of a view to its reference against the
threshold, with reference and view through the same route. For each route of
``hd_routes.ROUTES`` this embeds, on real frames at HD:

- scenes: the stills (landscape, >= 960 px wide, centre-cropped to 16:9) upscaled to
  1920x1080 by INTER_CUBIC; the same with camera-style sharpening (unsharp mask,
  sigma 1.5 px, amount 1: more fine detail, so harder for routes that skip rows);
  every >= 720p video frame under --footage, as it is (720p) and upscaled to 1080p;
- a reference view of each scene (sensor noise, sigma 3 grey levels, a fresh draw per view);
- benign views: shifted 1 or 2 px, another noise draw, JPEG quality 70, brightness x0.7, and
  shake (0.2-1% shift, <= 0.5 degree roll, JPEG-70: what the decision alarms on most);
- drifted views: rotated 2 degrees, zoomed 1.1x, shifted 5% of the frame.

It prints, per route and scene set: similarity of benign views (p1, p5, median),
of drifted views (p95, p99, max), how many benign views fall below and how many
drifted ones stay above the thresholds (the model's default, and the cameras' 0.8 x
the default distance, decision.py's calibration bounds), the largest change of a
pair's similarity against the exact route, and each route's embedding cosine to
the exact route on the reference views (as ``bench_preprocess.py --compare``).

    python benchmarks/bench_route_drift.py --stills /work/shared/stills --footage /work/shared/footage/train
    python benchmarks/bench_route_drift.py --stills ... --routes exact,shipped,rows4lin --max-stills 60

Never point it at dev footage: this is a measurement on training material.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hd_routes import ROUTES  # noqa: E402

from camwatch.vision.embedder import load_embedder  # noqa: E402

BENIGN = ("shift 1px", "shift 2px", "noise", "jpeg70", "bright x0.7", "shake")
DRIFTED = ("rotate 2deg", "zoom 1.1x", "shift 5%")
CAMERA_DISTANCE_FACTOR = 0.8          # decision.py: CALIBRATION_MIN_RATIO = CALIBRATION_MAX_RATIO = 0.8


def crop_16_9(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ch = min(h, round(w * 9 / 16))
    y0 = (h - ch) // 2
    return img[y0:y0 + ch]


def stills(root: Path, limit: int) -> list[np.ndarray]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or img.shape[1] < 960 or img.shape[0] / img.shape[1] < 0.5 or img.shape[0] > img.shape[1]:
            continue
        out.append(crop_16_9(img))
        if len(out) >= limit:
            break
    return out


def video_frames(root: Path, per_video: int) -> list[np.ndarray]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
            continue
        cap = cv2.VideoCapture(str(path))
        if cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) < 1280 * 720:
            cap.release()
            continue
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 100
        for k in range(per_video):
            cap.set(cv2.CAP_PROP_POS_FRAMES, k * max(1, n // per_video))
            ok, f = cap.read()
            if ok:
                out.append(f)
        cap.release()
    return out


def sharpen(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    return np.clip(2 * f - cv2.GaussianBlur(f, (0, 0), 1.5), 0, 255)


def warp(scene: np.ndarray, dx: float = 0, dy: float = 0, angle: float = 0, zoom: float = 1) -> np.ndarray:
    h, w = scene.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(scene, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def noisy(x: np.ndarray, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    f = x.astype(np.float32) * gain
    return np.clip(f + rng.normal(0, 3, f.shape).astype(np.float32), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, q: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


def views(scene: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The reference, benign and drifted views of one scene (float32 or uint8 BGR, full size)."""
    h, w = scene.shape[:2]
    t = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(t), np.sin(t)
    out = {"reference": noisy(scene, rng),
           "shift 1px": noisy(warp(scene, c, s), rng),
           "shift 2px": noisy(warp(scene, 2 * c, 2 * s), rng),
           "noise": noisy(scene, rng),
           "jpeg70": jpeg(noisy(scene, rng), 70),
           "bright x0.7": noisy(scene, rng, 0.7),
           # a fixed camera vibrating (as shake_check.py): 0.2-1% shift, <= 0.5 degree roll, JPEG-70
           "shake": jpeg(noisy(warp(scene, rng.uniform(0.002, 0.01) * w * c, rng.uniform(0.002, 0.01) * h * s,
                                    angle=rng.uniform(-0.5, 0.5)), rng), 70),
           "rotate 2deg": noisy(warp(scene, angle=float(rng.choice([-2.0, 2.0]))), rng),
           "zoom 1.1x": noisy(warp(scene, zoom=1.1), rng),
           "shift 5%": noisy(warp(scene, 0.05 * w * np.sign(c), 0.05 * h * np.sign(s)), rng)}
    return out


def scene_sets(a: argparse.Namespace) -> dict[str, list[np.ndarray]]:
    sets: dict[str, list[np.ndarray]] = {}
    if a.stills:
        base = stills(a.stills, a.max_stills)
        up = [cv2.resize(s, (1920, 1080), interpolation=cv2.INTER_CUBIC).astype(np.float32) for s in base]
        sets["1080p upscaled stills"] = up
        sets["1080p upscaled + sharpened"] = [sharpen(u) for u in up]
    if a.footage:
        vid = video_frames(a.footage, a.per_video)
        if vid:
            sets["720p video"] = vid
            sets["720p video upscaled to 1080p"] = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_CUBIC)
                                                    .astype(np.float32) for f in vid]
    return sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stills", type=Path, help="folder of stills (landscape ones >= 960 px wide are used)")
    ap.add_argument("--footage", type=Path, help="folder of videos (those >= 1280x720 are used)")
    ap.add_argument("--routes", default=",".join(ROUTES), help="comma-separated; 'exact' is always included")
    ap.add_argument("--max-stills", type=int, default=150)
    ap.add_argument("--per-video", type=int, default=16)
    ap.add_argument("--model", help="ONNX model (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    routes = ["exact"] + [r for r in a.routes.split(",") if r != "exact"]
    for r in routes:
        if r not in ROUTES:
            ap.error(f"--routes: {r!r} is not one of {', '.join(ROUTES)}")

    emb = load_embedder(a.model, device="cpu", threads=1)
    spec = emb.spec.input
    thr = emb.spec.threshold
    cam = 1 - CAMERA_DISTANCE_FACTOR * (1 - thr)
    print(f"model {emb.spec.name} {emb.spec.version} ({emb.spec.short_id}); similarity thresholds: default {thr:.4f}, "
          f"cameras (0.8 x the default distance) {cam:.4f}")
    print(f"benign: {', '.join(BENIGN)}; drifted: {', '.join(DRIFTED)}; reference and view through the same route")
    for name, scenes in scene_sets(a).items():
        rng = np.random.default_rng(a.seed)
        sims = {r: {k: [] for k in BENIGN + DRIFTED} for r in routes}
        to_exact = {r: [] for r in routes}
        for scene in scenes:
            v = views(scene, rng)
            keys = list(v)
            for r in routes:
                e = emb.run_prepared(np.stack([ROUTES[r](v[k], spec) for k in keys]))
                for i, k in enumerate(keys[1:], 1):
                    sims[r][k].append(float(e[0] @ e[i]))
                to_exact[r].append(e[0])
        h, w = scenes[0].shape[:2]
        print(f"\n{name}: {len(scenes)} scenes, {w}x{h}, {len(scenes) * len(BENIGN)} benign and "
              f"{len(scenes) * len(DRIFTED)} drifted pairs")
        print(f"  {'route':<9} {'cos to exact min/mean':>22} | {'benign p1':>9} {'p5':>6} {'median':>6} "
              f"{'<cam':>4} {'<def':>4} | {'drift p95':>9} {'p99':>6} {'max':>6} {'>=cam':>5} {'>=def':>5} "
              f"| {'max |d sim| vs exact':>20}")
        ref_exact = np.stack(to_exact["exact"])
        for r in routes:
            b = np.array([x for k in BENIGN for x in sims[r][k]])
            d = np.array([x for k in DRIFTED for x in sims[r][k]])
            be = np.array([x for k in BENIGN for x in sims["exact"][k]])
            de = np.array([x for k in DRIFTED for x in sims["exact"][k]])
            cos = np.sum(np.stack(to_exact[r]) * ref_exact, axis=1)
            dmax = max(np.abs(b - be).max(), np.abs(d - de).max())
            print(f"  {r:<9} {cos.min():>11.4f}/{cos.mean():.4f} | {np.percentile(b, 1):>9.4f} "
                  f"{np.percentile(b, 5):>6.4f} {np.median(b):>6.4f} {int((b < cam).sum()):>4} "
                  f"{int((b < thr).sum()):>4} | {np.percentile(d, 95):>9.4f} {np.percentile(d, 99):>6.4f} "
                  f"{d.max():>6.4f} {int((d >= cam).sum()):>5} {int((d >= thr).sum()):>5} | {dmax:>20.4f}")
        print("  per kind, median similarity (exact / each other route in turn):")
        for k in BENIGN + DRIFTED:
            print(f"    {k:<12} " + "  ".join(f"{r} {np.median(sims[r][k]):.4f}" for r in routes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
