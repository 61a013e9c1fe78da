"""Classical drift detectors, run by ``camwatch evaluate --method`` as yardsticks.

They are what a camera's own "scene change" feature roughly does: compare the
current view with the reference pixel-wise. They show what the learned model
has to beat; camwatch never alerts on them alone (its structure cue,
core/structure.py, shares the SSIM formula as one input beside the embedding). numpy + cv2 only.

Each method turns a reference into a small state once (``reference``) and
gives every query a score, higher = more drifted (``score``). Its default
threshold is the one that gives at most 1% false alarms on cases made from
TRAIN footage (make_cases.py on the fixed cameras of footage/train, without
unsteady/, seeds 7 and 8 pooled: 880 benign views, 0.91% false alarms for
both; docs/evaluation.md), never chosen on dev footage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from camwatch.core.structure import ssim, standardise

#: Both baselines work on a grey view this wide (height keeps the aspect).
WIDTH = 160


def _grey(image_bgr: np.ndarray, width: int = WIDTH, height: int | None = None) -> np.ndarray:
    grey = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape[:2]
    height = height or max(8, round(h * width / w))
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)


# -- SSIM -------------------------------------------------------------------------------


def _ssim_reference(image_bgr: np.ndarray) -> np.ndarray:
    return _grey(image_bgr)


def _ssim_score(ref: np.ndarray, image_bgr: np.ndarray) -> float:
    q = _grey(image_bgr, ref.shape[1], ref.shape[0])
    # Standardised as the structure cue's thumbnails are, so that a global light change is not a drift.
    return 1.0 - ssim(standardise(ref), standardise(q))


# -- edges ------------------------------------------------------------------------------


def _edges(grey: np.ndarray) -> np.ndarray:
    """Canny edges of the view standardised to a fixed contrast, so light and gain do not matter."""
    g = cv2.GaussianBlur(grey, (5, 5), 1.0)
    g = (g - g.mean()) / (g.std() + 1.0) * 40.0 + 128.0
    return cv2.Canny(np.clip(g, 0, 255).astype(np.uint8), 40, 80) > 0


#: The edges method's reference: grey size, edge map, edge map dilated by 2 px.
EdgesReference = tuple[tuple[int, ...], np.ndarray, np.ndarray]


def _edges_reference(image_bgr: np.ndarray) -> EdgesReference:
    g = _grey(image_bgr)
    e = _edges(g)
    return g.shape, e, cv2.dilate(e.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def _edges_score(ref: EdgesReference, image_bgr: np.ndarray) -> float:
    """1 - F1 of edges matched within 2 px: moved, blurred and covered views lose their edges."""
    shape, ref_edges, ref_near = ref
    q = _edges(_grey(image_bgr, shape[1], shape[0]))
    q_near = cv2.dilate(q.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    n_ref, n_q = int(ref_edges.sum()), int(q.sum())
    if n_ref == 0 or n_q == 0:
        return 1.0 if n_ref != n_q else 0.0
    precision = float((q & ref_near).sum()) / n_q
    recall = float((ref_edges & q_near).sum()) / n_ref
    if precision + recall == 0:
        return 1.0
    return 1.0 - 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Baseline:
    """A classical method: reference state, score (higher = more drifted), default threshold.

    The reference state is each method's own (an image, edge maps): ``Any`` here.
    """

    name: str
    reference: Callable[[np.ndarray], Any]
    score: Callable[[Any, np.ndarray], float]
    threshold: float          # score above it = drifted (chosen on train cases)


BASELINES = {
    "ssim": Baseline("ssim", _ssim_reference, _ssim_score, threshold=0.66),
    "edges": Baseline("edges", _edges_reference, _edges_score, threshold=0.365),
}
