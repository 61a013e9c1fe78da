"""``camwatch evaluate``: score a drift-bench case folder with the daemon's own code.

Each camera is enrolled from its ``reference.jpg`` exactly as ``camwatch
enroll`` does it (enrol.enrol_frame into a real, temporary reference store),
calibrated from its ``calibration/`` frames the way the daemon calibrates in
its first checks (calibration.calibrate_from on the views it did not judge
drifted), and every query is judged by decision.assess (``judge_camera``). So
the figures are figures about the alerts a user would get.

The figures are computed as the benchmark's score.py computes them (AUC with
tied ranks averaged; detection at a false-alarm rate = share of drifted
queries scoring above the highest benign score that keeps false alarms at or
below it). ``--method ssim|edges`` runs a classical baseline (baselines.py)
in the same harness. Printing is ``cli/evaluate.py``'s.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypedDict

import numpy as np

from camwatch.config import CameraConfig
from camwatch.core import decision, scene
from camwatch.core.calibration import calibrate_from, learn_backgrounds, provisional_backgrounds
from camwatch.core.decision import SHIPPED, DecisionParams, Reference, Stats, Verdict
from camwatch.core.errors import CamwatchError, EnrolmentError
from camwatch.core.types import KINDS
from camwatch.service.enrol import enrol_frame
from camwatch.store.references import ReferenceStore
from camwatch.tools.baselines import BASELINES
from camwatch.vision.embedder import Embedder, load_embedder
from camwatch.vision.images import ImageFileError, read_image_file
from camwatch.vision.stats import view_stats

#: Queries read and embedded at once (bounds memory on large case folders).
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
    #: Each case's verdict (the model's runs; None for a classical method's), for ``write_scores``.
    verdicts: list[Verdict | None] = field(default_factory=list)


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


#: The benchmark's figures, keyed as score.py keys them.
Figures = TypedDict("Figures", {
    "cases": int,
    "auc": float,
    "tpr_at_fpr_1pct": float,
    "tpr_at_fpr_0.1pct": float,
    "default_false_alarm_rate": float,
    "default_detection_rate": float,
    "per_kind_alert_rate": dict[str, float],
})


def figures(result: Result) -> Figures:
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


class CameraAlarms(TypedDict):
    """One camera's false alarms under the default decision: alerted benign queries, of its benign queries."""

    alarms: int
    benign: int


def false_alarms_by_camera(result: Result) -> dict[str, CameraAlarms]:
    """Each camera's false alarms, for every camera with benign queries, by camera name.

    Why beside the pooled rate: a pooled 0.6% can hide one camera alarming on
    one benign view in thirteen, which is what its operator lives with; the
    issue's target is per camera too.
    """
    out: dict[str, CameraAlarms] = {}
    for case, drifted in zip(result.cases, result.drifted):
        if case.label == 0:
            row = out.setdefault(case.camera, {"alarms": 0, "benign": 0})
            row["benign"] += 1
            row["alarms"] += int(bool(drifted))
    return dict(sorted(out.items()))


# -- the named kind against the true kind --------------------------------------------------

#: Columns of the kind table: the kinds a drifted view is named (core.types.KINDS), then the
#: drifted queries the default decision did not alert on.
NOT_ALERTED = "not alerted"
#: Rows in this order first (other true kinds follow, sorted): what an operator dispatches on.
FAMILIES = ("moved", "covered", "defocused", "blinded")


def kind_family(kind: str) -> str:
    """The kind an operator should be told for a benchmark's true kind.

    drift-bench's ``moved:shift/zoom/rotate/tilt`` and ``redirected`` are all a camera
    pointed elsewhere (moved); ``covered`` and its variants (``covered:partial``,
    ``covered:spray``) are covered; ``defocus`` is defocused. A kind outside these keeps
    its own name, so a new kind shows as its own row instead of being counted wrong.
    """
    k = kind.strip().lower()
    if k.startswith("moved") or k == "redirected":
        return "moved"
    if k.startswith("covered"):
        return "covered"
    if k.startswith("defocus"):
        return "defocused"
    if k.startswith("blinded"):
        return "blinded"
    return k


class KindTable(TypedDict):
    """Drifted queries by true family (rows) and named kind (columns, ``NOT_ALERTED`` last).

    ``named_right``: per family, the share of its *alerted* queries named as that family
    (None when none alerted); ``all`` pools the families. Detection is judged elsewhere:
    this says whether the kind an operator is told is the true one.
    """

    columns: list[str]
    rows: dict[str, dict[str, int]]
    named_right: dict[str, float | None]


def kind_table(cases: Sequence[Case], drifted: Sequence[bool] | np.ndarray,
               named: Sequence[str | None]) -> KindTable | None:
    """The confusion table of the named kind against the true kind; None when no kind was named.

    ``drifted`` and ``named``: the decision and the named kind of each case, in order
    (a ``Result``'s, or ``benchmarks/tune_decision.py``'s replay). Only drifted queries
    (label 1) count: a benign view has no true kind. A method that names no kinds (the
    classical baselines) gets no table.
    """
    if not any(named):
        return None
    columns = [*FAMILIES, *(k for k in KINDS if k not in FAMILIES), NOT_ALERTED]
    rows: dict[str, dict[str, int]] = {}
    for case, alerted, named_kind in zip(cases, drifted, named):
        if case.label != 1:
            continue
        family = kind_family(case.kind)
        column = (named_kind or "unknown") if alerted else NOT_ALERTED
        if column not in columns:
            columns.insert(len(columns) - 1, column)
        row = rows.setdefault(family, {})
        row[column] = row.get(column, 0) + 1
    order = [f for f in FAMILIES if f in rows] + sorted(f for f in rows if f not in FAMILIES)
    table = {f: {c: rows[f].get(c, 0) for c in columns} for f in order}
    right: dict[str, float | None] = {}
    hits = total = 0
    for family, row in table.items():
        alerted = sum(n for c, n in row.items() if c != NOT_ALERTED)
        right[family] = round(row.get(family, 0) / alerted, 4) if alerted else None
        hits += row.get(family, 0)
        total += alerted
    right["all"] = round(hits / total, 4) if total else None
    return {"columns": columns, "rows": table, "named_right": right}


# -- running a method -------------------------------------------------------------------------


def by_camera(cases: Sequence[Case]) -> dict[str, list[int]]:
    """Camera -> the indices of its cases, in cases.csv order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        groups[c.camera].append(i)
    return groups


def _chunks(items: Sequence[int], n: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def judge_camera(refs: Sequence[Reference], calibration: Sequence[tuple[np.ndarray, Stats]],
                 queries: Iterable[tuple[np.ndarray, Stats]], default: float,
                 params: DecisionParams = SHIPPED) -> tuple[float, list[Verdict]]:
    """One camera as the daemon judges it: its threshold, and the verdict on each query.

    ``calibration`` and ``queries``: (embedding, statistics) of each view. The
    calibration views are judged at the model's ``default`` threshold and those not
    judged drifted calibrate the camera (the daemon records a sample only for
    those); no calibration views leave the default. ``benchmarks/tune_decision.py``
    replays this on cached embeddings with other ``params``.
    """
    threshold, scale, backgrounds = calibrate_camera(refs, calibration, default, params)
    return threshold, [decision.assess(vec, stats, refs, threshold, scale, params, backgrounds)
                       for vec, stats in queries]


def calibrate_camera(refs: Sequence[Reference], calibration: Sequence[tuple[np.ndarray, Stats]], default: float,
                     params: DecisionParams = SHIPPED
                     ) -> tuple[float, float | None, dict[int | None, scene.Background]]:
    """What ``judge_camera`` judges a camera's queries with: its threshold, structure scale and each
    reference's learned scene, from its calibration views judged at the model's ``default``."""
    backgrounds = provisional_backgrounds(refs)
    if not calibration:
        return default, None, backgrounds
    early = [decision.assess(vec, stats, refs, default, params=params, backgrounds=backgrounds)
             for vec, stats in calibration]
    threshold, scale = calibrate_from(early, default, params)
    return threshold, scale, learn_backgrounds(refs, [(v, stats) for v, (_, stats) in zip(early, calibration)],
                                               params)


def _embedded(embedder: Embedder, images: list[np.ndarray]) -> list[tuple[np.ndarray, Stats]]:
    return list(zip(embedder.embed(images), [view_stats(image) for image in images]))


def run_model(folder: Path, cases: list[Case], embedder: Embedder, calibrate: bool = True) -> Result:
    """Enrol, calibrate and judge every camera's queries as the daemon would."""
    scores = np.zeros(len(cases))
    drifted = np.zeros(len(cases), bool)
    kinds: list[str | None] = [None] * len(cases)
    decided: list[Verdict | None] = [None] * len(cases)
    thresholds: dict[str, float] = {}
    default = float(embedder.spec.threshold)
    with tempfile.TemporaryDirectory(prefix="camwatch-evaluate-") as state:
        store = ReferenceStore(state)
        try:
            for camera, idx in by_camera(cases).items():
                where = f"camera {camera}"
                ref_path = folder / "cameras" / camera / "reference.jpg"
                image = read_image(ref_path, where)
                # A case folder's camera: no config to validate, the whole view (no regions).
                cam = CameraConfig.model_construct(id=camera, url="")
                try:
                    enrol_frame(store, embedder, cam, image, "default")
                except EnrolmentError as exc:
                    raise EvaluationError(f"{ref_path}: {exc}") from None
                refs = store.for_camera(camera, images=False)
                cal = calibration_images(folder, camera) if calibrate else []
                queries = (view for chunk in _chunks(idx, BATCH)
                           for view in _embedded(embedder, [read_image(folder / cases[i].query, where) for i in chunk]))
                thresholds[camera], verdicts = judge_camera(refs, _embedded(embedder, cal) if cal else [],
                                                            queries, default)
                for i, v in zip(idx, verdicts):
                    scores[i], drifted[i], kinds[i], decided[i] = v.score, v.drifted, v.kind, v
        finally:
            store.close()
    return Result(cases, scores, drifted, thresholds, kinds, decided)


def run_baseline(folder: Path, cases: list[Case], name: str) -> Result:
    """A classical method in the same harness (no calibration: it has no similarity scale)."""
    method = BASELINES[name]
    scores = np.zeros(len(cases))
    for camera, idx in by_camera(cases).items():
        ref = method.reference(read_image(folder / "cameras" / camera / "reference.jpg", f"camera {camera}"))
        for i in idx:
            scores[i] = method.score(ref, read_image(folder / cases[i].query, f"camera {camera}"))
    return Result(cases, scores, scores > method.threshold, {}, [None] * len(cases))


# -- output -------------------------------------------------------------------------------


#: The learned scene's cues, in ``write_scores``'s columns after the verdict's own.
SCENE_COLUMNS = tuple(f.name for f in fields(scene.SceneCues))


def _number(value: float | None) -> str:
    return "" if value is None else f"{float(value):.4f}"


def write_scores(path: Path, result: Result) -> None:
    """query, score, drifted (what drift-bench's scorer reads), then why: the kind named, the rule that
    decided (``Verdict.reason``), the similarity and the threshold it was held to, the ``aligned`` line and
    the learned scene's cues (``SCENE_COLUMNS``; empty where not measured or for a classical method)."""
    verdicts = result.verdicts or [None] * len(result.cases)
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            why_columns = ["kind", "reason", "similarity", "threshold", "aligned_line",
                           *(f"scene_{name}" for name in SCENE_COLUMNS)]
            w.writerow(["query", "score", "drifted", *why_columns])
            for case, s, d, v in zip(result.cases, result.scores, result.drifted, verdicts):
                why = [""] * len(why_columns) if v is None else \
                    [v.kind or "", v.reason, _number(v.similarity), _number(v.threshold), _number(v.aligned_line),
                     *(_number(None if v.scene_cues is None else getattr(v.scene_cues, name))
                       for name in SCENE_COLUMNS)]
                w.writerow([case.query, f"{float(s):.6f}", int(bool(d)), *why])
    except OSError as exc:
        raise EvaluationError(f"--scores {path}: cannot write it: {exc.strerror or exc}") from None


def evaluate(folder: str | Path, method: str = "model", model: str | None = None,
             calibrate: bool = True, device: str = "auto") -> tuple[Result, Figures]:
    """Run one method on a case folder; returns the per-case result and the figures."""
    folder = Path(folder)
    method = method.lower()
    if method != "model" and method not in BASELINES:
        raise EvaluationError(f"--method {method!r}: expected model, {', '.join(BASELINES)}")
    if method != "model" and model:
        raise EvaluationError(f"--model applies to --method model, not {method}")
    cases = read_cases(folder)
    if method == "model":
        embedder = load_embedder(model, device=device)
        result = run_model(folder, cases, embedder, calibrate)
    else:
        result = run_baseline(folder, cases, method)
    return result, figures(result)
