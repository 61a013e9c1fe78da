"""``camwatch evaluate``: score a drift-bench case folder with the daemon's own code.

Each camera is enrolled from its ``reference.jpg`` exactly as ``camwatch
enroll`` does it (enrol.enrol_frame into a real, temporary reference store),
calibrated from its ``calibration/`` frames the way the daemon calibrates in
its first checks (decision.calibrate on the similarities of the views it did
not judge drifted), and every query is judged by decision.assess. So the
figures printed here are figures about the alerts a user would get.

The figures are computed as the benchmark's score.py computes them (AUC with
tied ranks averaged; detection at a false-alarm rate = share of drifted
queries scoring above the highest benign score that keeps false alarms at or
below it). ``--method ssim|edges`` runs a classical baseline (baselines.py)
in the same harness.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from camwatch.core.errors import CamwatchError, EnrolmentError
from camwatch.vision.preprocess import ImageFileError, read_image_file

log = logging.getLogger(__name__)

BATCH = 32


class EvaluationError(CamwatchError):
    """The case folder or an option cannot be used."""


@dataclass(frozen=True)
class Case:
    camera: str
    query: str          # path relative to the case folder, exactly as in cases.csv
    label: int
    kind: str


@dataclass
class Result:
    """Scores and decisions of one run, in cases.csv order."""

    cases: list[Case]
    scores: np.ndarray
    drifted: np.ndarray
    thresholds: dict[str, float] = field(default_factory=dict)   # per camera, as used
    kinds_named: list[str | None] = field(default_factory=list)


# -- reading the case folder ----------------------------------------------------------------


def read_cases(folder: Path) -> list[Case]:
    """cases.csv as Case rows; an EvaluationError naming the file and line on any problem."""
    if not folder.exists():
        raise EvaluationError(f"{folder}: no such case folder")
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder (expected a drift-bench case folder with cases.csv)")
    path = folder / "cases.csv"
    if not path.is_file():
        raise EvaluationError(f"{path}: missing; a case folder holds cases.csv, cameras/ and queries/ "
                              "(make one with drift-bench/make_cases.py)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read it: {exc}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    want = ["camera", "query", "label", "kind"]
    if header is None or [h.strip() for h in header[:4]] != want:
        raise EvaluationError(f"{path}:1: header must be {','.join(want)}, got {','.join(header or [])!r}")
    cases: list[Case] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 4:
            raise EvaluationError(f"{path}:{line}: expected 4 columns (camera,query,label,kind), got {len(row)}")
        camera, query, label, kind = (c.strip() for c in row[:4])
        if label not in ("0", "1"):
            raise EvaluationError(f"{path}:{line}: label {label!r} is not 0 or 1")
        if not camera:
            raise EvaluationError(f"{path}:{line}: empty camera")
        if query in seen:
            raise EvaluationError(f"{path}:{line}: query {query} appears twice")
        seen.add(query)
        cases.append(Case(camera, query, int(label), kind))
    if not cases:
        raise EvaluationError(f"{path}: no cases")
    labels = {c.label for c in cases}
    if labels != {0, 1}:
        raise EvaluationError(f"{path}: needs both benign (label 0) and drifted (label 1) cases to be scored")
    return cases


def read_image(path: Path, where: str) -> np.ndarray:
    try:
        return read_image_file(path)
    except ImageFileError as exc:
        raise EvaluationError(f"{where}: {path}: {exc}") from None


def calibration_images(folder: Path, camera: str) -> list[np.ndarray]:
    cal = folder / "cameras" / camera / "calibration"
    if not cal.is_dir():
        return []
    files = sorted(p for p in cal.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    return [read_image(p, f"camera {camera} calibration") for p in files]


# -- figures (the same definitions as drift-bench/score.py) ------------------------------


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; tied scores get their average rank."""
    y = np.asarray(labels) == 1
    s = np.asarray(scores, np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def detection_at(labels: np.ndarray, scores: np.ndarray, false_alarm_rate: float) -> float:
    """Share of drifted cases caught at the strictest threshold allowing ``false_alarm_rate``."""
    y = np.asarray(labels)
    s = np.asarray(scores, np.float64)
    benign = np.sort(s[y == 0])
    k = int(math.floor(false_alarm_rate * len(benign)))
    cut = benign[len(benign) - 1 - k] if k < len(benign) else -np.inf
    return float((s[y == 1] > cut).mean())


def figures(result: Result) -> dict[str, Any]:
    """The benchmark's figures, keyed as score.py keys them."""
    y = np.array([c.label for c in result.cases])
    s, d = result.scores, result.drifted.astype(int)
    per_kind: dict[str, list[int]] = defaultdict(list)
    for case, dd in zip(result.cases, d):
        per_kind[case.kind].append(int(dd))
    return {
        "cases": int(len(y)),
        "auc": round(roc_auc(y, s), 4),
        "tpr_at_fpr_1pct": round(detection_at(y, s, 0.01), 4),
        "tpr_at_fpr_0.1pct": round(detection_at(y, s, 0.001), 4),
        "default_false_alarm_rate": round(float(d[y == 0].mean()), 4),
        "default_detection_rate": round(float(d[y == 1].mean()), 4),
        "per_kind_alert_rate": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_kind.items())},
    }


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels) == 1
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    tp = np.concatenate([[0], np.cumsum(y[order])]) / max(1, y.sum())
    fp = np.concatenate([[0], np.cumsum(~y[order])]) / max(1, (~y).sum())
    return fp, tp


# -- running a method -------------------------------------------------------------------------


def _by_camera(cases: Sequence[Case]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        groups[c.camera].append(i)
    return groups


def _chunks(items: Sequence[int], n: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def run_model(folder: Path, cases: list[Case], embedder: Any, calibrate: bool = True) -> Result:
    """Enrol, calibrate and judge every camera's queries as the daemon would."""
    from camwatch.core import decision
    from camwatch.service.enrol import enrol_frame
    from camwatch.store.references import ReferenceStore
    from camwatch.vision.preprocess import view_stats

    scores = np.zeros(len(cases))
    drifted = np.zeros(len(cases), bool)
    kinds: list[str | None] = [None] * len(cases)
    thresholds: dict[str, float] = {}
    default = float(embedder.spec.threshold)
    with tempfile.TemporaryDirectory(prefix="camwatch-evaluate-") as state:
        store = ReferenceStore(state)
        try:
            for camera, idx in _by_camera(cases).items():
                where = f"camera {camera}"
                ref_path = folder / "cameras" / camera / "reference.jpg"
                image = read_image(ref_path, where)
                cam = SimpleNamespace(id=camera, roi=(), mask=())
                try:
                    enrol_frame(store, embedder, cam, image, "default")
                except EnrolmentError as exc:
                    raise EvaluationError(f"{ref_path}: {exc}") from None
                refs = store.for_camera(camera, images=False)
                threshold, scale = default, None
                if calibrate:
                    # The daemon records the similarity and structure distance of each early
                    # check it did not judge drifted.
                    cal = calibration_images(folder, camera)
                    if cal:
                        threshold, scale = decision.calibrate_from(
                            [decision.assess(vec, view_stats(image_), refs, default)
                             for image_, vec in zip(cal, embedder.embed(cal))], default)
                thresholds[camera] = threshold
                for chunk in _chunks(idx, BATCH):
                    images = [read_image(folder / cases[i].query, f"camera {camera}") for i in chunk]
                    vectors = embedder.embed(images)
                    for i, image_, vec in zip(chunk, images, vectors):
                        v = decision.assess(vec, view_stats(image_), refs, threshold, scale)
                        scores[i], drifted[i], kinds[i] = v.score, v.drifted, v.kind
        finally:
            store.close()
    return Result(cases, scores, drifted, thresholds, kinds)


def run_baseline(folder: Path, cases: list[Case], name: str) -> Result:
    """A classical method in the same harness (no calibration: it has no similarity scale)."""
    from camwatch.tools.baselines import BASELINES

    method = BASELINES[name]
    scores = np.zeros(len(cases))
    for camera, idx in _by_camera(cases).items():
        ref = method.reference(read_image(folder / "cameras" / camera / "reference.jpg", f"camera {camera}"))
        for i in idx:
            scores[i] = method.score(ref, read_image(folder / cases[i].query, f"camera {camera}"))
    return Result(cases, scores, scores > method.threshold, {}, [None] * len(cases))


# -- output -------------------------------------------------------------------------------


def write_scores(path: Path, result: Result) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["query", "score", "drifted"])
            for case, s, d in zip(result.cases, result.scores, result.drifted):
                w.writerow([case.query, f"{float(s):.6f}", int(bool(d))])
    except OSError as exc:
        raise EvaluationError(f"--scores {path}: cannot write it: {exc.strerror or exc}") from None


def write_plot(path: Path, result: Result, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvaluationError("--plot needs matplotlib, which is in the train extra: "
                              "pip install 'camwatch[train]' (or pip install matplotlib)") from None
    y = np.array([c.label for c in result.cases])
    fp, tp = roc_points(y, result.scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fp, tp, lw=1.5, label=f"AUC {roc_auc(y, result.scores):.4f}")
    d = result.drifted.astype(bool)
    ax.plot([d[y == 0].mean()], [d[y == 1].mean()], "o", label="default decision")
    ax.axvline(0.01, color="grey", lw=0.5, ls=":")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-alarm rate (benign views)")
    ax.set_ylabel("detection rate (drifted views)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise EvaluationError(f"--plot {path}: cannot write it: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def format_figures(fig: dict[str, Any], method: str) -> str:
    lines = [
        f"method: {method}",
        f"cases: {fig['cases']}",
        f"AUC: {fig['auc']:.4f}",
        f"detection at 1% false alarms: {fig['tpr_at_fpr_1pct']:.4f}",
        f"detection at 0.1% false alarms: {fig['tpr_at_fpr_0.1pct']:.4f}",
        f"default decision: false-alarm rate {fig['default_false_alarm_rate']:.4f}, "
        f"detection rate {fig['default_detection_rate']:.4f}",
        "alert rate per kind:",
    ]
    lines += [f"  {k:<14} {v:.3f}" for k, v in fig["per_kind_alert_rate"].items()]
    return "\n".join(lines)


def evaluate(folder: str | Path, method: str = "model", model: str | None = None,
             calibrate: bool = True, device: str = "auto") -> tuple[Result, dict[str, Any]]:
    """Run one method on a case folder; returns the per-case result and the figures."""
    from camwatch.tools.baselines import BASELINES

    folder = Path(folder)
    method = method.lower()
    if method != "model" and method not in BASELINES:
        raise EvaluationError(f"--method {method!r}: expected model, {', '.join(BASELINES)}")
    if method != "model" and model:
        raise EvaluationError(f"--model applies to --method model, not {method}")
    cases = read_cases(folder)
    if method == "model":
        from camwatch.vision.embedder import load_embedder
        embedder = load_embedder(model, device=device)
        result = run_model(folder, cases, embedder, calibrate)
    else:
        result = run_baseline(folder, cases, method)
    return result, figures(result)


def cli_evaluate(args: argparse.Namespace) -> int:
    """Print the benchmark figures for a case folder; optionally write scores and a ROC plot."""
    started = time.monotonic()
    method = getattr(args, "method", "model") or "model"
    result, fig = evaluate(args.cases, method, getattr(args, "model", None),
                           calibrate=not getattr(args, "no_calibration", False))
    if args.scores:
        write_scores(Path(args.scores), result)
    if args.plot:
        write_plot(Path(args.plot), result, f"{Path(args.cases).name}: {method}")
    if args.json:
        doc = dict(fig, method=method, thresholds={k: round(v, 4) for k, v in result.thresholds.items()})
        print(json.dumps(doc, indent=1))
    else:
        print(format_figures(fig, method))
        if result.thresholds:
            t = list(result.thresholds.values())
            print(f"thresholds: {min(t):.4f}..{max(t):.4f} over {len(t)} cameras")
        print(f"({time.monotonic() - started:.1f} s)")
    sys.stdout.flush()
    return 0
