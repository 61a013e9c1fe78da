#!/usr/bin/env python3
"""How far small vibration moves a model's embedding, on scenes it never trained on.

Benign shake (a fixed camera vibrating by a fraction of a percent and of a degree)
is what the default decision still alarms on most (docs/evaluation.md). This
measures it directly, on the stills the trainer holds out (every 12th, sorted:
export/train.py VAL_STILL_EVERY), never on dev: for each still, a reference
window (70% of the frame), a shaken view of it (0.2-1% shift, <= 0.5 degrees
roll, JPEG) and moved views (8-20% shift; 3-10 degrees roll; 0.8x zoom). Distances
are printed relative to the model's default distance (1 - threshold), so models
with different thresholds compare: a shake figure near 0 and a moved figure
above 1 is what a good model does.

    python benchmarks/shake_check.py --stills ../shared/stills [--model A.onnx --model B.onnx]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from camwatch.vision.embedder import load_embedder  # noqa: E402

VAL_STILL_EVERY = 12      # as export/train.py holds stills out
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}


def window(img: np.ndarray, cx: float, cy: float, scale: float, angle: float) -> np.ndarray:
    """The 70%-of-the-frame view centred at (cx, cy) (fractions), zoomed by ``scale``, rolled by ``angle``."""
    h, w = img.shape[:2]
    vw, vh = 0.7 * w / scale, 0.7 * h / scale
    m = cv2.getRotationMatrix2D((cx * w, cy * h), angle, 1.0)
    m[0, 2] += vw / 2 - cx * w
    m[1, 2] += vh / 2 - cy * h
    out = cv2.warpAffine(img, m, (int(vw), int(vh)), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT101)
    return cv2.resize(out, (int(0.7 * w), int(0.7 * h)), interpolation=cv2.INTER_AREA)


def jpeg(img: np.ndarray, q: int = 70) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


def views(img: np.ndarray, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {"reference": [jpeg(window(img, 0.5, 0.5, 1.0, 0.0))]}
    shakes = []
    for _ in range(4):
        d, t = rng.uniform(0.002, 0.01), rng.uniform(0, 2 * math.pi)
        shakes.append(jpeg(window(img, 0.5 + d * math.cos(t), 0.5 + d * math.sin(t), 1.0, rng.uniform(-0.5, 0.5))))
    out["shake"] = shakes
    d, t = rng.uniform(0.08, 0.2), rng.uniform(0, 2 * math.pi)
    out["moved:shift"] = [jpeg(window(img, 0.5 + 0.7 * d * math.cos(t), 0.5 + 0.7 * d * math.sin(t), 1.0, 0.0))]
    out["moved:rotate"] = [jpeg(window(img, 0.5, 0.5, 1.0, rng.choice([-1, 1]) * rng.uniform(3, 10)))]
    out["moved:zoom"] = [jpeg(window(img, 0.5, 0.5, 1.25, 0.0))]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stills", default=str(ROOT.parent / "shared" / "stills"))
    ap.add_argument("--model", action="append", help="ONNX model (repeatable; default: the shipped one)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    root = Path(a.stills)
    paths = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXT), key=lambda p: str(p))
    held = []
    seen = 0
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < 64:
            continue
        if seen % VAL_STILL_EVERY == 0:
            held.append(img)
        seen += 1
    print(f"{len(held)} held-out stills from {root}; distances / the model's default distance (1 - threshold)")
    for model in a.model or [None]:
        emb = load_embedder(model, device="cpu")
        default = 1.0 - float(emb.spec.threshold)
        rng = np.random.default_rng(a.seed)
        dist: dict[str, list[float]] = {}
        for img in held:
            v = views(img, rng)
            ref = emb.embed(v["reference"])[0]
            for kind, imgs in v.items():
                if kind == "reference":
                    continue
                sims = emb.embed(imgs) @ ref
                dist.setdefault(kind, []).extend(((1.0 - sims) / default).tolist())
        name = f"{emb.spec.name} {emb.spec.version} (threshold {emb.spec.threshold:.4f})"
        print(f"\n{name}")
        print(f"{'kind':<14} {'median':>7} {'p90':>7} {'p99':>7} {'max':>7} {'share > 0.75':>12}")
        for kind, d in dist.items():
            x = np.array(d)
            print(f"{kind:<14} {np.median(x):7.3f} {np.percentile(x, 90):7.3f} {np.percentile(x, 99):7.3f} "
                  f"{x.max():7.3f} {np.mean(x > 0.75):12.3f}")
        shake = np.array(dist["shake"])
        moved = np.concatenate([np.array(dist[k]) for k in dist if k.startswith("moved")])
        auc = float(np.mean(moved[:, None] > shake[None, :]) + 0.5 * np.mean(moved[:, None] == shake[None, :]))
        print(f"shake vs moved AUC: {auc:.4f}; 0.75 = the strictest threshold calibration allows "
              f"(decision.CALIBRATION_MIN_RATIO)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
