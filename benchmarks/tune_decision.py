#!/usr/bin/env python3
"""How the decision's calibration share and compare.py's confidence scale are chosen.

On cases made from TRAIN footage only (never dev; ``unsteady/`` is left out:
its clips are hand-held, not fixed cameras):

    T=../shared/footage/train
    for s in 7 8; do python ../shared/drift-bench/make_cases.py $T/bottle-detection.mp4 $T/security.mp4 \\
      $T/security2.mp4 $T/store-aisle-detection.gif $T/tree.avi $T/video.avi $T/video02.avi $T/vtest.avi \\
      $T/waving_trees $T/worker-zone-detection.gif $T/wsdot_frames --out /tmp/train$s --seed $s; done
    python benchmarks/tune_decision.py /tmp/train7 /tmp/train8 [--model X.onnx]

Every camera's reference (through the same JPEG round trip as enrolment),
calibration frames and queries are embedded once (cached next to the case
folder, keyed by the model's sha256). Then ``evaluate.judge_camera`` (what
``camwatch evaluate`` runs: calibration frames judged at the default threshold,
those not judged drifted calibrate the camera, every query judged by
``decision.assess``) is replayed on them for a grid of ``calibration_ratio``
values, pooled over the folders. Printed: the figures of the parameters in use
(``decision.SHIPPED``, or it with ``--set name=value``) with what limits them, the grid
best first by "detection with false alarms at most --fa-budget in every
folder", and a one-parameter logistic P(same) = sigmoid((s - threshold) / scale)
for compare.py.

``--lines`` prints, per camera, the learned scene's ``aligned`` line it is held
to against where its benign views and its moved views (moved, redirected) sit:
a camera whose benign views fall under its line while its moved views stay far
below is held to a line its own calibration views set too strictly.

``--moves`` prints how much better than in place the moved and the benign views
that align at 0.35-0.8 (the band where the crowd rule can apply) align moved back
by the best global move (``core.scene.displaced``, every move tried): what
``scene_moved_gain`` is chosen against.

``--hidden`` prints, per family, the hidden cells' contrast (``hidden_contrast``) of the views
whose hold the crowd rule's ``dulled`` test decides, and how many of them read grainier rather
than softer: what ``scene_hidden_contrast`` is chosen against.

``--turned COUNTS`` is the safety trial of the busy cameras' early views judged together
(``calibration.consensus``): a camera turned, covered or softened during calibration. For
each count (e.g. ``4,6``) and each drifted query, that query replaces the last COUNT of its
camera's calibration views (the same view repeated: turned views that agree perfectly, the
worst case); a trial fails when those views join the scene or lower its line. Printed per count and kind family.

``--kinds`` judges naming instead (detection is not changed by it): the kind
table of ``camwatch evaluate`` (named kind against the true kind) per folder,
then a grid over the naming constants (``KIND_GRID``) on the cues of every
alerted view, measured once, best first by the lowest named-right share of
any family in any folder. The naming constants were chosen so, on train
seeds 7 and 8, ``make_cases.py ../shared/footage/tune/* --seed 1`` and the
stress set (``stress_cases.py``, seed 1, ``--per-kind 8``) of the same train
and tune clips (docs/evaluation.md, "Naming the kind").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import pickle
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness  # noqa: F401  (puts the repository on sys.path)
import numpy as np

from camwatch.cli.evaluate import format_kind_table
from camwatch.core import scene
from camwatch.core.decision import SHIPPED, DecisionParams, RefView, name_from_cues, view_cues
from camwatch.service.enrol import encode_view
from camwatch.tools.evaluate import (
    KindTable,
    by_camera,
    calibrate_camera,
    calibration_images,
    judge_camera,
    kind_table,
    read_cases,
    read_image,
)
from camwatch.vision.embedder import load_embedder
from camwatch.vision.stats import STATS_ROUTE, view_stats

#: The calibration shares the grid tries.
RATIOS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0, 1.1, 1.25)


def embed_folder(folder: Path, emb) -> list[dict]:
    """Per camera: reference RefView, calibration (vec, stats), queries (case, vec, stats)."""
    # v2: pickles vision.stats.ViewStats (v1 caches hold the ViewStats of a module that is gone);
    # the route in the name: statistics of another route are measured again
    cache = folder / f".tune-{emb.spec.identity[:12]}-route{STATS_ROUTE}-v2.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    cases = read_cases(folder)
    cams = []
    for camera, idx in by_camera(cases).items():
        ref_img = read_image(folder / "cameras" / camera / "reference.jpg", camera)
        _, decoded = encode_view(ref_img, camera)          # as enrol.enrol_frame stores it
        ref = RefView(emb.embed([decoded])[0], view_stats(decoded), id=1)
        cal = calibration_images(folder, camera)
        cal_vecs = emb.embed(cal) if cal else np.zeros((0, 1), np.float32)
        imgs = [read_image(folder / cases[i].query, camera) for i in idx]
        vecs = np.concatenate([emb.embed(imgs[j:j + 32]) for j in range(0, len(imgs), 32)])
        cams.append(dict(camera=camera, ref=ref, cal=list(zip(cal_vecs, [view_stats(im) for im in cal])),
                         cases=[cases[i] for i in idx], vecs=vecs, stats=[view_stats(im) for im in imgs]))
    cache.write_bytes(pickle.dumps(cams))
    return cams


def with_sets(ap: argparse.ArgumentParser, items: list[str], params: DecisionParams = SHIPPED) -> DecisionParams:
    """--set name=value (repeatable): ``params`` with other values of DecisionParams fields, for this run only."""
    fields = {f.name: f for f in dataclasses.fields(DecisionParams)}
    changes: dict[str, float | int] = {}
    for item in items:
        name, _, value = item.partition("=")
        field = fields.get(name.strip().lower())
        if field is None:
            ap.error(f"--set {item}: DecisionParams has no field {name!r} (fields: {', '.join(fields)})")
        try:
            changes[field.name] = int(value) if field.type in (int, "int") else float(value)
        except ValueError:
            ap.error(f"--set {item}: {value!r} is not a number")
    return dataclasses.replace(params, **changes)


def replay(cams: list[dict], default: float, params: DecisionParams = SHIPPED, calibrate: bool = True):
    """``evaluate.judge_camera`` on cached embeddings, with ``params``."""
    y, d, s, sims, kinds, thr = [], [], [], [], [], {}
    for cam in cams:
        views = list(zip(cam["vecs"], cam["stats"]))
        t, verdicts = judge_camera([cam["ref"]], cam["cal"] if calibrate else [], views, default, params)
        thr[cam["camera"]] = t
        for c, v in zip(cam["cases"], verdicts):
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


#: The naming constants' grid (``--kinds``): each is a DecisionParams field.
KIND_GRID = {
    "moved_found": (0.8, 0.85, 0.9),
    "cover_lost": (0.2, 0.25),
    "cover_in_place": (0.3, 0.35, 1.01),
    "defocus_contrast": (0.0, 0.5, 0.6),
    "defocus_colour_gain": (0.08, 0.1, 0.15, 1e9),
    "defocus_faded": (0.15, 0.2, 0.25, 1.01),
    "blind_glare_gain": (0.15, 0.2, 1.01),
}


def drifted_views(cams: list[dict], default: float, params: DecisionParams) -> list[tuple]:
    """(case, verdict, stats, reference stats, cues) of every query the decision alerted on."""
    out = []
    for cam in cams:
        _, verdicts = judge_camera([cam["ref"]], cam["cal"], list(zip(cam["vecs"], cam["stats"])), default, params)
        for c, v, st in zip(cam["cases"], verdicts, cam["stats"]):
            if v.drifted:
                out.append((c, v, st, cam["ref"].stats, view_cues(st, cam["ref"].stats)))
    return out


def named_right(views: list[tuple], p: DecisionParams) -> KindTable | None:
    named = [name_from_cues(cues, st, ref, v.reason, v.sharpness_ratio, p, v.scene_cues)
             for _, v, st, ref, cues in views]
    return kind_table([c for c, *_ in views], [True] * len(views), named)


def tune_kinds(folders: list[tuple[str, list[dict]]], default: float, params: DecisionParams, top: int) -> None:
    """The kind tables of ``params`` per folder, then the naming constants' grid, best first.

    Naming never changes which views alerted, so the cues of every alerted view are
    measured once and each grid point only re-applies the rule. Ranked by the lowest
    named-right share of any family in any folder, then their mean.
    """
    views = {name: drifted_views(cams, default, params) for name, cams in folders}
    for name, vs in views.items():
        table = named_right(vs, params)
        if table:
            print(f"{name}: " + format_kind_table(table))
    results = []
    names = list(KIND_GRID)
    for values in itertools.product(*KIND_GRID.values()):
        p = dataclasses.replace(params, **dict(zip(names, values)))
        tables = [named_right(vs, p) for vs in views.values()]
        shares = [v for t in tables if t for f, v in t["named_right"].items() if f != "all" and v is not None]
        results.append((min(shares), float(np.mean(shares)), values))
    results.sort(reverse=True)
    print("naming constants, best first (lowest named-right of a family in any folder, then the mean):")
    print("  " + " ".join(f"{n:>16}" for n in names) + "   lowest    mean")
    for low, mean, values in results[:top]:
        print("  " + " ".join(f"{v:>16g}" for v in values) + f"   {low:.3f}   {mean:.3f}")
    shipped = tuple(getattr(params, n) for n in names)
    rank = next((i for i, r in enumerate(results) if r[2] == shipped), None)
    if rank is not None:
        print(f"the parameters in use rank {rank + 1} of {len(results)}: lowest {results[rank][0]:.3f}, "
              f"mean {results[rank][1]:.3f}")


def print_lines(folders: list[tuple[str, list[dict]]], default: float, params: DecisionParams) -> None:
    """Per camera: its aligned line, its benign views' ``aligned`` (lowest, 5th percentile) and how many
    alarmed, its moved and redirected views' ``aligned`` (95th percentile, highest)."""
    print("folder/camera                      line  benign min   p5  alarmed | moved p95  max")
    for name, cams in folders:
        for cam in cams:
            _, verdicts = judge_camera([cam["ref"]], cam["cal"], list(zip(cam["vecs"], cam["stats"])), default,
                                       params)
            line = next((v.aligned_line for v in verdicts if v.aligned_line is not None), None)
            benign, moved, alarmed = [], [], 0
            for c, v in zip(cam["cases"], verdicts):
                aligned = v.scene_cues.aligned if v.scene_cues is not None else None
                if c.label == 0:
                    alarmed += int(v.drifted)
                    benign += [] if aligned is None else [aligned]
                elif c.kind.startswith("moved") or c.kind == "redirected":
                    moved += [] if aligned is None else [aligned]
            if line is None or not benign or not moved:
                print(f"{name + '/' + cam['camera'][:24]:<34} no learned scene")
                continue
            print(f"{name + '/' + cam['camera'][:24]:<34} {line:.2f}  {min(benign):.2f} {np.percentile(benign, 5):6.2f}"
                  f"  {alarmed:4d}    |    {np.percentile(moved, 95):.2f} {max(moved):5.2f}")


def scene_cues(folders: list[tuple[str, list[dict]]], default: float, params: DecisionParams
               ) -> Iterator[tuple[Any, Any, scene.Background, scene.SceneCues]]:
    """(case, statistics, learned scene, ``scene.measure`` cues) of every query whose camera has a learned
    scene, calibrated as ``judge_camera`` calibrates it."""
    for _, cams in folders:
        for cam in cams:
            ref = cam["ref"]
            background = calibrate_camera([ref], cam["cal"], default, params)[2].get(ref.id)
            if background is None:
                continue
            for c, st in zip(cam["cases"], cam["stats"]):
                yield c, st, background, scene.measure(st.layout, st.focus_grid, background)


def print_moves(folders: list[tuple[str, list[dict]]], default: float, params: DecisionParams) -> None:
    """Per family (moved, benign): how much better than in place each view aligning at 0.35-0.8 aligns moved
    back by the best global move (``scene.displaced`` in full; -1 where no move could be judged)."""
    gains: dict[str, list[float]] = {"moved": [], "benign": []}
    for c, st, background, cues in scene_cues(folders, default, params):
        family = "benign" if c.label == 0 else c.kind.split(":")[0]
        if family not in gains or cues.aligned is None or not 0.35 <= cues.aligned < 0.8:
            continue
        found = scene.displaced(st.layout, background)
        gains[family].append(-1.0 if found is None else found - cues.aligned)
    for family, values in gains.items():
        v = np.sort(values)
        print(f"{family:<7} {len(v):4d} views  lowest {np.round(v[:5], 2).tolist()}  "
              f"highest {np.round(v[-5:], 2).tolist()}")


def print_hidden(folders: list[tuple[str, list[dict]]], default: float, params: DecisionParams) -> None:
    """Per family: ``hidden_contrast`` of the views the crowd rule's ``dulled`` test decides (aligned in
    [``scene_aligned_min``, ``scene_aligned``), ``veil`` at most ``scene_veil``, ``dulled`` over it), and how
    many of them are grainier rather than softer (``soft`` > 0), where ``scene_hidden_contrast`` decides."""
    values: dict[str, list[float]] = {}
    grainy: dict[str, int] = {}
    for c, _, _, cues in scene_cues(folders, default, params):
        if cues.aligned is None or not params.scene_aligned_min <= cues.aligned < params.scene_aligned \
                or cues.veil is None or cues.veil > params.scene_veil or cues.dulled is None \
                or cues.dulled <= params.scene_veil or cues.hidden_contrast is None:
            continue
        family = "benign" if c.label == 0 else c.kind.split(":")[0]
        values.setdefault(family, []).append(cues.hidden_contrast)
        grainy[family] = grainy.get(family, 0) + int(cues.soft is not None and cues.soft > 0)
    for family, vs in sorted(values.items()):
        v = np.sort(vs)
        print(f"{family:<10} {len(v):4d} views ({grainy[family]} with soft > 0)  hidden_contrast "
              f"lowest {np.round(v[:3], 2).tolist()}  highest {np.round(v[-3:], 2).tolist()}")


def print_turned(folders: list[tuple[str, list[dict]]], default: float, params: DecisionParams,
                 counts: list[int]) -> None:
    """Per count of turned early views and per kind family: trials whose turned views joined the scene, or
    lowered its line (``calibration.Consensus.least_aligned``)."""
    from camwatch.core import calibration
    joined: list[int] = []
    lowered: list[float] = []
    consensus = calibration.consensus

    def watched(references, kept, doubtful, p=SHIPPED):  # type: ignore[no-untyped-def]
        out = consensus(references, kept, doubtful, p)
        joined.extend(id(s) for _, s in out.kept)
        lowered.extend(out.least_aligned.values())
        return out

    calibration.consensus = watched
    try:
        for count in counts:
            trials: dict[str, int] = defaultdict(int)
            fails: dict[str, list[str]] = defaultdict(list)
            for name, cams in folders:
                for cam in cams:
                    kept = cam["cal"][:max(0, len(cam["cal"]) - count)]
                    for c, vec, stats in zip(cam["cases"], cam["vecs"], cam["stats"]):
                        if c.label == 0:
                            continue
                        family = c.kind.split(":")[0]
                        joined.clear()
                        lowered.clear()
                        calibrate_camera([cam["ref"]], kept + [(vec, stats)] * count, default, params)
                        trials[family] += 1
                        if id(stats) in joined or lowered:
                            fails[family].append(f"{name}/{c.query}")
            total = sum(len(v) for v in fails.values())
            print(f"{count} of the early views turned: {total} of {sum(trials.values())} trials joined the scene "
                  "or lowered its line")
            for family in sorted(trials):
                print(f"  {family:<10} {len(fails[family]):3d} of {trials[family]:4d}  {' '.join(fails[family][:6])}")
    finally:
        calibration.consensus = consensus


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", help="train case folders (pooled; the budget holds in each)")
    ap.add_argument("--model")
    ap.add_argument("--fa-budget", type=float, default=0.005,
                    help="false alarms allowed in every folder (default 0.5%%: margin under the 1%% target)")
    ap.add_argument("--top", type=int, default=15, help="grid points printed")
    ap.add_argument("--current-only", action="store_true",
                    help="print the figures of the parameters in use and stop (no grid, no compare.SCALE fit): "
                         "what judging a candidate model needs, in about a second instead of minutes")
    ap.add_argument("--kinds", action="store_true",
                    help="print the kind tables (named kind against true kind) of the parameters in use and "
                         "the naming constants' grid, and stop")
    ap.add_argument("--lines", action="store_true",
                    help="print each camera's aligned line against its benign and moved views' aligned, and stop")
    ap.add_argument("--moves", action="store_true",
                    help="print how much better moved and benign views align moved back by a global move, and stop")
    ap.add_argument("--hidden", action="store_true",
                    help="print the hidden cells' contrast of the views the crowd rule's dulled test decides, and stop")
    ap.add_argument("--turned", metavar="COUNTS",
                    help="the safety trial of early views judged together: for each count (comma-separated), "
                         "every drifted query replaces that many of its camera's calibration views; print how "
                         "many trials let them join the scene, and stop")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="another value of a DecisionParams field for this run (e.g. structure_weight=0)")
    a = ap.parse_args()
    params = with_sets(ap, a.set)
    emb = load_embedder(a.model, device="cpu")
    default = float(emb.spec.threshold)
    folders = [(Path(f).name, embed_folder(Path(f), emb)) for f in a.cases]
    n = sum(len(c["cases"]) for _, cams in folders for c in cams)
    print(f"model {emb.spec.name} {emb.spec.version} ({emb.spec.identity[:12]}): default threshold {default}; "
          f"{len(folders)} folders, {n} cases")
    changed = {k: v for k, v in dataclasses.asdict(params).items() if getattr(SHIPPED, k) != v}
    print(f"parameters: the shipped ones{', with ' + str(changed) if changed else ''}")
    if a.kinds:
        tune_kinds(folders, default, params, a.top)
        return 0
    if a.lines:
        print_lines(folders, default, params)
        return 0
    if a.moves:
        print_moves(folders, default, params)
        return 0
    if a.hidden:
        print_hidden(folders, default, params)
        return 0
    if a.turned:
        try:
            counts = [int(c) for c in a.turned.split(",")]
        except ValueError:
            ap.error(f"--turned {a.turned}: counts are whole numbers, comma-separated (e.g. 4,6)")
        print_turned(folders, default, params, counts)
        return 0

    def run_all(p: DecisionParams = params, calibrate: bool = True):
        out = [replay(cams, default, p, calibrate) for _, cams in folders]
        y = np.concatenate([o[0] for o in out])
        d = np.concatenate([o[1] for o in out])
        kinds = [k for o in out for k in o[4]]
        per_folder_fa = [float(o[1][o[0] == 0].mean()) for o in out]
        return y, d, kinds, per_folder_fa, out

    y, d, kinds, pf, out = run_all(calibrate=False)
    fa, det, _ = rates(y, d, kinds)
    print(f"no calibration: false alarms {fa:.4f}, detection {det:.4f}")
    y, d, kinds, pf, out = run_all()
    fa, det, per = rates(y, d, kinds)
    print(f"calibration_ratio {params.calibration_ratio}: false alarms {fa:.4f} (per folder "
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
    for ratio in RATIOS:
        y, d, kinds, pf, _ = run_all(dataclasses.replace(params, calibration_ratio=ratio))
        fa, det, per = rates(y, d, kinds)
        worst = min(v for k, v in per.items() if not k.startswith("benign"))
        results.append((max(pf) <= a.fa_budget, det, worst, -fa, ratio, fa, pf, per))
    results.sort(key=lambda r: r[:4], reverse=True)
    print(f"calibration_ratio, best first (false alarms <= {a.fa_budget} in every folder, then detection):")
    print("ratio   false alarms (per folder)      detection  worst kind")
    for _, det, worst, _, ratio, fa, pf, _ in results[:a.top]:
        print(f"{ratio:<7} {fa:.4f} ({', '.join(f'{x:.4f}' for x in pf)})  {det:.4f}     {worst:.3f}")
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
