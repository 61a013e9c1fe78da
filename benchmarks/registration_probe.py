#!/usr/bin/env python3
"""Could registration against the reference tell near traffic from a moved camera? (A probe; not in the product.)

Why: every dev false alarm comes from near cars on one camera (docs/evaluation.md).
A car changes part of the view and leaves the rest where it was; a moved
camera moves every static edge by one transform. So this probe registers each
view to its reference (ORB features on the grey view at ``--width`` px after
CLAHE, ratio test, RANSAC similarity transform) and reports, per kind, how
often the fit is confident (at least ``--min-inliers`` inliers) and how far it
says the view moved: the largest displacement of a frame corner, in % of the
width. Then the question a "layout intact" credit would face: of the views
today's decision alarms on with near traffic pasted in (benchmarks/traffic_check.py's
drawing), how many have a confident still fit (<= ``--still`` %), and how
many detected drifted views would get the same credit.

    python benchmarks/registration_probe.py /tmp/tr7 /tmp/tr8 --stills ../shared/stills [--width 480 --features 1500 --fast 5]

Train-side case folders only (never dev).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from traffic_check import load_textures, traffic_variants  # noqa: E402
from tune_decision import embed_folder  # noqa: E402

from camwatch.core import decision  # noqa: E402
from camwatch.service.enrol import encode_view  # noqa: E402
from camwatch.tools.evaluate import read_image  # noqa: E402
from camwatch.vision.embedder import load_embedder  # noqa: E402
from camwatch.vision.preprocess import view_stats  # noqa: E402


class Registration:
    def __init__(self, width: int, features: int, fast: int, reproj: float = 2.5) -> None:
        self.width, self.reproj = width, reproj
        self.orb = cv2.ORB_create(nfeatures=features, fastThreshold=fast)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.clahe = cv2.createCLAHE(2.0, (4, 4))

    def features(self, img: np.ndarray):
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
        h = round(grey.shape[0] * self.width / grey.shape[1])
        grey = self.clahe.apply(cv2.resize(grey, (self.width, h), interpolation=cv2.INTER_AREA))
        kp, desc = self.orb.detectAndCompute(grey, None)
        return kp, desc, h

    def fit(self, ref, query) -> tuple[int, float | None]:
        """(inliers, corner displacement in % of width or None when there is no fit)."""
        (kr, dr, h), (kq, dq, _) = ref, query
        if dr is None or dq is None or len(kq) < 8:
            return 0, None
        good = [m[0] for m in self.matcher.knnMatch(dr, dq, k=2) if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
        if len(good) < 8:
            return 0, None
        pr = np.float32([kr[g.queryIdx].pt for g in good])
        pq = np.float32([kq[g.trainIdx].pt for g in good])
        cv2.setRNGSeed(0)
        m, inliers = cv2.estimateAffinePartial2D(pr, pq, method=cv2.RANSAC, ransacReprojThreshold=self.reproj)
        if m is None:
            return 0, None
        corners = np.float32([[0, 0], [self.width, 0], [0, h], [self.width, h]])
        moved = corners @ m[:, :2].T + m[:, 2]
        return int(inliers.sum()), float(np.linalg.norm(moved - corners, axis=1).max()) / self.width * 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", type=Path, help="train-side case folders")
    ap.add_argument("--model")
    ap.add_argument("--stills", type=Path, help="photographs to texture the pasted traffic with")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--features", type=int, default=500)
    ap.add_argument("--fast", type=int, default=10, help="ORB's FAST threshold")
    ap.add_argument("--min-inliers", type=int, default=20)
    ap.add_argument("--still", type=float, default=1.5, help="a confident fit moving no corner further is 'still' (%% of width)")
    a = ap.parse_args()
    emb = load_embedder(a.model, device="cpu")
    default = float(emb.spec.threshold)
    textures = load_textures(a.stills)
    reg = Registration(a.width, a.features, a.fast)
    fits = defaultdict(list)                 # kind -> [(inliers, displacement, drifted today)]
    for folder in a.cases:
        for cam in embed_folder(folder, emb):
            _, decoded = encode_view(read_image(folder / "cameras" / cam["camera"] / "reference.jpg", cam["camera"]),
                                     cam["camera"])
            ref = reg.features(decoded)
            refs = [cam["ref"]]
            t, scale = decision.calibrate_from([decision.assess(v, st, refs, default) for v, st in cam["cal"]], default)
            for c, vec, st in zip(cam["cases"], cam["vecs"], cam["stats"]):
                img = read_image(folder / c.query, cam["camera"])
                fits[c.kind].append((*reg.fit(ref, reg.features(img)), decision.assess(vec, st, refs, t, scale).drifted))
                if c.label == 0:
                    for tv in traffic_variants(folder, c.query, img, textures, 2):
                        verdict = decision.assess(emb.embed([tv])[0], view_stats(tv), refs, t, scale)
                        fits["near traffic"].append((*reg.fit(ref, reg.features(tv)), verdict.drifted))
    print(f"ORB {a.features} features (FAST {a.fast}) at {a.width} px; confident = >= {a.min_inliers} inliers; "
          f"displacement = largest corner move, % of width")
    print(f"{'kind':<14} {'views':>5}  confident  displacement of confident fits p10 / p50 / p90 / max")
    for kind, rows in sorted(fits.items()):
        disp = np.array([d for n, d, _ in rows if n >= a.min_inliers and d is not None])
        figures = " / ".join(f"{x:.2f}" for x in (*np.percentile(disp, [10, 50, 90]), disp.max())) if disp.size else "-"
        print(f"{kind:<14} {len(rows):>5}  {disp.size / len(rows):9.2f}  {figures}")

    def still(row) -> bool:
        return row[0] >= a.min_inliers and row[1] is not None and row[1] <= a.still

    alarms = [r for r in fits["near traffic"] if r[2]]
    detected = [(k, r) for k, rows in fits.items() if k != "near traffic" and not k.startswith("benign")
                for r in rows if r[2]]
    lost = defaultdict(int)
    for k, r in detected:
        lost[k] += still(r)
    print(f"near-traffic false alarms today with a confident still fit (<= {a.still}%): "
          f"{sum(map(still, alarms))} of {len(alarms)}")
    print(f"detected drifted views with the same still fit (a credit would put them at risk): "
          f"{sum(lost.values())} of {len(detected)} ({', '.join(f'{k} {v}' for k, v in sorted(lost.items()) if v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
