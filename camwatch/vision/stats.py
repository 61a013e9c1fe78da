"""View statistics: cheap global measures of a view that back the embedding up.

Brightness, contrast, gain-free sharpness ("detail"), black/white/textureless
shares, a 96-px structure thumbnail (``core.structure``) and a coarse grid of
where the fine detail lies, measured once per view at about ``STATS_WIDTH`` px.
The decision (``core.decision``) compares a view's statistics with its
reference's: no contrast = blinded, much less detail = defocused; naming a
drifted view's kind reads the thumbnail and the grid too (content found
displaced = moved, part of the view in place and detail gone from part of it =
covered).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from camwatch.core.scene import FOCUS_GRID, LAYOUT_WIDTH, cell_bounds, focus_cells
from camwatch.core.structure import thumbnail
from camwatch.vision.images import check_image
from camwatch.vision.prepare import base_halvings, halve, halvings, shrink

#: Width at which sharpness is judged. Gentle lens defocus that is invisible at
#: 128 px still drops Laplacian energy clearly at ~480 px (see GUIDE.md).
STATS_WIDTH = 480

#: How view statistics are measured; stored references whose statistics carry
#: another route are re-measured from their images.
#: 2: HD frames reduced by 2x2 means to 480-959 px, then INTER_AREA (box filters only).
#: 3: the same, but that last step (less than 2x; 640 -> 480 px at 720p) is INTER_LINEAR:
#: OpenCV's INTER_AREA at a non-integer ratio took 0.80 ms CPU of the ~2.3 ms a 720p view's
#: input and statistics take; linear takes 0.19 ms. Frames under HD are unchanged.
#: 4: route 3, and the statistics carry the view's structure thumbnail (``core.structure.thumbnail``).
#: 5: route 4, and the statistics carry the detail grid (``ViewStats.detail_grid``); the other
#: fields are measured exactly as by route 4.
#: 6: route 5, and the statistics carry the layout image and the focus grid that a camera's learned
#: scene is judged by (``core.scene``); the other fields are measured exactly as by route 5.
#: 7: route 6, but the focus grid is measured at up to ``FOCUS_MAX_WIDTH`` px, not at the statistics
#: width; every other field exactly as by route 6.
#: 8: route 7, and the focus grid carries a third value per cell, the Laplacian's peaks per unit
#: contrast (``core.scene.focus_cells``); every other field exactly as by route 7.
#: 9: route 8, but the focus grid's cell means are summed in double (by bands of rows, ``core.scene._band_sums``);
#: a cell's value moves by at most its last digit (0.001). Every other field as by route 8.
STATS_ROUTE = 9

#: Cells (columns, rows) of ``ViewStats.detail_grid``.
DETAIL_GRID = (8, 6)

#: The focus grid is measured on the view's grey halved (2x2 means) until at most this wide: a gentle
#: turn of the focus ring (0.7-1.1 px of blur on a 960-px camera) barely shows once the view is
#: brought to STATS_WIDTH, at its own size it does (footage/tune: docs/evaluation.md). 640 px at 720p,
#: 960 px at 1080p: the grid alone ~0.4 and ~1.3 ms more a check than at STATS_WIDTH (docs/performance.md).
FOCUS_MAX_WIDTH = 960

#: Grey-level standard deviation below which a stats cell counts as textureless.
FLAT_CELL_STD = 4.0


def stats_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) at which a frame of ``shape`` is measured."""
    h, w = shape[:2]
    return STATS_WIDTH, max(1, round(h * STATS_WIDTH / w))


def focus_halvings(shape: tuple[int, ...]) -> int:
    """How many 2x2 halvings bring a frame of ``shape`` to at most ``FOCUS_MAX_WIDTH`` px wide."""
    w, n = shape[1], 0
    while w > FOCUS_MAX_WIDTH:
        w, n = w // 2, n + 1
    return n


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 and image.shape[2] == 3 else \
        (image if image.ndim == 2 else image[:, :, 0])


def _focus_view(grey: np.ndarray) -> np.ndarray:
    """``grey`` halved to at most FOCUS_MAX_WIDTH px wide (unchanged when it already is)."""
    return halve(grey, focus_halvings(grey.shape))


@dataclass(frozen=True)
class ViewStats:
    """Cheap global measures of a view, for naming the kind of a change.

    The decision module compares them with the reference's: darker + flat =
    covered/blinded, much less detail at similar contrast = defocused.
    ``sharpness`` is Laplacian energy (mean squared Laplacian) of the grey view
    at <= ``STATS_WIDTH`` px wide; ``detail`` divides it by contrast squared so
    that a global gain change (night, exposure) does not read as blur.
    """

    brightness: float      # mean grey level, 0..255
    contrast: float        # standard deviation of grey, 0..~128
    sharpness: float       # mean squared Laplacian at <= STATS_WIDTH px
    detail: float          # sharpness / (contrast^2 + 1): gain-free sharpness
    dark_fraction: float   # share of pixels <= 16
    bright_fraction: float  # share of pixels >= 240
    colourfulness: float   # mean |chroma| (0 for grey / IR night images)
    width: int             # width the sharpness was judged at
    #: share of a 16x12 grid of cells with almost no texture (grey std < FLAT_CELL_STD at
    #: ~1/4 of STATS_WIDTH, where sensor noise has averaged out): a cover or spray paint
    #: raises it above the reference's. Default for stats stored before it existed.
    flat_fraction: float = 0.0
    #: ``STATS_ROUTE`` the statistics were measured by (absent: 1, before routes had numbers).
    route: int = STATS_ROUTE
    #: The grey view at ``core.structure.THUMB_WIDTH`` px, encoded (``core.structure.thumbnail``), made
    #: from the same grey as the other statistics; "" for statistics stored before route 4.
    thumb: str = dataclasses.field(default="", repr=False)
    #: Fine detail where it lies: mean squared Laplacian of the grey view at half the statistics
    #: width, in a ``DETAIL_GRID`` of cells, row by row (to 0.1). Naming only: a
    #: cover held near the lens takes the fine detail out of part of the view, a moved camera
    #: keeps it (core.decision.name_kind). () for statistics stored before route 5.
    detail_grid: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    #: The grey view at ``core.scene.LAYOUT_WIDTH`` px (at most the view's width), encoded like ``thumb``:
    #: what a camera's learned background is made of and judged against (``core.scene``). "" before route 6.
    layout: str = dataclasses.field(default="", repr=False)
    #: ``core.scene.focus_cells`` of the grey view halved to at most ``FOCUS_MAX_WIDTH`` (route 7; the
    #: statistics width before) in a ``FOCUS_GRID``: fine detail per unit of local contrast, local
    #: contrast, and (route 8) the Laplacian's peaks per unit of local contrast, where a gentle lens
    #: defocus shows and a starved encoder does not. () before route 6.
    focus_grid: tuple[float, ...] = dataclasses.field(default=(), repr=False)


def _colourfulness(bgr: np.ndarray) -> float:
    """mean |R - G| + mean |(R + G) / 2 - B|, as exact integer L1 norms (OpenCV, no float planes)."""
    b, g, r = cv2.split(bgr)
    n = float(b.size)
    rg = cv2.norm(r, g, cv2.NORM_L1)
    yb = cv2.norm(cv2.add(r, g, dtype=cv2.CV_16S), cv2.add(b, b, dtype=cv2.CV_16S), cv2.NORM_L1)
    return rg / n + 0.5 * yb / n


def _flat_fraction(tiny: np.ndarray) -> float:
    """Share of a 16x12 grid of cells whose grey std is below FLAT_CELL_STD.

    Cell sums come from integral images and the test ``var < FLAT_CELL_STD**2`` is
    done in exact integers: the per-cell numpy loop it replaces cost 2-8 ms.
    """
    gh, gw = tiny.shape[:2]
    s, sq = cv2.integral2(tiny, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
    s = s.astype(np.int64)
    sq = sq.astype(np.int64)                       # exact: at most 255^2 * pixels < 2^53
    rows, cols = cell_bounds(gh, gw, 16, 12)
    r0, r1 = rows[:-1, None], rows[1:, None]
    c0, c1 = cols[None, :-1], cols[None, 1:]
    n = (r1 - r0) * (c1 - c0)
    total = s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0]
    total_sq = sq[r1, c1] - sq[r0, c1] - sq[r1, c0] + sq[r0, c0]
    valid = n > 0
    # std < t  <=>  n*sum(x^2) - sum(x)^2 < t^2 * n^2  (both sides n^2 * variance)
    limit = FLAT_CELL_STD * FLAT_CELL_STD * n * n
    flat = valid & ((n * total_sq - total * total) < limit)
    return float(np.count_nonzero(flat)) / max(1, int(np.count_nonzero(valid)))


def view_stats(image_bgr: np.ndarray) -> ViewStats:
    """Brightness, contrast, sharpness and saturation of a view (~1 ms at 720p and 1080p).

    HD frames and larger are reduced by exact 2x2 means to 480-959 px wide
    (``base_halvings``; ``analyse`` shares the first halving with the model's
    input), converted to grey and brought to ``STATS_WIDTH`` by INTER_LINEAR
    (a step of less than 2x; route 3). Colourfulness, which no rule uses, is
    read at 240-479 px. Frames under HD (the 640 px views the rules in
    decision.py were tuned on) take the old route, INTER_AREA.
    """
    check_image(image_bgr)
    img = image_bgr if image_bgr.ndim == 3 else image_bgr[:, :, None]
    n = base_halvings(img.shape, *stats_size(img.shape))
    if n:
        return stats_after(img, 0, img.shape)
    return _view_stats(image_bgr, fast=True)


def view_stats_exact(image_bgr: np.ndarray) -> ViewStats:
    """``view_stats`` by the plain pyrDown route at every size: what the HD routes are measured against."""
    return _view_stats(image_bgr, fast=False)


def stats_after(image: np.ndarray, done: int, shape: tuple[int, ...], grey: np.ndarray | None = None) -> ViewStats:
    """Statistics of an HD frame of ``shape`` from ``image``, the frame after ``done`` of its base halvings
    (``grey``: the image's grey, if at hand). The focus grid is read at the last halving that is at most
    FOCUS_MAX_WIDTH wide: the base itself at 720p, the step before it at 1080p."""
    n, k = base_halvings(shape, *stats_size(shape)), focus_halvings(shape)
    focus = None
    if done <= k < n:
        image = halve(image, k - done)
        focus = grey if (k == done and grey is not None) else _grey(image)
        image, done, grey = halve(image, n - k), n, None
    base = halve(image, n - done)
    return stats_of(base, shape, grey if base is image else None, focus)


def stats_of(base: np.ndarray, shape: tuple[int, ...], grey: np.ndarray | None = None,
             focus: np.ndarray | None = None) -> ViewStats:
    """Statistics of a frame of ``shape`` from its 2x2-mean reduction ``base`` (and its grey, if at hand;
    ``focus``: the grey the focus grid is read on, when not the base's own)."""
    sw, th = stats_size(shape)
    colour = None
    if base.ndim == 3 and base.shape[2] == 3:
        grey = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY) if grey is None else grey
        colour = halvings(base, sw // 2, 1)
    elif grey is None:
        grey = base if base.ndim == 2 else base[:, :, 0]
    focus = _focus_view(grey) if focus is None else focus
    if grey.shape[1] != sw or grey.shape[0] != th:       # 480-959 px wide: less than 2x to go
        grey = cv2.resize(grey, (sw, th), interpolation=cv2.INTER_LINEAR)
    return _measure(grey, colour, focus)


def _view_stats(image_bgr: np.ndarray, fast: bool) -> ViewStats:
    """Frames below HD (``fast=True``), or every size by pyrDown (``fast=False``, the reference route)."""
    check_image(image_bgr)
    img = image_bgr if image_bgr.ndim == 3 else image_bgr[:, :, None]
    h, w = img.shape[:2]
    _, th = stats_size(img.shape)
    colour = None
    if fast and img.shape[2] == 3 and w >= 2 * STATS_WIDTH and h >= 2 * th:
        # pyrDown on grey, not BGR: a third of the work, same picture up to rounding
        full = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        grey = shrink(full, STATS_WIDTH, th)
        colour = halvings(img, grey.shape[1], grey.shape[0])
        return _measure(grey, colour, _focus_view(full))
    focus = _focus_view(_grey(img)) if w > STATS_WIDTH else None
    small = shrink(img, STATS_WIDTH, th) if w > STATS_WIDTH else img
    if small.ndim == 2:
        small = small[:, :, None]
    if small.shape[2] == 3:
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        colour = small
    else:
        grey = small[:, :, 0]
    return _measure(grey, colour, focus)


def _detail_grid(grey: np.ndarray) -> tuple[float, ...]:
    """Mean squared Laplacian of ``grey`` per cell of a ``DETAIL_GRID`` (() if the view is smaller than it).

    At half the statistics width, sensor noise has averaged out while a cover's or a
    lens's blur (a few pixels at 640 px) still takes the detail out of a cell. Cell
    sums by ``np.add.reduceat``: about half the time of OpenCV's INTER_AREA to 8x6 (~0.1 ms in all at 240 px).
    """
    gx, gy = DETAIL_GRID
    h, w = grey.shape[:2]
    if h < 2 * gy or w < 2 * gx:
        return ()
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    rows, cols = cell_bounds(h, w, gx, gy)
    sums = np.add.reduceat(np.add.reduceat(cv2.multiply(lap, lap), rows[:-1], axis=0), cols[:-1], axis=1)
    cells = sums / (np.diff(rows)[:, None] * np.diff(cols)[None, :])
    return tuple(np.round(cells.astype(np.float64).ravel(), 1).tolist())


def _measure(grey: np.ndarray, colour: np.ndarray | None, focus: np.ndarray | None = None) -> ViewStats:
    """The statistics of a grey view at (about) STATS_WIDTH, its colour version (any size) and the grey
    its focus grid is read on (``focus``, at most FOCUS_MAX_WIDTH wide; default: ``grey``)."""
    colourful = _colourfulness(colour) if colour is not None else 0.0
    mean, std = cv2.meanStdDev(grey)
    contrast = float(std[0, 0])
    n = float(grey.size)
    # int16 holds a 3x3 Laplacian of uint8 exactly; the squared norm is summed in double
    sharp = cv2.norm(cv2.Laplacian(grey, cv2.CV_16S, ksize=3), cv2.NORM_L2SQR) / n
    half = cv2.pyrDown(grey) if min(grey.shape) >= 48 else grey
    tiny = cv2.pyrDown(half) if min(grey.shape) >= 48 else grey
    return ViewStats(
        brightness=float(mean[0, 0]),
        contrast=contrast,
        sharpness=sharp,
        detail=sharp / (contrast * contrast + 1.0),
        dark_fraction=float(np.count_nonzero(grey <= 16)) / n,
        bright_fraction=float(np.count_nonzero(grey >= 240)) / n,
        colourfulness=colourful,
        width=int(grey.shape[1]),
        flat_fraction=_flat_fraction(tiny),
        thumb=thumbnail(grey),
        detail_grid=_detail_grid(half),
        layout=thumbnail(grey, LAYOUT_WIDTH),
        focus_grid=focus_cells(grey if focus is None else focus, *FOCUS_GRID),
    )
