"""One check of one camera, shared by the daemon and ``camwatch check``.

Both paths must judge a view the same way (regions applied as at enrolment,
the same threshold rule, the same nearest-reference assessment), or a
one-shot ``check`` would disagree with the daemon's alerts. Hysteresis and
alerts are the monitor's business (core/monitor.py); everything here is
stateless apart from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from camwatch.config import CameraConfig, Config, Settings
from camwatch.core import calibration, decision
from camwatch.core.errors import CamwatchError
from camwatch.core.lines import cue_details, explanation
from camwatch.core.scene import Background
from camwatch.core.secrets import scrub
from camwatch.service.enrol import fetch_frames
from camwatch.store.references import Reference, ReferenceStore
from camwatch.vision.analyse import analyse_batch
from camwatch.vision.embedder import Embedder
from camwatch.vision.regions import apply_regions
from camwatch.vision.stats import ViewStats


@dataclass(frozen=True)
class Threshold:
    """The similarity threshold in force for a camera and where it came from.

    ``source`` is ``config`` (camera/settings threshold), ``calibrated`` (from
    post-enrolment samples), ``calibrating`` (model default while samples are
    still being collected) or ``model`` (calibration off).
    """

    value: float
    source: str
    samples: int = 0
    #: The camera's structure scale (calibration.calibrate_structure) once calibrated, else None.
    structure_scale: float | None = None
    #: Each reference's learned scene by reference id (``calibration.learn_backgrounds``): from the
    #: reference alone while calibrating, then from it and its calibration views; None when the
    #: camera's threshold is set in its config (the operator decides) or calibration is off.
    backgrounds: Mapping[int | None, Background] | None = None

    @property
    def calibrating(self) -> bool:
        return self.source == "calibrating"


@dataclass(frozen=True)
class Judgement:
    """What one assessed view came to, before any hysteresis."""

    verdict: decision.Verdict
    threshold: Threshold
    stats: ViewStats        # of the view as embedded


def view_of(camera: CameraConfig, image_bgr: np.ndarray) -> np.ndarray:
    """The camera's view as it is embedded: ROI/mask applied exactly as at enrolment."""
    return apply_regions(image_bgr, camera.roi, camera.mask)


def threshold_for(camera: CameraConfig, settings: Settings, embedder: Embedder, store: ReferenceStore) -> Threshold:
    """The threshold a camera's views are judged against now.

    A threshold in the config wins (the operator said so). Otherwise the first
    ``calibration.checks`` similarities after enrolment adapt the model's
    default to the camera's own benign spread (calibration.calibrate), their
    structure distances give the camera's structure scale
    (calibration.calibrate_structure), and the samples live in the store so a
    restart does not forget them.
    """
    default = float(embedder.spec.threshold)
    if camera.threshold is not None:
        return Threshold(float(camera.threshold), "config")
    wanted = int(getattr(settings.calibration, "checks", 0) or 0)
    if wanted <= 0:
        return Threshold(default, "model")
    model = embedder.spec.identity
    with store.pinned():        # five reads, one question whether the database changed
        samples = store.calibration_samples(camera.id, model)
        refs = store.for_camera(camera.id, images=False)
        if len(samples) < wanted:
            return Threshold(default, "calibrating", len(samples),
                             backgrounds=_backgrounds(camera.id, model, refs, []))
        structure = store.calibration_structure(camera.id, model)
        views = store.calibration_views(camera.id, model)
        doubtful = store.calibration_views(camera.id, model, doubtful=True)
    scale = calibration.calibrate_structure(structure)
    return Threshold(float(calibration.calibrate(samples, default)), "calibrated", len(samples), scale,
                     _backgrounds(camera.id, model, refs, views, history_of(camera.id), doubtful))


#: Learned scenes by camera: (what they were learned from, the calibrated scenes, the scenes in force,
#: the calibration views the calibrated scenes were learned from).
#: One entry per camera, replaced when its references, calibration views or learned views change, so it
#: stays as large as the fleet.
_SCENES: dict[str, tuple[tuple[object, ...], dict[int | None, Background], dict[int | None, Background],
                         list[tuple[int | None, Mapping[str, object]]]]] = {}
#: Views each calibrated camera judged plainly benign since (``calibration.SceneHistory``), by camera.
_HISTORY: dict[str, calibration.SceneHistory] = {}
_SCENES_LOCK = threading.Lock()


def learned_scenes(camera_id: str) -> dict[int | None, Background] | None:
    """The camera's learned scenes by reference id as its latest check judged with them (None before
    any): the console shows their stable/busy cells."""
    with _SCENES_LOCK:
        hit = _SCENES.get(camera_id)
    return None if hit is None else hit[1]


def history_of(camera_id: str) -> calibration.SceneHistory:
    """The camera's learned views since calibration (made empty on first use)."""
    with _SCENES_LOCK:
        return _HISTORY.setdefault(camera_id, calibration.SceneHistory())


def forget_history(camera_id: str) -> None:
    """Drop what a camera learned since calibration: a replay starting the same camera again. (A change
    of references or calibration drops it by itself: ``SceneHistory.rebase``.)"""
    with _SCENES_LOCK:
        _HISTORY.pop(camera_id, None)


def learn_from(camera_id: str, judgement: Judgement, now: float, alert_open: bool) -> bool:
    """Offer a calibrated camera's judged view to its scene's later learning (``SceneHistory.offer``);
    never while its drift alert is open."""
    if alert_open or judgement.threshold.source != "calibrated" or judgement.threshold.backgrounds is None:
        return False
    return history_of(camera_id).offer(judgement.verdict, judgement.stats, now)


def _backgrounds(camera_id: str, model: str, refs: Sequence[Reference],
                 views: Sequence[tuple[int | None, Mapping[str, object]]],
                 history: calibration.SceneHistory | None = None,
                 doubtful: Sequence[tuple[int | None, Mapping[str, object]]] = ()) -> dict[int | None, Background]:
    """Each reference's learned scene (``calibration.learn_calibrated`` from the calibration views and the
    doubtful ones, then ``calibration.relearn_backgrounds`` from
    what it learned since), kept until its sources change."""
    def keys(vs: Sequence[tuple[int | None, Mapping[str, object]]]) -> tuple[object, ...]:
        return tuple((ref_id, v.get("brightness"), v.get("sharpness")) for ref_id, v in vs)
    sources = (model, tuple((r.id, r.stats.get("route") if isinstance(r.stats, Mapping) else None) for r in refs),
               keys(views), keys(doubtful))
    if history is not None:
        history.rebase(sources)
    generation = history.generation() if history is not None else 0
    with _SCENES_LOCK:
        hit = _SCENES.get(camera_id)
    if hit is not None and hit[0] == sources + (generation,):
        return hit[2]
    if hit is not None and hit[0][:-1] == sources:
        calibrated, learned_from = hit[1], hit[3]
    else:
        learned, calibrated = calibration.learn_calibrated(refs, views, doubtful)
        learned_from = [(ref_id, v) for ref_id, v in learned if isinstance(v, Mapping)]
    scenes = calibration.relearn_backgrounds(refs, calibrated, learned_from, history) \
        if history is not None and generation else calibrated
    with _SCENES_LOCK:
        _SCENES[camera_id] = (sources + (generation,), calibrated, scenes, learned_from)
    return scenes


def judge(embedding: np.ndarray, stats: ViewStats, refs: Sequence[Reference], threshold: Threshold) -> Judgement:
    """Nearest-reference assessment of one embedded view (decision.assess does the maths)."""
    verdict = decision.assess(embedding, stats, refs, threshold.value, threshold.structure_scale,
                              backgrounds=threshold.backgrounds)
    return Judgement(verdict, threshold, stats)


def embed_views(embedder: Embedder, views: Sequence[np.ndarray]) -> tuple[np.ndarray, list[ViewStats]]:
    """Embed views as one batch: (N, D) float32 unit vectors, and each view's statistics.

    Both come from one reduction of each frame (``vision.analyse.analyse``), the
    largest part of a check's own CPU cost at 720p and 1080p.
    """
    if not views:
        return np.zeros((0, 0), np.float32), []
    x, stats = analyse_batch(list(views), embedder.spec.input)
    return np.asarray(embedder.run_prepared(x), dtype=np.float32), stats


# -- camwatch check: every camera once, now -------------------------------------------------


@dataclass
class CheckRow:
    """One camera's line in ``camwatch check``.

    ``threshold`` is the camera's own, the one the daemon's log, metrics and
    events show; ``why`` says which cue decided when the similarity alone says
    otherwise; ``details`` holds the cues (the threshold the view was held to,
    structure, sharpness), as in a drift event's details.
    """

    id: str
    state: str                   # ok, drifted, unavailable, no_reference, disabled, unknown, error
    url: str = ""                # redacted
    similarity: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    kind: str | None = None
    reference_id: int | None = None
    error: str | None = None
    why: str | None = None
    details: dict[str, float | str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "drifted": 1}.get(self.state, 2)


def run_checks(config: Config, cameras: Sequence[CameraConfig], embedder: Embedder,
               store: ReferenceStore) -> list[CheckRow]:
    """Check cameras once, now: frames fetched in parallel (bounded), one batch embedded.

    The same view, threshold and assessment code as the daemon; no hysteresis
    (a one-shot answer), no calibration samples recorded, no enrolment.
    """
    frames = fetch_frames(cameras)
    rows: dict[str, CheckRow] = {}
    todo: list[tuple[CameraConfig, list[Reference], np.ndarray]] = []
    for cam in cameras:
        got = frames[cam.id]
        row = CheckRow(cam.id, "error", url=scrub(cam.redacted_url))
        rows[cam.id] = row
        if isinstance(got, BaseException):
            row.state = "unavailable"
            row.error = scrub(str(got).splitlines()[0] if str(got) else type(got).__name__)
            continue
        refs = store.for_camera(cam.id, images=False)
        if not refs:
            row.state = "no_reference"
            row.error = f"no reference; enrol it with: camwatch enroll {cam.id}"
            continue
        todo.append((cam, refs, view_of(cam, got.image)))
    if todo:
        vectors, all_stats = embed_views(embedder, [v for _, _, v in todo])
        for (cam, refs, _view), vec, stats in zip(todo, vectors, all_stats):
            row = rows[cam.id]
            try:
                threshold = threshold_for(cam, config.settings, embedder, store)
                j = judge(vec, stats, refs, threshold)
            except CamwatchError as exc:
                row.error = scrub(str(exc))
                continue
            v = j.verdict
            row.state = "drifted" if v.drifted else "ok"
            row.similarity = round(float(v.similarity), 4)
            row.threshold = round(float(threshold.value), 4)
            row.threshold_source = threshold.source
            row.kind = v.kind if v.drifted else None
            row.reference_id = v.reference_id
            row.why = explanation(v.drifted, v.similarity, threshold.value, v.reason, v.sharpness_ratio) or None
            row.details = cue_details(v, threshold.value, threshold.source, threshold.structure_scale)
    return [rows[c.id] for c in cameras]
