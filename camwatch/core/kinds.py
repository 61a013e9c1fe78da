"""What a drifted view's kind is named from: how its picture relates to its reference's.

Why its own module: detection asks whether a view is still the enrolled one;
an operator then sends someone on the kind, and a moved camera, a cover and a
defocused lens leave different traces in the picture. A moved camera shows the
same content displaced (found again under a shift, zoom or rotation); a cover
near the lens leaves part of the view in place and takes the fine detail out of
the rest; a defocused lens keeps the layout in place. These cues measure that
from what a view's statistics already carry (``vision.stats.ViewStats``: the
96-px thumbnail of ``structure`` and the detail grid), so the decision needs no
layer above core. ``decision.name_kind`` holds the rule and ``DecisionParams``
its thresholds; this module never changes whether a view drifted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from camwatch.core import structure

#: Measurement choices (made on train cases; the thresholds on the cues are DecisionParams
#: fields): the reference's centre, this share of the thumbnail's width and height (a
#: shift of up to 20% of the width and 25% of the height is still found)...
_FIND_CROP = (0.6, 0.5)
#: ...searched for in the view under these zooms and rotations (degrees), each at every shift,
#: and under a strong zoom in (a PTZ camera zoomed 1.5-2x; the demo's zoom is 1.8x) unrotated.
_FIND_SCALES = (0.75, 0.87, 1.0, 1.15, 1.33)
_FIND_ANGLES = (-9.0, -4.5, 0.0, 4.5, 9.0)
_FIND_TRANSFORMS = tuple((s, a) for s in _FIND_SCALES for a in _FIND_ANGLES) + ((1.55, 0.0), (1.8, 0.0))
#: Local statistics of the standardised thumbnails (grey std 50): Gaussian window (px), the
#: local std that counts as texture, the local correlation that counts as kept in place, and
#: the share of its std below which texture has faded.
_LOCAL_SIGMA = 3.0
_TEXTURE_STD = 12.0
_KEPT_CORRELATION = 0.6
_FADED_SHARE = 0.35
#: Detail grid (``vision.stats.ViewStats.detail_grid``): a reference cell with less mean squared
#: Laplacian than this has no detail to lose; a view's cell with less than this share of its
#: reference cell's has lost it.
_DETAILED_CELL = 20.0
_LOST_SHARE = 0.2


@dataclass(frozen=True)
class KindCues:
    """How a drifted view relates to its reference, for naming its kind (``cues``).

    A moved camera shows the same content displaced; a cover leaves part of the view in
    place and takes the detail out of the rest; a defocused lens keeps the layout in place.
    ``found``: best normalised correlation of the reference's centre in the view under small
    shifts, zooms and rotations; ``in_place``: the same, unmoved; ``kept``: share of the
    reference's textured area still in place (local correlation); ``faded``: share of it
    whose texture is gone; ``lost``: share of the reference's detailed grid cells whose fine
    detail is gone (None without detail grids).
    """

    found: float
    in_place: float
    kept: float
    faded: float
    lost: float | None


def _find(ref: np.ndarray, view: np.ndarray) -> tuple[float, float]:
    """(best, unmoved) correlation of ``ref``'s centre in ``view`` over the zooms, rotations and shifts."""
    h, w = ref.shape
    cw, ch = int(w * _FIND_CROP[0]), int(h * _FIND_CROP[1])
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    best, in_place = -1.0, 0.0
    for scale, angle in _FIND_TRANSFORMS:
        warped = ref
        if scale != 1.0 or angle != 0.0:
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            warped = cv2.warpAffine(ref, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        centre = warped[y0:y0 + ch, x0:x0 + cw]
        if float(centre.std()) < 1e-3:          # nothing to find (a flat reference)
            continue
        match = np.nan_to_num(cv2.matchTemplate(view, centre, cv2.TM_CCOEFF_NORMED), nan=0.0)
        best = max(best, float(match.max()))
        if scale == 1.0 and angle == 0.0:
            in_place = float(match[y0, x0])
    return min(best, 1.0), min(in_place, 1.0)


def _local(ref: np.ndarray, view: np.ndarray) -> tuple[float, float]:
    """(kept, faded): shares of ``ref``'s textured area still in place, and with its texture gone."""
    def blur(x: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.GaussianBlur(x, (0, 0), _LOCAL_SIGMA))

    mr, mv = blur(ref), blur(view)
    sr = np.sqrt(np.maximum(blur(ref * ref) - mr * mr, 0.0))
    sv = np.sqrt(np.maximum(blur(view * view) - mv * mv, 0.0))
    textured = sr > _TEXTURE_STD
    n = int(np.count_nonzero(textured))
    if not n:
        return 0.0, 0.0
    correlation = (blur(ref * view) - mr * mv) / (sr * sv + 1e-3)
    kept = np.count_nonzero(textured & (correlation > _KEPT_CORRELATION)) / n
    faded = np.count_nonzero(textured & (sv < _FADED_SHARE * sr)) / n
    return float(kept), float(faded)


def _lost(grid: object, ref_grid: object) -> float | None:
    """Share of the reference's detailed grid cells whose detail the view lost; None without both grids."""
    if not isinstance(grid, Sequence) or not isinstance(ref_grid, Sequence) or isinstance(grid, str) \
            or isinstance(ref_grid, str) or not grid or len(grid) != len(ref_grid):
        return None
    try:
        q, r = np.asarray(grid, np.float64), np.asarray(ref_grid, np.float64)
    except (TypeError, ValueError):
        return None
    detailed = r > _DETAILED_CELL
    if not detailed.any():
        return None
    return float(np.mean((q[detailed] + 1.0) / (r[detailed] + 1.0) < _LOST_SHARE))


def cues(thumb: object, ref_thumb: object, grid: object = None, ref_grid: object = None) -> KindCues | None:
    """The cues of a view against its reference, from their statistics' thumbnails and detail grids.

    None when either thumbnail is missing or damaged (statistics stored before
    route 4); ``lost`` is None when either grid is. 5-7 ms of CPU: paid only for a
    view already judged drifted.
    """
    ref = structure.decode(ref_thumb)
    view = structure.decode(thumb)
    if ref is None or view is None:
        return None
    ref, view = ref.astype(np.float32), view.astype(np.float32)
    if view.shape != ref.shape:
        view = np.asarray(cv2.resize(view, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA))
    found, in_place = _find(ref, view)
    kept, faded = _local(ref, view)
    return KindCues(found, in_place, kept, faded, _lost(grid, ref_grid))
