#!/usr/bin/env python3
"""How decision.py's calibration constants and compare.py's confidence scale are chosen.

On cases made from TRAIN footage only (never dev; ``unsteady/`` is left out:
its clips are hand-held, not fixed cameras):

    T=../shared/footage/train
    for s in 7 8; do python ../shared/drift-bench/make_cases.py $T/bottle-detection.mp4 $T/security.mp4 \\
      $T/security2.mp4 $T/store-aisle-detection.gif $T/tree.avi $T/video.avi $T/video02.avi $T/vtest.avi \\
      $T/waving_trees $T/worker-zone-detection.gif $T/wsdot_frames --out /tmp/train$s --seed $s; done
    python benchmarks/tune_decision.py /tmp/train7 /tmp/train8 [--model X.onnx]

Every camera's reference (through the same JPEG round trip as enrolment),
calibration frames and queries are embedded once (cached next to the case
folder, keyed by the model's sha256). Then ``evaluate.run_model``'s decision
is replayed exactly (calibration frames judged at the default threshold, the
similarities of those not judged drifted go to ``decision.calibrate``, every
query judged by ``decision.assess``) for a grid of (spread factor, min ratio,
max ratio), pooled over the folders. Printed: the current constants' figures
with what limits them, the grid best first by "detection with false alarms at
most --fa-budget in every folder", and a one-parameter logistic
P(same) = sigmoid((s - threshold) / scale) for compare.py.
"""

from __future__ import annotations

import argparse
import itertools
import math
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from camwatch.core import decision
from camwatch.service.enrol import encode_view  # noqa: E402
from camwatch.tools.evaluate import _by_camera, calibration_images, read_cases, read_image  # noqa: E402
from camwatch.vision import structure  # noqa: E402
from camwatch.vision.embedder import load_embedder  # noqa: E402
from camwatch.vision.preprocess import STATS_ROUTE, view_stats  # noqa: E402

CONSTANTS = ("CALIBRATION_SPREAD_FACTOR", "CALIBRATION_MIN_RATIO", "CALIBRATION_MAX_RATIO")


def embed_folder(folder: Path, emb) -> list[dict]:
    """Per camera: reference RefView, calibration (vec, stats), queries (case, vec, stats)."""
    cache = folder / f".tune-{emb.spec.identity[:12]}-route{STATS_ROUTE}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    cases = read_cases(folder)
    cams = []
    for camera, idx in _by_camera(cases).items():
        ref_img = read_image(folder / "cameras" / camera / "reference.jpg", camera)
        _, decoded = encode_view(ref_img, camera)          # as enrol.enrol_frame stores it
        ref = decision.RefView(emb.embed([decoded])[0], view_stats(decoded), id=1)
        cal = calibration_images(folder, camera)
        cal_vecs = emb.embed(cal) if cal else np.zeros((0, 1), np.float32)
        imgs = [read_image(folder / cases[i].query, camera) for i in idx]
        vecs = np.concatenate([emb.embed(imgs[j:j + 32]) for j in range(0, len(imgs), 32)])
        cams.append(dict(camera=camera, ref=ref, cal=list(zip(cal_vecs, [view_stats(im) for im in cal])),
                         cases=[cases[i] for i in idx], vecs=vecs, stats=[view_stats(im) for im in imgs]))
    cache.write_bytes(pickle.dumps(cams))
    return cams


def apply_sets(ap: argparse.ArgumentParser, items: list[str]) -> None:
    """--set NAME=VALUE: another value for a decision.py constant (structure.NAME: structure.py's), for this run only."""
    for item in items:
        name, _, value = item.partition("=")
        module, _, const = name.rpartition(".")
        target = {"": decision, "structure": structure}.get(module)
        if target is None or not const.isupper() or not hasattr(target, const):
            ap.error(f"--set {item}: neither decision.py nor structure.py has a constant {name}")
        setattr(target, const, type(getattr(target, const))(value))


def replay(cams: list[dict], default: float, calibrate: bool = True):
    """evaluate.run_model's decision on cached embeddings with decision's current constants."""
    y, d, s, sims, kinds, thr = [], [], [], [], [], {}
    for cam in cams:
        ref = [cam["ref"]]
        t, scale = default, None
        if calibrate and cam["cal"]:
            t, scale = decision.calibrate_from([decision.assess(vec, st, ref, default) for vec, st in cam["cal"]],
                                               default)
        thr[cam["camera"]] = t
        for c, vec, st in zip(cam["cases"], cam["vecs"], cam["stats"]):
            v = decision.assess(vec, st, ref, t, scale)
            y.append(c.label)
            d.append(v.drifted)
            s.append(v.score)
            sims.append(v.similarity)
            kinds.append(c.kind)
    return np.array(y), np.array(d), np.array(s), np.array(sims), kinds, thr


def rates(y, d, kinds) -> tuple[float, float, dict[str, float]]:
    per = defaultdict(list)
    for k, dd in zip(kinds, d):
        per[k].append(dd)
    return float(d[y == 0].mean()), float(d[y == 1].mean()), {k: float(np.mean(v)) for k, v in sorted(per.items())}


def set_constants(values) -> None:
    for name, v in zip(CONSTANTS, values):
        setattr(decision, name, v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="train case folders (pooled; the budget holds in each)")
    ap.add_argument("--model")
    ap.add_argument("--fa-budget", type=float, default=0.005,
                    help="false alarms allowed in every folder (default 0.5%%: margin under the 1%% target)")
    ap.add_argument("--top", type=int, default=15, help="grid points printed")
    ap.add_argument("--current-only", action="store_true",
                    help="print the current constants' figures and stop (no grid, no compare.SCALE fit): "
                         "what judging a candidate model needs, in about a second instead of minutes")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="try another value of a decision.py constant (e.g. STRUCTURE_WEIGHT=0; structure.POOL_TRIM=0.5 for structure.py's)")
    a = ap.parse_args()
    apply_sets(ap, a.set)
    emb = load_embedder(a.model, device="cpu")
    default = float(emb.spec.threshold)
    folders = [(Path(f).name, embed_folder(Path(f), emb)) for f in a.cases]
    n = sum(len(c["cases"]) for _, cams in folders for c in cams)
    print(f"model {emb.spec.name} {emb.spec.version} ({emb.spec.identity[:12]}): default threshold {default}; "
          f"{len(folders)} folders, {n} cases")

    def run_all(calibrate: bool = True):
        out = [replay(cams, default, calibrate) for _, cams in folders]
        y = np.concatenate([o[0] for o in out])
        d = np.concatenate([o[1] for o in out])
        kinds = [k for o in out for k in o[4]]
        per_folder_fa = [float(o[1][o[0] == 0].mean()) for o in out]
        return y, d, kinds, per_folder_fa, out

    current = tuple(getattr(decision, c) for c in CONSTANTS)
    y, d, kinds, pf, out = run_all(calibrate=False)
    fa, det, _ = rates(y, d, kinds)
    print(f"no calibration: false alarms {fa:.4f}, detection {det:.4f}")
    y, d, kinds, pf, out = run_all()
    fa, det, per = rates(y, d, kinds)
    print(f"current {dict(zip(CONSTANTS, current))}: false alarms {fa:.4f} (per folder "
          f"{', '.join(f'{x:.4f}' for x in pf)}), detection {det:.4f}")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in per.items()))

    # What limits it: where benign and missed drifted similarities sit against each camera's threshold.
    print("per camera (first folder): threshold, benign similarity min/p5, drifted missed by similarity rule")
    yy, dd, ss, sims, kk, thr = out[0]
    i = 0
    for cam in folders[0][1]:
        m = len(cam["cases"])
        cy, cd, cs, ck = yy[i:i + m], dd[i:i + m], sims[i:i + m], kk[i:i + m]
        cal = [float(v @ cam["ref"].embedding) for v, _ in cam["cal"]]
        b = cs[cy == 0]
        missed = [f"{k}:{s:.2f}" for k, s, lab, x in zip(ck, cs, cy, cd) if lab == 1 and not x]
        print(f"  {cam['camera']:<24} t={thr[cam['camera']]:.3f} cal median {np.median(cal):.3f} "
              f"benign min {b.min():.3f} p5 {np.percentile(b, 5):.3f}  missed {len(missed)}: {' '.join(missed[:8])}")
        i += m
    if a.current_only:
        return 0

    results = []
    grid = itertools.product((1.25, 1.5, 2, 3, 4, 5, 6, 8), (0.3, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0),
                             (0.8, 0.9, 1.0, 1.1, 1.25, 1.5))
    for values in grid:
        if values[1] > values[2]:
            continue
        set_constants(values)
        y, d, kinds, pf, _ = run_all()
        fa, det, per = rates(y, d, kinds)
        worst = min(v for k, v in per.items() if not k.startswith("benign"))
        results.append((max(pf) <= a.fa_budget, det, worst, -fa, values, fa, pf, per))
    set_constants(current)
    results.sort(key=lambda r: r[:4], reverse=True)
    print(f"grid, best first (false alarms <= {a.fa_budget} in every folder, then detection):")
    print("factor  min    max    false alarms (per folder)      detection  worst kind")
    for ok, det, worst, _, (f, lo, hi), fa, pf, per in results[:a.top]:
        print(f"{f:<7} {lo:<6} {hi:<6} {fa:.4f} ({', '.join(f'{x:.4f}' for x in pf)})  {det:.4f}     {worst:.3f}")
    print("best: " + ", ".join(f"{k} {v:.3f}" for k, v in results[0][7].items()))

    # compare.py: logistic scale for P(same | similarity), same = benign query.
    y, _, _, _, out = run_all(calibrate=False)
    sims = np.concatenate([o[3] for o in out])
    same = (y == 0).astype(float)
    x = sims - default
    best = min((sum(-(t * math.log(max(p, 1e-12)) + (1 - t) * math.log(max(1 - p, 1e-12)))
                    for t, p in zip(same, 1 / (1 + np.exp(np.clip(-x / sc, -50, 50))))), sc)
               for sc in np.geomspace(0.002, 0.5, 80))
    print(f"compare.SCALE fitted: {best[1]:.4f} (mean log-loss {best[0] / len(x):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
