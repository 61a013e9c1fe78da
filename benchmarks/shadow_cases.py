#!/usr/bin/env python3
"""A case folder whose benign views are cast into hard shadow: the sun coming out.

The stress set's benign light changes the whole view; a shadow darkens part of
it, hard-edged, over a wall, the asphalt and the things on them alike. That is
benign, and it is what a cue that reads one-colour patches off the view's
change of light must forgive. This copies a drift-bench case folder and
replaces each benign query (label 0) with the same view under a shadow:

* its shape: a polygon, blob or strip over 25-45 % of the view
  (``stress_effects.cover_mask``, the stress set's cover shapes);
* its depth: the view multiplied by 0.35-0.6 (in the stored 8-bit values), a
  touch bluer (blue x 1.08, red x 0.92 of that: skylight);
* its edge: blurred with a Gaussian of sigma 2-6 px.

Drifted queries, the reference and calibration views are copied unchanged, so
``camwatch evaluate`` and ``benchmarks/tune_decision.py`` read it as before,
the benign rows named ``benign:shadow``:

    python benchmarks/shadow_cases.py /tmp/train7 --out /tmp/shadow-train7 --seed 2
    python benchmarks/tune_decision.py /tmp/shadow-train7 --current-only

Made from tune or train folders it is a choice set; from dev, judge only.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stress_effects  # noqa: E402

AREA = (0.25, 0.45)
DEPTH = (0.35, 0.6)
EDGE_PX = (2.0, 6.0)
TINT = np.array([1.08, 1.0, 0.92], np.float32)   # BGR


def shadow(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (BGR) under one hard shadow drawn from ``rng``."""
    h, w = image.shape[:2]
    mask, _ = stress_effects.cover_mask((h, w), rng, float(rng.uniform(*AREA)))
    depth = float(rng.uniform(*DEPTH))
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), float(rng.uniform(*EDGE_PX)))[..., None]
    gain = 1.0 - alpha * (1.0 - depth * TINT)
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", type=Path, help="a drift-bench case folder (with cases.csv)")
    ap.add_argument("--out", type=Path, required=True, help="the folder to write (replaced if it exists)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    table = a.cases / "cases.csv"
    if not table.is_file():
        print(f"shadow_cases: {table}: no such file (a drift-bench case folder has one)", file=sys.stderr)
        return 2
    if a.out.resolve() == a.cases.resolve():
        print(f"shadow_cases: --out {a.out} is the input folder", file=sys.stderr)
        return 2
    if a.out.exists():
        shutil.rmtree(a.out)
    # Cached embeddings of the input (tune_decision's .tune-*.pkl) would describe the unshadowed views.
    shutil.copytree(a.cases, a.out, ignore=shutil.ignore_patterns(".tune-*"))
    rng = np.random.default_rng(a.seed)
    with open(a.out / "cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    shaded = 0
    for row in rows:
        if row["label"] != "0":
            continue
        path = a.out / row["query"]
        image = cv2.imread(str(path))
        if image is None:
            print(f"shadow_cases: {path}: not an image", file=sys.stderr)
            return 2
        if not cv2.imwrite(str(path), shadow(image, rng), [cv2.IMWRITE_JPEG_QUALITY, 95]):
            print(f"shadow_cases: {path}: cannot write it", file=sys.stderr)
            return 2
        row["kind"] = "benign:shadow"
        shaded += 1
    with open(a.out / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{a.out}: {shaded} benign views shadowed of {len(rows)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
