#!/usr/bin/env python3
"""How often the decision alarms on benign changes the drift benchmark does not make.

The drift benchmark's benign kinds are light, night, noise, scene and shake.
Real cameras also see rain, snow, fog, headlights and lamps, cloud shadows,
white-balance swings, vignetting and heavy compression. This applies each of
those (the trainer's own renderings, ``export/augment.py``, one at a time) and
a few drifts (small rotations and zooms, a tilt, a shift, a cover, a defocus) to
later frames of the fixed TRAIN cameras, enrols the first frame through
``enrol.encode_view``, calibrates on the next eight and judges every view as
``camwatch evaluate`` does (``evaluate.judge_camera``), and prints each change's
alert rate. Never reads footage/dev.

    python benchmarks/benign_sweep.py [--footage ../shared/footage/train] [--queries 12] [--seed 1]

Held-out cameras (export/train.py DEFAULT_VAL_CLIPS) are reported apart: the
model trained on the others' frames (not with these changes on these frames).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import harness  # noqa: F401  (puts the repository on sys.path)
import numpy as np

from camwatch.core.decision import RefView
from camwatch.service.enrol import encode_view
from camwatch.tools.evaluate import judge_camera
from camwatch.vision.embedder import load_embedder
from camwatch.vision.stats import view_stats
from export import augment
from export.data import load_footage
from export.train import DEFAULT_VAL_CLIPS


def _warp(img: np.ndarray, angle: float = 0.0, zoom: float = 1.0, dx: float = 0.0) -> np.ndarray:
    """The camera turned, zoomed or shifted. Lanczos, not bilinear: a camera that moved samples the scene
    anew at full sharpness, where bilinear interpolation at sub-pixel offsets would add a blur of its own
    (it alone raised a quarter of the 1 % shakes on footage/tune to the focus cue)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
    m[0, 2] += dx * w
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT101)


def _float(fn):
    def apply(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        return np.clip(fn(rng, img.astype(np.float32)), 0, 255).astype(np.uint8)
    return apply


BENIGN = {
    "none": lambda rng, img: img,
    "light": _float(augment.light),
    "white_balance": _float(augment.white_balance),
    "ir_night": _float(augment.ir_night),
    "sensor_noise": _float(augment.sensor_noise),
    "jpeg": lambda rng, img: augment.jpeg(rng, img),
    "rain_snow": _float(augment.rain),
    "fog": _float(augment.fog),
    "glare_headlights": _float(augment.glare),
    "shadow": _float(augment.shadow),
    "vignette": _float(augment.vignette),
    "shake_1pct": lambda rng, img: _warp(img, rng.uniform(-0.5, 0.5), 1 + rng.uniform(-0.004, 0.004),
                                         rng.uniform(-0.01, 0.01)),
}
def _tilt(img: np.ndarray, amount: float) -> np.ndarray:
    """The camera tipped up or down: the top edge narrows (keystone), as a perspective warp."""
    h, w = img.shape[:2]
    j = amount * w
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[j, 0], [w - j, 0], [w, h], [0, h]])
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LANCZOS4,
                               borderMode=cv2.BORDER_REFLECT101)


DRIFTED = {
    "rotate_2deg": lambda rng, img: _warp(img, 2.0 * (1 if rng.random() < 0.5 else -1)),
    "rotate_3deg": lambda rng, img: _warp(img, 3.0 * (1 if rng.random() < 0.5 else -1)),
    "zoom_1.08": lambda rng, img: _warp(img, zoom=1.08),
    "zoom_1.12": lambda rng, img: _warp(img, zoom=1.12),
    "shift_5pct": lambda rng, img: _warp(img, dx=0.05 * (1 if rng.random() < 0.5 else -1)),
    "tilt_8pct": lambda rng, img: _tilt(img, 0.08),
    "covered": _float(augment.cover),
    "defocus": _float(augment.defocus),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", type=Path, default=harness.REPO.parent / "shared" / "footage" / "train")
    ap.add_argument("--queries", type=int, default=12, help="later frames per camera")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model")
    a = ap.parse_args()
    emb = load_embedder(a.model, device="cpu")
    default = float(emb.spec.threshold)
    corpus = load_footage(a.footage, max_frames=120)
    rng = np.random.default_rng(a.seed)
    # counts[group][kind] = [views, alerts]
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for scene in corpus.scenes:
        if not scene.fixed or len(scene.frames) < 10 + a.queries:
            continue
        group = "held-out" if scene.name in DEFAULT_VAL_CLIPS else "trained-on"
        _, ref_img = encode_view(scene.frames[0], scene.name)
        ref = [RefView(emb.embed([ref_img])[0], view_stats(ref_img), id=1)]
        cal = scene.frames[1:9]
        later = scene.frames[10:]
        picks = [later[int(i)] for i in np.linspace(0, len(later) - 1, a.queries)]
        kinds, queries = [], []
        for kind, fn in list(BENIGN.items()) + list(DRIFTED.items()):
            views = [fn(rng, f) for f in picks]
            kinds += [kind] * len(views)
            queries += list(zip(emb.embed(views), [view_stats(img) for img in views]))
        t, verdicts = judge_camera(ref, list(zip(emb.embed(cal), [view_stats(im) for im in cal])), queries, default)
        for kind, v in zip(kinds, verdicts):
            counts[group][kind][0] += 1
            counts[group][kind][1] += v.drifted
        print(f"  {scene.name}: threshold {t:.3f}", flush=True)
    print(f"\nmodel {emb.spec.name} {emb.spec.version}; alert rate "
          f"({a.queries} later frames per camera, seed {a.seed})")
    for group in ("held-out", "trained-on"):
        print(f"\n{group} cameras:")
        print(f"  {'change':<18} {'n':>4}  {'alerts':>8}")
        for part, kinds_ in (("benign (alert = false alarm)", BENIGN), ("drifted (alert = detection)", DRIFTED)):
            print(f"  -- {part}")
            for kind in kinds_:
                n, alerts = counts[group][kind]
                if n:
                    print(f"  {kind:<18} {n:>4}  {alerts / n:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
