"""One check of one camera, shared by the daemon and ``camwatch check``.

Both paths must judge a view the same way (regions applied as at enrolment,
the same threshold rule, the same nearest-reference assessment), or a
one-shot ``check`` would disagree with the daemon's alerts. Hysteresis is the
daemon's own business; everything here is stateless apart from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


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
    #: The camera's structure scale (decision.calibrate_structure) once calibrated, else None.
    structure_scale: float | None = None

    @property
    def calibrating(self) -> bool:
        return self.source == "calibrating"


@dataclass(frozen=True)
class Judgement:
    """What one assessed view came to, before any hysteresis."""

    verdict: Any          # decision.Verdict
    threshold: Threshold
    stats: Any            # preprocess.ViewStats of the view as embedded


def view_of(camera: Any, image_bgr: np.ndarray) -> np.ndarray:
    """The camera's view as it is embedded: ROI/mask applied exactly as at enrolment."""
    from camwatch.vision.preprocess import apply_regions

    return apply_regions(image_bgr, camera.roi, camera.mask)


def threshold_for(camera: Any, settings: Any, embedder: Any, store: Any) -> Threshold:
    """The threshold a camera's views are judged against now.

    A threshold in the config wins (the operator said so). Otherwise the first
    ``calibration.checks`` similarities after enrolment adapt the model's
    default to the camera's own benign spread (decision.calibrate), their
    structure distances give the camera's structure scale
    (decision.calibrate_structure), and the samples live in the store so a
    restart does not forget them.
    """
    from camwatch.core import decision

    default = float(embedder.spec.threshold)
    if camera.threshold is not None:
        return Threshold(float(camera.threshold), "config")
    wanted = int(getattr(settings.calibration, "checks", 0) or 0)
    if wanted <= 0:
        return Threshold(default, "model")
    samples = store.calibration_samples(camera.id, embedder.spec.identity)
    if len(samples) < wanted:
        return Threshold(default, "calibrating", len(samples))
    scale = decision.calibrate_structure(store.calibration_structure(camera.id, embedder.spec.identity))
    return Threshold(float(decision.calibrate(samples, default)), "calibrated", len(samples), scale)


def judge(embedding: np.ndarray, stats: Any, refs: Sequence[Any], threshold: Threshold) -> Judgement:
    """Nearest-reference assessment of one embedded view (decision.assess does the maths)."""
    from camwatch.core import decision

    verdict = decision.assess(embedding, stats, refs, threshold.value, threshold.structure_scale)
    return Judgement(verdict, threshold, stats)


def embed_views(embedder: Any, views: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
    """Embed views as one batch: (N, D) float32 unit vectors, and each view's statistics.

    Both come from one reduction of each frame (``preprocess.analyse``), the
    largest part of a check's own CPU cost at 720p and 1080p.
    """
    from camwatch.vision.preprocess import analyse_batch

    if not views:
        return np.zeros((0, 0), np.float32), []
    x, stats = analyse_batch(list(views), embedder.spec.input)
    return np.asarray(embedder.run_prepared(x), dtype=np.float32), stats
    return np.asarray(embedder.embed(list(views)), dtype=np.float32)
