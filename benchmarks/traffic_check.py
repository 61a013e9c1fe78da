#!/usr/bin/env python3
"""How often near traffic (cars and people close to the camera) raises a false alarm.

Why: every dev false alarm of model 1.3.0 comes from one camera looking down
a road from close by, whose benign views hold cars that fill a large part of
the view (docs/evaluation.md). The train-side cases have no camera like that,
so this check makes one: it pastes near cars and people into the BENIGN
queries of train-side case folders and replays ``evaluate``'s decision on them
(the camera calibrated from its calibration frames exactly as the daemon
does). The pasted things come from this script's own drawing, not from the
trainer's augmentations, so a model is never judged by a generator it learned
from: here a car is a body with a cabin, wheels and windows, textured with a patch of a still photograph when
``--stills`` is given, a person a head and a body; 1-4 of them sharing 8-30%
of the view, each kept to 3-12% of it, in the lower 70% of the view.

    python benchmarks/traffic_check.py /tmp/tr7 /tmp/tr8 --stills ../shared/stills [--model X.onnx]

Prints, per folder and pooled: false alarms on the plain benign queries, on
the same queries with near traffic, and detection of the drifted queries
(which are left as they are), so a change that forgives traffic by going
blind shows in the same table; then the ranking of near-traffic views against
drifted ones (AUC, detection at 1% and 5% near-traffic false alarms), which
compares models at equal false alarms rather than at their own default
thresholds.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import cv2
import harness  # noqa: F401  (puts the repository on sys.path)
import numpy as np
from tune_decision import embed_folder, replay, with_sets

from camwatch.tools.evaluate import detection_at, read_image, roc_auc
from camwatch.vision.embedder import load_embedder
from camwatch.vision.stats import view_stats


def load_textures(folder: Path | None, n: int = 64) -> list[np.ndarray]:
    """Up to n still photographs (every k-th file, so the choice is fixed), or none."""
    if folder is None:
        return []
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    picks = files[:: max(1, len(files) // n)][:n]
    out = []
    for p in picks:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None and min(img.shape[:2]) >= 32:
            out.append(img)
    return out


def _paint(rng: np.random.Generator, h: int, w: int, textures: list[np.ndarray]) -> np.ndarray:
    if textures and rng.random() < 0.5:
        t = textures[int(rng.integers(len(textures)))]
        th, tw = t.shape[:2]
        cw, ch = max(8, int(tw * rng.uniform(0.1, 0.4))), max(8, int(th * rng.uniform(0.1, 0.4)))
        x0, y0 = int(rng.integers(0, tw - cw + 1)), int(rng.integers(0, th - ch + 1))
        return cv2.resize(t[y0:y0 + ch, x0:x0 + cw], (w, h)).astype(np.float32)
    colour = rng.uniform(10, 240, 3) if rng.random() < 0.6 else np.full(3, rng.uniform(10, 240))
    body = np.ones((h, w, 3), np.float32) * colour.astype(np.float32)
    body *= np.linspace(rng.uniform(1.0, 1.3), rng.uniform(0.6, 0.95), h, dtype=np.float32)[:, None, None]
    return body + rng.normal(0, rng.uniform(1, 6), body.shape).astype(np.float32)


def near_traffic(rng: np.random.Generator, img: np.ndarray, textures: list[np.ndarray]) -> np.ndarray:
    """img (BGR uint8) with 1-4 near cars or people pasted in."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    # a total share of the view split among 1-4 things, each kept to 3-12% of it
    n = int(rng.integers(1, 5))
    shares = np.clip(rng.dirichlet(np.full(n, 2.0)) * rng.uniform(0.08, 0.30), 0.03, 0.12)
    for area in shares * w * h:
        car = rng.random() < 0.6
        aspect = rng.uniform(0.5, 0.8) if car else rng.uniform(2.0, 3.2)        # height / width
        bw = min(w - 2, max(4, int(math.sqrt(area / aspect))))
        bh = min(h - 2, max(4, int(bw * aspect)))
        x0 = int(rng.integers(0, max(1, w - bw)))
        y0 = int(rng.integers(int(0.3 * h), max(int(0.3 * h) + 1, h - bh)))
        m = np.zeros((h, w), np.float32)
        thing = _paint(rng, bh, bw, textures)
        if car:
            body_top = y0 + int(0.4 * bh)
            cv2.rectangle(m, (x0, body_top), (x0 + bw, y0 + bh - int(0.1 * bh)), 1.0, -1)
            cabin = np.array([[x0 + 0.15 * bw, body_top], [x0 + 0.3 * bw, y0], [x0 + 0.75 * bw, y0],
                              [x0 + 0.9 * bw, body_top]], np.int32)
            cv2.fillPoly(m, [cabin], 1.0)
            for cx in (x0 + int(0.22 * bw), x0 + int(0.78 * bw)):            # wheels
                cv2.circle(m, (cx, y0 + bh - int(0.12 * bh)), max(2, int(0.12 * bh)), 1.0, -1)
            glass = np.zeros_like(m)                                          # dark windows
            cv2.fillPoly(glass, [(cabin - [[-3, -3], [-2, -3], [2, -3], [3, -3]]).astype(np.int32)], 1.0)
            shade = 1.0 - 0.7 * glass[y0:y0 + bh, x0:x0 + bw, None]
            thing = thing * shade[: thing.shape[0], : thing.shape[1]]
        else:
            r = max(2, int(0.15 * bw))
            cv2.circle(m, (x0 + bw // 2, y0 + r), r, 1.0, -1)                  # head
            cv2.ellipse(m, (x0 + bw // 2, y0 + bh // 2 + r), (bw // 2, max(1, bh // 2 - r)), 0, 0, 360, 1.0, -1)
        canvas = np.zeros_like(out)
        canvas[y0:y0 + bh, x0:x0 + bw] = thing[: h - y0, : w - x0]
        sh = np.zeros((h, w), np.float32)                                      # shadow on the ground
        cv2.ellipse(sh, (x0 + bw // 2, y0 + bh), (max(1, int(0.55 * bw)), max(1, int(0.1 * bh))), 0, 0, 360, 1.0, -1)
        out *= 1 - 0.45 * cv2.GaussianBlur(sh, (0, 0), max(1.0, 0.04 * bw))[..., None]
        mm = cv2.GaussianBlur(m, (0, 0), 0.7)[..., None]
        out = out * (1 - mm) + canvas * mm
    return np.clip(out, 0, 255).astype(np.uint8)


def traffic_variants(folder: Path, query: str, base: np.ndarray, textures: list[np.ndarray],
                     per_view: int) -> list[np.ndarray]:
    """The per_view near-traffic variants of one benign query: the same for every model and run."""
    seed = int.from_bytes(hashlib.sha256(f"{folder.name}/{query}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return [near_traffic(rng, base, textures) for _ in range(per_view)]


def traffic_views(folder: Path, cams: list[dict], emb, textures: list[np.ndarray], per_view: int) -> list[dict]:
    """The cached cameras with their benign queries replaced by per_view near-traffic variants each.

    Each camera also keeps its first variant under ``"sample"`` for ``--save``, so the
    views written to look at are ones that were judged.
    """
    out = []
    for cam in cams:
        cases, imgs = [], []
        for c in cam["cases"]:
            if c.label != 0:
                continue
            base = read_image(folder / c.query, cam["camera"])
            for img in traffic_variants(folder, c.query, base, textures, per_view):
                cases.append(c)
                imgs.append(img)
        vecs = np.concatenate([emb.embed(imgs[j:j + 32]) for j in range(0, len(imgs), 32)])
        out.append(dict(cam, cases=cases, vecs=vecs, stats=[view_stats(im) for im in imgs], sample=imgs[0]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", type=Path, help="train-side case folders")
    ap.add_argument("--model")
    ap.add_argument("--stills", type=Path, help="photographs to texture some of the things with")
    ap.add_argument("--per-view", type=int, default=2, help="near-traffic variants of each benign query")
    ap.add_argument("--save", type=Path, help="write a few traffic views here, to look at")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="another value of a DecisionParams field for this run (e.g. structure_weight=0)")
    a = ap.parse_args()
    params = with_sets(ap, a.set)
    emb = load_embedder(a.model, device="cpu")
    default = float(emb.spec.threshold)
    textures = load_textures(a.stills)
    print(f"model {emb.spec.name} {emb.spec.version} ({emb.spec.identity[:12]}), default threshold {default}; "
          f"{len(textures)} textures")
    rows = []
    for folder in a.cases:
        cams = embed_folder(folder, emb)
        y, d, sc, *_ = replay(cams, default, params)
        tv = traffic_views(folder, cams, emb, textures, a.per_view)
        if a.save:
            a.save.mkdir(parents=True, exist_ok=True)
            for cam in tv:
                cv2.imwrite(str(a.save / f"{folder.name}-{cam['camera']}.jpg"), cam["sample"])
        _, td, tsc, *_ = replay(tv, default, params)
        rows.append((d[y == 0], td, d[y == 1], tsc, sc[y == 1]))
        print(f"{folder.name:<10} benign false alarms {d[y == 0].mean():.4f} ({d[y == 0].sum()}/{(y == 0).sum()})  "
              f"with near traffic {td.mean():.4f} ({td.sum()}/{len(td)})  detection {d[y == 1].mean():.4f}")
    fa, tfa, det, t_scores, d_scores = (np.concatenate(part) for part in zip(*rows))
    print(f"{'pooled':<10} benign false alarms {fa.mean():.4f}  with near traffic {tfa.mean():.4f} "
          f"({tfa.sum()}/{len(tfa)})  detection {det.mean():.4f}")
    # The ranking, free of where each model's default threshold happens to sit: models are
    # compared at equal near-traffic false alarms rather than at their own defaults.
    labels = np.r_[np.zeros(len(t_scores)), np.ones(len(d_scores))]
    scores = np.r_[t_scores, d_scores]
    at1, at5 = detection_at(labels, scores, 0.01), detection_at(labels, scores, 0.05)
    print(f"{'ranking':<10} near traffic vs drifted: AUC {roc_auc(labels, scores):.4f}, detection at 1% / 5% "
          f"near-traffic false alarms {at1:.4f} / {at5:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
