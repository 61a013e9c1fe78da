#!/usr/bin/env python3
"""How decision.py's calibration constants and compare.py's confidence scale were chosen.

On cases made from TRAIN footage only (never dev):

    python ../shared/drift-bench/make_cases.py ../shared/footage/train/{bottle-detection.mp4,security.mp4,\
security2.mp4,store-aisle-detection.gif,tree.avi,video.avi,video02.avi,vtest.avi,waving_trees,\
worker-zone-detection.gif,wsdot_frames} ../shared/footage/train/unsteady/*.mp4 --out /tmp/traincases --seed 7
    python benchmarks/tune_decision.py /tmp/traincases [--model X.onnx]

Every camera's reference, calibration frames and queries are embedded once;
then the calibration rule is replayed for a grid of (spread factor, min
ratio, max ratio) and the false-alarm / detection rates of the default decision
are printed, best first by "detection with false alarms <= 1%". Finally a
one-parameter logistic P(same) = sigmoid((s - threshold) / scale) is fitted
on benign (same) vs drifted (different) queries for compare.py.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from camwatch import decision  # noqa: E402
from camwatch.embedder import load_embedder  # noqa: E402
from camwatch.evaluate import _by_camera, calibration_images, read_cases, read_image  # noqa: E402
from camwatch.preprocess import view_stats  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases")
    ap.add_argument("--model")
    a = ap.parse_args()
    folder = Path(a.cases)
    cases = read_cases(folder)
    emb = load_embedder(a.model, device="cpu")
    default = emb.spec.threshold
    cams = []
    for camera, idx in _by_camera(cases).items():
        ref_img = read_image(folder / "cameras" / camera / "reference.jpg", camera)
        ref = decision.RefView(emb.embed([ref_img])[0], view_stats(ref_img), id=1)
        cal = calibration_images(folder, camera)
        cal_sims = [float(v @ ref.embedding) for v in emb.embed(cal)] if cal else []
        imgs = [read_image(folder / cases[i].query, camera) for i in idx]
        vecs = np.concatenate([emb.embed(imgs[j:j + 32]) for j in range(0, len(imgs), 32)])
        stats = [view_stats(im) for im in imgs]
        cams.append((camera, ref, cal_sims, [cases[i] for i in idx], vecs, stats))
    print(f"model {emb.spec.name} {emb.spec.version}: default threshold {default}; {len(cams)} cameras, "
          f"{len(cases)} cases")

    def run(factor: float, down: float, up: float, calibrate: bool = True):
        decision.CALIBRATION_SPREAD_FACTOR, decision.CALIBRATION_MIN_RATIO, decision.CALIBRATION_MAX_RATIO = \
            factor, down, up
        y, d, s, sims = [], [], [], []
        for camera, ref, cal_sims, cc, vecs, stats in cams:
            kept = [x for x in cal_sims if x >= default]
            t = decision.calibrate(kept, default) if calibrate else default
            for c, v, st in zip(cc, vecs, stats):
                verdict = decision.assess(v, st, [ref], t)
                y.append(c.label)
                d.append(verdict.drifted)
                s.append(verdict.score)
                sims.append(verdict.similarity)
        y, d = np.array(y), np.array(d)
        return float(d[y == 0].mean()), float(d[y == 1].mean()), y, np.array(sims)

    fa, det, y, sims = run(0, 0, 0, calibrate=False)
    print(f"no calibration: false alarms {fa:.4f}, detection {det:.4f}")
    results = []
    for factor, down, up in itertools.product((2, 3, 4, 6, 8), (0.5, 0.7, 0.8, 0.9, 1.0), (1.0, 1.25, 1.5, 2.0)):
        fa, det, _, _ = run(factor, down, up)
        results.append((fa <= 0.01, det, -fa, factor, down, up, fa))
    results.sort(reverse=True)
    print("factor  min     max     false alarms  detection   (min/max: times the default distance)")
    for ok, det, _, factor, down, up, fa in results[:12]:
        print(f"{factor:<7} {down:<7} {up:<7} {fa:<13.4f} {det:.4f}")

    # compare.py: logistic scale for P(same | similarity), same = benign query.
    same = (y == 0).astype(float)
    x = sims - default
    best = min((sum(-(t * math.log(max(p, 1e-12)) + (1 - t) * math.log(max(1 - p, 1e-12)))
                    for t, p in zip(same, 1 / (1 + np.exp(np.clip(-x / sc, -50, 50))))), sc)
               for sc in np.geomspace(0.002, 0.2, 60))
    print(f"compare.SCALE fitted: {best[1]:.4f} (mean log-loss {best[0] / len(x):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
