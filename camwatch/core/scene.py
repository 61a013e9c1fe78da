"""A camera's learned scene: its static background, which parts of it are stable, and how a view sits on it.

Why: one 128-px embedding cannot tell "something big is in the scene" from
"the view changed". A moved, zoomed or tilted camera moves **all** of its
static structure; a lorry filling half the view hides some of it but moves
none. So a camera learns, from its reference and the views of its first
checks that still aligned with it (calibration), a background (the
per-pixel median of those views: passing people and cars vanish) and a map
of which cells of it are textured and stable (walls, kerbs, road markings)
rather than busy (lanes, doors, trees). A view is then judged by those cells:

* ``aligned``: the 80th percentile, over the stable cells, of the gradient
  correlation between the view and the background (after a global shift of
  at most ``MAX_SHIFT`` px, so vibration is forgiven). Traffic lowers it in
  the cells it hides; a moved camera lowers it everywhere.
* ``cover``: the largest connected region of textured cells whose texture is
  gone and whose structure no longer aligns, as a share of the textured
  cells: a cover near the lens is out of focus, wherever it sits.
* ``plain``: the largest connected region of textured cells that no longer
  align and that turned one colour (each cell's mean grey within
  ``PLAIN_GREY`` of its neighbour's in the region), as a share of the textured
  cells: a board, a cloth or a hand held in front of the lens keeps its grain
  but is one colour across, where a car or a crowd that hides as much has
  windows, wheels, faces and shadows that break it up.
* ``unexplained``: the largest one-colour region (as ``plain``) of cells, textured
  or not, whose mean grey the view's global change of light does not explain,
  as a share of all cells. Light, exposure, fog, dusk and IR map the
  background's cell greys onto the view's along one rising line (fitted to the
  half of the cells it fits best); a thing held over a white wall, the sky or
  the asphalt is a patch off that line, where ``plain`` sees nothing because
  no texture was there to lose. A textured cell counts only once it no longer
  aligns. A region whose bordering textured cells mostly still align and moved
  off the line the same way is left out: a shadow falls across the wall and
  the structure beside it alike, a thing in front hides that structure.
* ``veiled``: the largest connected region of the focus grid's cells whose
  structure the view hides, whose Laplacian is much less heavy-tailed than
  that of the cells still in view (``VEILED_TAIL``) and whose local contrast
  fell from the background's there (``VEILED_CONTRAST``) or whose Laplacian
  has no edge left in it at all (``VEILED_GRAIN``), as a share of the grid. A
  cloth, a bag or a hand at the lens keeps some grain and shading, so its
  cells neither lose their texture (``cover``) nor turn one colour
  (``plain``), but they are out of focus and duller than the scene they hide,
  or, where they bring contrast (a shaded board over a dim wall), edgeless;
  people and cars bring their own edges and contrast.
* ``glare``: the largest connected region of cells blown out (white) in the
  view that were not in the background, and that were darker there than
  cells the view still shows unblown, as a share of all cells. A light shone
  into the lens adds light: it blows out dark and bright parts alike in one
  patch, and brightens what is around it. A brighter exposure, a sunnier hour
  or an IR switch maps grey levels monotonically, so it blows out the
  background's brightest parts first and counts nothing here; a white car
  leaves what is beside it as it was.
* ``soft`` and ``contrast``: the median change (log) of fine detail per unit
  of local contrast, and of local contrast, over the background's most
  detailed cells of the focus grid (``vision.stats.ViewStats.focus_grid``,
  measured on the view halved to at most 960 px, where a real focus-ring turn
  shows) that are still in view (their layout cells still align). A
  defocused lens lowers detail in nearly every such cell together while
  their contrast stays; fog and haze lower both. A crowd or a lorry hides
  detailed cells behind smoother things: those are left out, so a busy
  camera is judged by the background it still shows.
* ``soft_whole`` and ``contrast_whole``: the same over all the detailed cells,
  hidden ones too: a soft thing over part of the view (a smear, a blurred
  cover) lowers them where ``soft`` leaves its cells out.
* ``edges`` and ``edges_whole``: the median change (log) of the Laplacian's
  peaks per unit contrast over the same cells: a blur lowers them with the
  detail, a starved encoder or a camera's denoiser wipes faint texture and
  keeps the strong edges' peaks (``focus_cells``).
* ``veil``: how much less heavy-tailed the Laplacian is in the focus cells
  whose structure the view hides than in those it still shows (each cell's
  peaks over its mean detail, half the log of the Laplacian's kurtosis; the
  median of each side). A thing at the lens is out of focus: what is left in
  its cells is the sensor's noise, whose Laplacian is Gaussian (0.55), while
  people, cars and the scene behind them have edges, as sharp as the cells
  still in view. A crowd's veil is about 0, a cover's 0.3 to 1.
* ``dulled``: how much less heavy-tailed the Laplacian of the cells still in
  view is than the background's was there: a soft thing that leaves only a
  rim of the view blurs the rim too, where the cells hidden and shown are
  then alike.
* ``hidden_contrast``: the median over the hidden cells of the view's log
  local contrast minus the background's. Things in the scene bring their
  own contrast; a thing at the lens is out of focus and has less. Grain,
  which drowns ``veil`` and raises ``dulled``, leaves this alone.
* ``turned`` and ``zoomed`` (``turn``): the rotation (degrees) and zoom of the
  one global move that the view's stable patches follow, each patch's shift
  found by phase correlation with the background's (weighted to the coarse
  frequencies, ``_PATCH_BAND``). A camera knocked by a
  degree or two keeps most of its structure near its place, so ``aligned``
  barely moves, but every stable patch moves along the turn; traffic and
  vibration move patches each their own way or not at all. None when fewer
  than half of the patches are found again or fit one move. A turn or zoom
  that takes the outer patches beyond their reach is found in a second pass
  (``turn_again``): the view moved back by what the inner patches give.
* ``warped`` (``warp``, only where ``turned`` is None): the largest move,
  less a shift, of one smooth field (affine plus keystone) that the stable
  patches follow after the view is moved back by a first fit, as a share of
  the width: a camera tipped up or down, or turned or zoomed too far for
  ``turn``'s patches to find.
* ``shifted``: the shift of the centre that ``turn``'s or ``warp``'s fit
  found, or for a pan beyond the patches' reach, the whole layout's
  (``_panned``), as a share of the width: a camera panned or tipped.
* ``displaced`` (``displaced``, measured only when the decision asks): the
  best ``aligned`` of the view moved back by a global zoom, rotation and
  shift, moves within vibration left out. A moved camera's structure is
  found again elsewhere, better aligned than in place; traffic that hides
  the structure leaves it best where it was.

The background is re-derived from what the reference store keeps (each
reference's statistics and the statistics of its calibration views), so
nothing here is stored on its own. The decision (``decision.py``) holds the
thresholds on these cues, and the per-camera bounds come from the camera's
own calibration views (``Background.focus_spread``). Pure numpy and OpenCV;
the measurement choices below were made on cases from footage/tune
(docs/evaluation.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

from camwatch.core import structure

#: Width (px) of the grey layout image each view's statistics carry (``ViewStats.layout``): at
#: 96 px a moved view's best cells still correlated up to 0.88 on footage/tune, at 160 px 0.80.
LAYOUT_WIDTH = 160
#: Cell columns of the layout grid (rows follow the aspect, at least ``_MIN_ROWS``): 10 px cells.
CELL_COLUMNS = 16
_MIN_ROWS = 3
#: Largest global shift (px at ``LAYOUT_WIDTH``) forgiven as vibration before cells are compared.
MAX_SHIFT = 1.5
#: Gaussian smoothing (px) before gradients, so a sub-pixel jitter does not decorrelate fine texture.
_GRAD_SIGMA = 1.0
#: A background cell is textured when its mean squared gradient (standardised grey, std 50) is above this.
TEXTURED_ENERGY = 40.0
#: A textured cell is stable when at least 3 in 4 of the learning views correlate with it above this.
STABLE_CORRELATION = 0.5
_STABLE_QUANTILE = 0.25
#: Fewer stable cells than this and the textured cells count as stable (a reference alone, a busy scene).
_MIN_STABLE = 4
#: ``aligned`` is this percentile of the stable cells' correlations.
ALIGNED_QUANTILE = 0.8
#: A cell has lost its texture when its gradient energy fell below this share of the background's.
LOST_ENERGY = 0.15
#: Neighbouring hidden cells whose mean grey (0-255) differs by less than this are one colour (``plain``):
#: footage/tune and stress-tune cases, docs/evaluation.md.
PLAIN_GREY = 6.0
#: ``unexplained``: the global change of light is fitted to this share of the cells, in this many rounds,
#: its slope within these bounds...
_TONE_KEEP = 0.5
_TONE_ROUNDS = 4
_TONE_SLOPE = (0.25, 4.0)
#: ...and a cell is off it by more than this many times the fit's spread and this many grey levels.
_TONE_SPREADS = 4.0
_TONE_GREY = 15.0
#: A region is not counted when over this share of the textured cells around it still align and are off the
#: line the same way: the light changed over the structure there too (a shadow cast across a wall and the
#: things beside it), where a thing in front of it would hide that structure.
_LIT_SHARE = 0.35
#: A layout pixel at or above this grey is blown out (255 at full size, averaged down).
BLOWN_GREY = 248
#: A cell is blown out when more than this share of its pixels are...
BLOWN_SHARE = 0.5
#: ...and was not in the background when less than this share of them were.
_WAS_BLOWN = 0.2
#: A newly blown cell counts as glare when the background there was darker than this quantile of
#: the background under the view's unblown cells (a monotone change of light blows out none such).
_GLARE_RANK = 0.9
#: ...and when the unblown cells next to its patch brightened by at least this many grey levels
#: more than the rest of the view did, and those one cell further out brightened too, by less
#: (light fading with distance). footage/tune and train stress cases: benign blown patches over
#: 0.04 of the view at most 24 next to the patch with the next ring not darker, glare mostly
#: 30-100.
GLARE_HALO = 30.0
#: The focus grid (``vision.stats.ViewStats.focus_grid``): columns, rows.
FOCUS_GRID = (12, 8)
#: ``veiled``: a hidden focus cell is out of focus when its Laplacian's tail lies this far below the median
#: of the cells still in view (half the log of the kurtosis: a sharp scene ~1.2-1.6, Gaussian grain 0.55)...
VEILED_TAIL = 0.3
#: ...and its local contrast fell at least this much (log) below the background's there. footage/tune,
#: train and stress-tune/-train cases: 0.25-0.4 and 0.1-0.15 decide them alike (docs/evaluation.md).
VEILED_CONTRAST = 0.1
#: ...or, whatever its contrast did, its tail lies this much below them: a Laplacian with no edge in it, as
#: of rounding noise (0.3) or grain (0.55) on a flat or shaded surface, where a scene in focus keeps 1.2-1.6.
#: footage/tune, train and stress-tune/-train cases: 0.8 and above add no false alarm, 0.7 adds parked
#: vehicles (docs/evaluation.md).
VEILED_GRAIN = 0.9
#: Fewer detailed cells still in view than this and ``soft`` is judged on all of them.
_MIN_SEEN = 8
#: The focus grid's cells judged for focus: those above this quantile of the background's focus.
_DETAILED_QUANTILE = 0.4


def _grid(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    return CELL_COLUMNS, max(_MIN_ROWS, round(CELL_COLUMNS * h / w))


def _mid(values: np.ndarray) -> float:
    """``float(np.median(values))`` by one sort: for the few dozen cells of a check's medians that is a
    fifth of ``np.median``'s time, which its checks and partition dominate at that size. NaN (any, or
    no values) gives NaN, as np.median does."""
    v = np.sort(values, axis=None)
    n = v.size
    if n == 0 or (v.dtype.kind == "f" and np.isnan(v[-1])):
        return float("nan")
    m = n // 2
    if n % 2:
        return float(v[m])
    if v.dtype.kind != "f":            # np.median averages integers in double
        v = v[m - 1:m + 1].astype(np.float64)
        m = 1
    return float((v[m - 1] + v[m]) / 2)


def cell_bounds(h: int, w: int, cols: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid's row and column boundaries, first to last pixel (rows + 1 and cols + 1 of them)."""
    return (np.array([h * j // rows for j in range(rows + 1)]), np.array([w * i // cols for i in range(cols + 1)]))


def _cell_means(x: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Each cell's mean. Where the cells tile the image exactly (a 160-px layout of any common aspect:
    10-px cells), OpenCV's area resize gives the block means, at a seventh of the time of two
    ``reduceat``; the results agree to float32 rounding (a few parts in 10^7)."""
    h, w = x.shape
    if h % rows == 0 and w % cols == 0 and x.dtype in (np.float32, np.float64):
        return np.asarray(cv2.resize(x, (cols, rows), interpolation=cv2.INTER_AREA), np.float64)
    ys, xs = cell_bounds(h, w, cols, rows)
    sums = np.add.reduceat(np.add.reduceat(x, ys[:-1], axis=0), xs[:-1], axis=1)
    return np.asarray(sums / (np.diff(ys)[:, None] * np.diff(xs)[None, :]), np.float64)


def _band_sums(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Each cell's sum of ``x`` (a grey or float32 plane), in double, for cells bounded by ``ys`` and ``xs``.

    Each band of rows is summed down its columns by OpenCV, then the columns are summed per cell.
    Summed-area tables in double, which this replaces, wrote two full-size 64-bit planes per call
    and freed again: in a loop of their own, for one 960 x 540 grey (a 1080p view's focus grid) 15
    against 1.3 ms, for 640 x 360 0.9 against 0.7 ms. The grids of 30 clips' frames agree exactly."""
    bands = [cv2.reduce(x[a:b], 0, cv2.REDUCE_SUM, dtype=cv2.CV_64F) for a, b in zip(ys[:-1], ys[1:])]
    return np.asarray(np.add.reduceat(np.vstack(bands), xs[:-1], axis=1), np.float64)


def _median(images: Sequence[np.ndarray]) -> np.ndarray:
    """The per-pixel median of same-sized images, exactly as ``np.median(np.stack(images), axis=0)``
    (images without NaN).

    A scene learns again from its reference and up to ``learn_views`` views, every few checks, and
    takes two of these medians each time. For so few images a sorting network of whole-image
    minimums and maximums (odd-even transposition) is an eighth of the time of sorting each
    pixel's values (9 layouts of 160 x 90: 0.28 against 2.4 ms)."""
    n = len(images)
    if n > _NETWORK_MAX:
        ordered = np.sort(np.stack(images), axis=0)
        lo, hi = ordered[(n - 1) // 2], ordered[n // 2]
    else:
        a = [np.array(im, copy=True) for im in images]
        spare = np.empty_like(a[0])
        for r in range(n):
            for i in range(r % 2, n - 1, 2):
                np.minimum(a[i], a[i + 1], out=spare)
                np.maximum(a[i], a[i + 1], out=a[i + 1])
                a[i], spare = spare, a[i]
        lo, hi = a[(n - 1) // 2], a[n // 2]
    if n % 2:
        return np.asarray(hi)
    return np.asarray((lo + hi) / lo.dtype.type(2))


#: Up to this many images ``_median`` sorts by a network of whole-image comparisons.
_NETWORK_MAX = 16


def _gradients(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    soft = cv2.GaussianBlur(img, (0, 0), _GRAD_SIGMA)
    return cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)


def _steady(view: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """``view`` moved back by its global shift against ``onto`` when that shift is vibration-sized."""
    # phaseCorrelate may overwrite its inputs with windowed copies (OpenCV 5): pass copies.
    (dx, dy), _ = cv2.phaseCorrelate(onto.copy(), view.copy())
    if not (abs(dx) <= MAX_SHIFT and abs(dy) <= MAX_SHIFT) or (dx == 0 and dy == 0):
        return view
    m = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
    return np.asarray(cv2.warpAffine(view, m, (view.shape[1], view.shape[0]), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))


def _compare(view: np.ndarray, background: np.ndarray,
             gradients: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, steady: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: (gradient correlation, the view's gradient energy, the background's).

    ``gradients``: the background's (x, y, cell energy) when already at hand (``_background_gradients``);
    ``steady=False``: the view is already steadied onto it (a learning view, onto the median of such views).
    """
    if steady:
        view = _steady(view, background)
    cols, rows = _grid(background.shape)
    vx, vy = _gradients(view)
    bx, by, eb = _background_gradients(background) if gradients is None else gradients
    ev = _cell_means(vx * vx + vy * vy, cols, rows)
    cross = _cell_means(vx * bx + vy * by, cols, rows)
    return cross / np.sqrt(ev * eb + 1e-6), ev, eb


def _background_gradients(background: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bx, by = _gradients(background)
    return bx, by, _cell_means(bx * bx + by * by, *_grid(background.shape))


@dataclass(frozen=True)
class FocusGrid:
    """Per cell of ``FOCUS_GRID``: log detail per unit contrast, log contrast, and log edge peaks per unit
    contrast (``focus_cells``; None in statistics measured before route 8)."""

    focus: np.ndarray
    contrast: np.ndarray
    edges: np.ndarray | None = None

    @staticmethod
    def parse(value: object) -> FocusGrid | None:
        """From the flat list a ViewStats carries (focus values, contrast values, then edge values when
        the list has all three for a ``FOCUS_GRID``); None if absent or damaged."""
        if not isinstance(value, (list, tuple)) or not value or len(value) % 2:
            return None
        try:
            a = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            return None
        if not np.all(np.isfinite(a)):
            return None
        n = FOCUS_GRID[0] * FOCUS_GRID[1]
        if len(a) == 3 * n:
            return FocusGrid(a[:n], a[n:2 * n], a[2 * n:])
        half = len(a) // 2
        return FocusGrid(a[:half], a[half:])


@dataclass(frozen=True, eq=False)
class Background:
    """What a camera learned of one reference's scene (``learn``); judged against by ``measure``.

    ``focus_changes``: each learning view's (focus change, edge-peak change or
    None) against the learned focus, over the detailed cells; the largest focus
    change is the camera's own benign spread of detail (``focus_spread``), of which
    the decision leaves out the drops it would not call a blur. ``least_aligned``:
    the lowest ``aligned`` of a calibration view against the background learned
    without it (leave one out; 1.0 with fewer than 3 views): how far the
    camera's own traffic already pulled a view that was in place. ``most_plain``:
    the largest ``plain`` of a calibration view, left out the same way (None
    with fewer than 3 views): how much one-colour surface the camera's own
    traffic already hid its structure behind. ``most_unexplained``: the same
    for ``unexplained`` (a white van that parks on the asphalt).
    """

    layout: np.ndarray | None          # standardised median grey at LAYOUT_WIDTH, or None
    textured: np.ndarray | None        # bool per layout cell
    stable: np.ndarray | None          # bool per layout cell
    focus: FocusGrid | None            # per focus cell: the views' median
    detailed: np.ndarray | None        # bool per focus cell
    focus_changes: tuple[tuple[float, float | None], ...]
    views: int
    least_aligned: float = 1.0
    grey: np.ndarray | None = None      # per layout cell: the learning views' median grey (0-255)
    blown: np.ndarray | None = None     # per layout cell: share of it blown out in that median
    most_plain: float | None = None
    most_unexplained: float | None = None
    #: The layout's gradients (x, y, energy per cell; ``_background_gradients``), made once when learned
    #: rather than at every ``measure``.
    gradients: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    #: The stable patches ``turn`` follows (``_patches``), made once when learned.
    patches: Patches | None = field(default=None, repr=False)
    #: The largest ``turned`` and ``zoomed`` of a calibration view, left out as for ``most_plain`` (0.0 with
    #: fewer than 3 views): how far the camera's own benign views already seemed to turn.
    most_turned: float = 0.0
    most_zoomed: float = 0.0
    #: The largest ``warped`` and ``shifted`` of a calibration view, left out the same way.
    most_warped: float = 0.0
    most_shifted: float = 0.0
    #: The largest ``cover`` and ``veiled`` of a calibration view, left out the same way (None with fewer than
    #: 3 views; ``veiled`` also without their focus grids).
    most_cover: float | None = None
    most_veiled: float | None = None

    @property
    def focus_spread(self) -> float:
        """The largest focus change (``soft``, absolute) among the learning views; 0 without any."""
        return max((abs(soft) for soft, _ in self.focus_changes), default=0.0)


@dataclass(frozen=True)
class SceneCues:
    """How one view sits on its camera's background (``measure``); None fields could not be judged."""

    aligned: float | None
    cover: float | None
    soft: float | None
    contrast: float | None
    glare: float | None = None
    soft_whole: float | None = None
    contrast_whole: float | None = None
    edges: float | None = None
    edges_whole: float | None = None
    plain: float | None = None
    veil: float | None = None
    dulled: float | None = None
    displaced: float | None = None
    hidden_contrast: float | None = None
    unexplained: float | None = None
    turned: float | None = None
    zoomed: float | None = None
    warped: float | None = None
    shifted: float | None = None
    veiled: float | None = None
    # Defaults: cues added after the first four, so a SceneCues made with those alone still reads.


def _greys(layouts: Sequence[object]) -> list[tuple[int, np.ndarray]]:
    """(index, layout in its own grey levels) of the layouts of the first's size (none if the first is damaged)."""
    decoded = [structure.decode_grey(t) for t in layouts]
    first = decoded[0]
    if first is None:
        return []
    return [(i, d) for i, d in enumerate(decoded) if d is not None and d.shape == first.shape]


def _steadied(views: list[np.ndarray], texts: Sequence[object] | None = None) -> list[np.ndarray]:
    """The views, each after the first moved back by its vibration-sized shift against the first.

    ``texts``: the encoded layouts the views were decoded from; then each view comes from
    ``_steadied_view``, which keeps it (a scene learns again from mostly the same views, every few checks)."""
    if texts is None or not all(isinstance(t, str) for t in texts):
        return [views[0]] + [_steady(v, views[0]) for v in views[1:]]
    return [views[0]] + [_steadied_view(texts[0], t) for t in texts[1:]]


@functools.lru_cache(maxsize=64)
def _steadied_view(first: str, text: str) -> np.ndarray:
    """The layout encoded in ``text`` steadied onto ``first``'s, read-only; the last 64 are kept (3.7 MB).

    Kept by the texts' value, not their identity: the store hands out new string objects for the same
    reference after each write. Only called with texts that decode (``_greys`` kept them)."""
    view = _steady(_standardised(text), _standardised(first))
    view.flags.writeable = False
    return view


def _standardised(text: object, grey: np.ndarray | None = None) -> np.ndarray:
    """The layout in ``text`` standardised as float32, from the decode cache when it has it (``grey``: the
    layout decoded, for a text that is not a string)."""
    known = structure.decode(text) if isinstance(text, str) else None
    if known is not None:
        return known.astype(np.float32, copy=False)
    assert grey is not None, "a layout that does not decode has no standardised view"
    return structure.standardise(grey).astype(np.float32)


def _blown(grey: np.ndarray, cols: int, rows: int) -> np.ndarray:
    return _cell_means((grey >= BLOWN_GREY).astype(np.float32), cols, rows)


def learn(layouts: Sequence[object], focus_grids: Sequence[object], calibrated: Background | None = None) -> Background:
    """A background from a reference's statistics (first) and its calibration views'.

    ``layouts``: each view's encoded layout (``ViewStats.layout``); ``focus_grids``:
    each view's ``ViewStats.focus_grid``. Views of another size than the
    reference's, or without them, are left out; a reference alone gives a
    background whose textured cells all count as stable. ``calibrated``, when
    given, is the scene calibration learned, whose ``least_aligned`` and
    ``most_plain`` are kept instead of measured: leaving each view out in turn
    costs a background per view, paid once at calibration, not each time the
    scene learns again from later views.
    """
    usable = _greys(layouts)
    greys = [g for _, g in usable]
    texts = [layouts[i] for i, _ in usable]
    views = [_standardised(t, g) for t, g in zip(texts, greys)]
    layout = textured = stable = grey = blown = gradients = patches = None
    least, most_plain, most_unexplained, most_turned, most_zoomed, most_warped, most_shifted, most_cover, \
        most_veiled = (1.0, None, None, 0.0, 0.0, 0.0, 0.0, None, None) if calibrated is None else \
        (calibrated.least_aligned, calibrated.most_plain, calibrated.most_unexplained, calibrated.most_turned,
         calibrated.most_zoomed, calibrated.most_warped, calibrated.most_shifted, calibrated.most_cover,
         calibrated.most_veiled)
    if views:
        steadied = _steadied(views, texts)
        layout, textured, stable, gradients = _learn_layout(views, steadied)
        patches = _patches(layout, stable)
        if len(views) >= 3 and calibrated is None:
            own_grids = [FocusGrid.parse(focus_grids[i]) for i, _ in usable] \
                if len(focus_grids) == len(layouts) else None
            own = [m for m in _left_out(views, steadied, greys=greys, grids=own_grids)[1:] if m is not None]
            least = min((m.aligned for m in own), default=1.0)
            most_plain = max((m.plain for m in own), default=0.0)
            most_unexplained = max((m.unexplained for m in own), default=0.0)
            most_turned = max((m.turned for m in own), default=0.0)
            most_zoomed = max((m.zoomed for m in own), default=0.0)
            most_warped = max((m.warped for m in own), default=0.0)
            most_shifted = max((m.shifted for m in own), default=0.0)
            most_cover = max((m.cover for m in own), default=0.0)
            veiled = [m.veiled for m in own if m.veiled is not None]
            most_veiled = max(veiled) if veiled else None
        median = _median(greys) if len(greys) > 1 else greys[0]
        cols, rows = _grid(median.shape)
        grey, blown = _cell_means(median, cols, rows), _blown(median, cols, rows)
    grids = [g for g in (FocusGrid.parse(v) for v in focus_grids) if g is not None]
    focus = detailed = None
    changes: tuple[tuple[float, float | None], ...] = ()
    if grids and all(len(g.focus) == len(grids[0].focus) for g in grids):
        focus = _median_grid(grids)
        detailed = focus.focus > np.quantile(focus.focus, _DETAILED_QUANTILE)
        changes = tuple((_mid((g.focus - focus.focus)[detailed]),
                         None if g.edges is None or focus.edges is None
                         else _mid((g.edges - focus.edges)[detailed])) for g in grids)
    return Background(layout, textured, stable, focus, detailed, changes, len(views), least, grey, blown, most_plain,
                      most_unexplained, gradients, patches, most_turned, most_zoomed, most_warped,
                      most_shifted, most_cover, most_veiled)


def agreement(layouts: Sequence[object], which: Sequence[int] | None = None) -> list[float | None]:
    """Each view's ``aligned`` on the background learned from all the others (the first is the reference);
    with ``which``, only those views' (the rest None): each costs a background.

    Why: a reference alone cannot tell the lorry in it from the kerb beside it,
    so on a camera filled with traffic every early view looks moved against it.
    The views together can: the road markings sit where they were in each of
    them while the traffic moves on, so a view of the same scene aligns with
    the background the others make, and a turned camera's view does not.
    None for a view that cannot be judged (damaged, of another size than the
    first) and for every view when fewer than three can be.
    """
    usable = _greys(layouts)
    out: list[float | None] = [None] * len(layouts)
    if len(usable) < 3:
        return out
    views = [structure.standardise(d).astype(np.float32) for _, d in usable]
    steadied = _steadied(views)
    chosen = None if which is None else set(which)
    wanted = None if chosen is None else {k for k, (i, _) in enumerate(usable) if i in chosen}
    for (i, _), value in zip(usable, _left_out(views, steadied, wanted)):
        out[i] = None if value is None else value.aligned
    return out


class _LeftOut(NamedTuple):
    """A learning view's cues on the scene the other learning views make (``_left_out``)."""

    aligned: float
    plain: float
    unexplained: float
    turned: float
    zoomed: float
    warped: float
    shifted: float
    cover: float
    veiled: float | None


def _left_out(views: list[np.ndarray], steadied: list[np.ndarray], which: set[int] | None = None,
              greys: list[np.ndarray] | None = None, grids: Sequence[FocusGrid | None] | None = None
              ) -> list[_LeftOut | None]:
    """Each view's cues on the layout learned from the others (all but ``aligned`` and ``cover`` 0.0 without
    ``greys``, the views in their own grey levels, and the moves 0.0 where they cannot be judged; ``veiled``
    None without ``grids``, the views' focus grids, or where they differ); None where that layout has no
    texture, and for views not in ``which`` when given."""
    out: list[_LeftOut | None] = []
    for i in range(len(views)):
        if which is not None and i not in which:
            out.append(None)
            continue
        rest = [v for j, v in enumerate(views) if j != i]
        bg, tex, stab, gradients = _learn_layout(rest, [s for j, s in enumerate(steadied) if j != i])
        if not int(tex.sum()):
            out.append(None)
            continue
        corr, ev, eb = _compare(views[i], bg, gradients)
        cover = _cover(tex, corr, ev, eb)
        plain = unexplained = turned = zoomed = warped = shifted = 0.0
        if greys is not None:
            cells = _grid(greys[i].shape)
            means = _cell_means(greys[i], *cells)
            plain = _plain(tex, corr, means)
            others = [g for j, g in enumerate(greys) if j != i]
            unexplained = _unexplained(tex, corr, means, _cell_means(_median(others), *cells))
            turned, zoomed, warped, shifted = (m or 0.0 for m in _moves(views[i], _patches(bg, stab)))
        veiled = _veiled_left_out(i, grids, tex & (corr < STABLE_CORRELATION), tex & (corr >= STABLE_CORRELATION))
        out.append(_LeftOut(float(np.quantile(corr[stab], ALIGNED_QUANTILE)), plain, unexplained, turned, zoomed,
                            warped, shifted, cover, veiled))
    return out


def _veiled_left_out(i: int, grids: Sequence[FocusGrid | None] | None, hidden: np.ndarray, shown: np.ndarray
                     ) -> float | None:
    """``veiled`` of view ``i``'s focus grid (its hidden and shown layout cells given) on the focus the other
    views' grids make; None unless every view has a grid of one size."""
    if grids is None:
        return None
    known = [g for g in grids if g is not None]
    if len(known) != len(grids) or any(len(g.focus) != len(known[i].focus) for g in known):
        return None
    size = len(known[i].focus)
    return _veiled(known[i], _on_focus_grid(hidden, size), _on_focus_grid(shown, size),
                   _median_grid([g for j, g in enumerate(known) if j != i]))


def _median_grid(grids: Sequence[FocusGrid]) -> FocusGrid:
    """The per-cell median of same-sized focus grids (edges only when every one has them): what views learn."""
    edges = [g.edges for g in grids if g.edges is not None]
    return FocusGrid(np.median(np.stack([g.focus for g in grids]), axis=0),
                     np.median(np.stack([g.contrast for g in grids]), axis=0),
                     np.median(np.stack(edges), axis=0) if len(edges) == len(grids) else None)


def _cover(textured: np.ndarray, corr: np.ndarray, ev: np.ndarray, eb: np.ndarray) -> float:
    """``SceneCues.cover`` of a view from its cells' correlations with a background and both gradient energies."""
    lost = textured & (corr < STABLE_CORRELATION) & (ev < LOST_ENERGY * eb)
    return _largest(lost) / int(textured.sum())


def _plain(textured: np.ndarray, corr: np.ndarray, means: np.ndarray) -> float:
    """``SceneCues.plain`` of a view from its cells' correlations with a background and their mean grey."""
    hidden = textured & (corr < STABLE_CORRELATION)
    return _largest_plain(hidden, means) / int(textured.sum())


def _tone_residuals(grey: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, float]:
    """(each cell's mean grey minus what the global change of light predicts from the background's, the
    residuals' spread): the line ``means = a * grey + b`` fitted by least squares to the ``_TONE_KEEP``
    share of the cells it fits best (refitted ``_TONE_ROUNDS`` times from two starts, the better fit kept),
    so a cover over up to half the view does not bend it; its slope held within ``_TONE_SLOPE`` (light and
    fog change the contrast, they do not flatten or invert it). The spread is the kept cells' (1.4826 x their
    median absolute residual)."""
    b, v = grey.ravel().astype(np.float64), means.ravel().astype(np.float64)
    kept = max(3, int(_TONE_KEEP * len(b)))
    best: tuple[float, np.ndarray] | None = None
    # Two starts: every cell, and the cells nearest an unchanged light (a shadow over a third of the view
    # pulls the first start's line towards it, and its rounds may not let go).
    starts = (np.arange(len(b)), np.argpartition(np.abs(v - b - _mid(v - b)), kept - 1)[:kept])
    for keep in starts:
        for _ in range(_TONE_ROUNDS):
            bk, vk = b[keep], v[keep]
            bc = bk - bk.mean()
            spread = float(bc @ bc)
            slope = float(bc @ vk) / spread if spread > 1e-9 else 1.0
            slope = min(max(slope, _TONE_SLOPE[0]), _TONE_SLOPE[1])
            offset = _mid(vk - slope * bk)
            keep = np.argpartition(np.abs(v - slope * b - offset), kept - 1)[:kept]
        residuals = v - slope * b - offset
        fit = 1.4826 * _mid(np.abs(residuals[keep]))
        if best is None or fit < best[0]:
            best = (fit, residuals)
    assert best is not None
    return best[1].reshape(means.shape), best[0]


def _unexplained(textured: np.ndarray, corr: np.ndarray, means: np.ndarray, grey: np.ndarray) -> float:
    """``SceneCues.unexplained`` of a view from its cells' correlations with a background, their mean grey and
    the background's cells' mean grey: the largest region not lit through (``_LIT_SHARE``)."""
    residuals, spread = _tone_residuals(grey, means)
    far = np.abs(residuals) > max(_TONE_SPREADS * spread, _TONE_GREY)
    off = far & (~textured | (corr < STABLE_CORRELATION))
    labels, sizes = _plain_regions(off, means)
    # Structure still in place and off the line the same way: the light changed there (a shadow, a lamp).
    through = far & textured & (corr >= STABLE_CORRELATION)
    best = 0
    for k in np.argsort(sizes)[::-1]:
        if sizes[k] <= best:
            break
        region = labels == k + 1
        ring = (cv2.dilate(region.astype(np.uint8), _NEAR) > 0) & ~region & textured
        darker = _mid(residuals[region]) < 0
        lit = through & ring & ((residuals < 0) == darker)
        if int(ring.sum()) and int(lit.sum()) > _LIT_SHARE * int(ring.sum()):
            continue
        best = int(sizes[k])
    return float(best / off.size)


def _learn_layout(views: list[np.ndarray], steadied: list[np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(median layout, textured cells, stable cells, the layout's gradients) of views (the first is the
    reference)."""
    layout = _median(steadied).astype(np.float32, copy=False) if len(views) > 1 else views[0]
    gradients = _background_gradients(layout)
    textured = gradients[2] > TEXTURED_ENERGY
    correlations = np.stack([_compare(v, layout, gradients, steady=False)[0] for v in steadied])
    stable = textured & (np.quantile(correlations, _STABLE_QUANTILE, axis=0) > STABLE_CORRELATION)
    if int(stable.sum()) < _MIN_STABLE:
        stable = textured.copy()
    return layout, textured, stable, gradients


#: ``turn``: the square patches (layout px) that tile the layout, kept where at least half of a patch is
#: stable cells; with fewer than ``_MIN_PATCHES`` of them no turn is judged.
PATCH = 24
_MIN_PATCHES = 6
#: A patch's shift counts when its phase correlation peaks at least this high (1 for the same content
#: shifted whole) and the shift is at most ``_PATCH_REACH`` px: beyond, the patch shows other content.
#: Half of the patches must count, and fit the turn, for it to be judged.
_PATCH_PEAK = 0.25
_PATCH_REACH = 8.0
_HANNING = np.outer(np.hanning(PATCH), np.hanning(PATCH)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Patches:
    """The background's stable patches, as ``turn`` compares them: each one's top-left corner (layout px)
    and the conjugate spectrum of its windowed, mean-free pixels."""

    ys: np.ndarray
    xs: np.ndarray
    spectra: np.ndarray
    shape: tuple[int, int]
    #: The layout they were cut from, for ``_panned``'s global correlation.
    layout: np.ndarray


def _patches(layout: np.ndarray, stable: np.ndarray) -> Patches | None:
    h, w = layout.shape
    share = cv2.resize(stable.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    corners = [(y, x) for y in range(0, h - PATCH + 1, PATCH) for x in range(0, w - PATCH + 1, PATCH)
               if share[y:y + PATCH, x:x + PATCH].mean() >= 0.5]
    if len(corners) < _MIN_PATCHES:
        return None
    ys, xs = (np.array(v) for v in zip(*corners))
    return Patches(ys, xs, np.conj(np.fft.rfft2(_windowed(layout, ys, xs))), (h, w), layout)


def _windowed(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The patches at corners ``ys``, ``xs`` (multiples of PATCH), each made mean-free and windowed."""
    nh, nw = image.shape[0] // PATCH, image.shape[1] // PATCH
    blocks = image[:nh * PATCH, :nw * PATCH].reshape(nh, PATCH, nw, PATCH).transpose(0, 2, 1, 3)
    cut = blocks[ys // PATCH, xs // PATCH].astype(np.float32)
    return np.asarray((cut - cut.mean(axis=(1, 2), keepdims=True)) * _HANNING)


#: The 3 x 3 neighbourhood of a correlation peak, row and column offsets, for its centroid.
_AROUND_Y = np.repeat(np.array([-1, 0, 1]), 3)
_AROUND_X = np.tile(np.array([-1, 0, 1]), 3)


#: ``_patch_shifts``' answer: each patch's x and y shift, its peak's strength, whether it was found.
Shifts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


#: The patches' phase correlation keeps the spatial frequencies under about this many cycles per px (a Gaussian
#: weight of this width on the whitened cross-power spectrum, scaled so that a patch found whole still peaks
#: at 1): whitening alone raises the frequencies a soft scene (rain on the lens, haze, a low-resolution camera)
#: has only noise in to the same weight as its structure, and its patches' peaks fall under ``_PATCH_PEAK``.
#: footage/tune's sweep: turned 2 / 3 degrees found 80 / 77 % -> 98.5 / 98.5 %, zoomed 1.08 85 -> 92 %, with no
#: benign change; 0.12 gave less (docs/evaluation.md).
_PATCH_BAND = 0.2


def _band_weight(size: int, band: float) -> np.ndarray:
    """The weight of each frequency of a ``size`` x ``size`` real FFT (``rfft2``'s half plane), over its mean
    on the full plane."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    half = np.exp(-(fx ** 2 + fy ** 2) / (2 * band * band))
    full = np.concatenate([half, half[:, 1:-1][:, ::-1]], axis=1)
    return np.asarray(half / full.mean())


_BAND = _band_weight(PATCH, _PATCH_BAND)


def _patch_shifts(view: np.ndarray, patches: Patches) -> Shifts:
    """Each stable patch's shift in the view (x, y, layout px), its correlation peak's strength, and whether
    it was found (peak at least ``_PATCH_PEAK``, shift within ``_PATCH_REACH``)."""
    cross = np.fft.rfft2(_windowed(view, patches.ys, patches.xs)) * patches.spectra
    cross *= _BAND / (np.abs(cross) + 1e-9)
    surface = np.fft.irfft2(cross, s=(PATCH, PATCH))    # zero shift at [0, 0]: read centred, mod PATCH
    n, half = len(surface), PATCH // 2
    rows = np.arange(n)
    flat = surface.reshape(n, -1)
    peak = flat.argmax(axis=1)
    height = flat[rows, peak]
    py, px = (np.clip((v + half) % PATCH, 1, PATCH - 2) for v in np.divmod(peak, PATCH))
    around = surface[rows[:, None], (py[:, None] + _AROUND_Y - half) % PATCH,
                     (px[:, None] + _AROUND_X - half) % PATCH].clip(0)
    strength = around.sum(axis=1) + 1e-9
    dy = py + around @ _AROUND_Y.astype(np.float64) / strength - half
    dx = px + around @ _AROUND_X.astype(np.float64) / strength - half
    found = (height >= _PATCH_PEAK) & (np.abs(dx) <= _PATCH_REACH) & (np.abs(dy) <= _PATCH_REACH)
    return dx, dy, strength, found


def turn(view: np.ndarray, patches: Patches, shifts: Shifts | None = None) -> tuple[float, float, float] | None:
    """(rotation in degrees, zoom factor, shift of the centre in layout px) of a view's layout against the
    background's, or None when too few of its stable patches are found again.

    Why: a camera knocked by 2-3 degrees or zoomed by 5-10 % keeps most of its
    structure in view and near where it was, so ``aligned`` (the 80th percentile)
    and the embedding barely move. It moves every stable patch along one
    rotation and zoom about a point, while traffic, people, light and noise move
    patches each their own way or not at all. Each patch's shift comes from phase
    correlation with the background's; a similarity transform is fitted to them by
    least squares weighted by each peak's strength, dropping the patches it fits
    worst (a car that drove through one) twice. footage/tune and train cases: every
    benign view (crowds, parked cars, shake) under 0.6 degrees and 2.7 % zoom.
    """
    if view.shape != patches.shape:
        return None
    dx, dy, strength, found = shifts if shifts is not None else _patch_shifts(view, patches)
    n = len(dx)
    least = max(_MIN_PATCHES, (n + 1) // 2)
    if int(found.sum()) < least:
        return None
    h, w = patches.shape
    x = patches.xs[found] + PATCH / 2 - w / 2
    y = patches.ys[found] + PATCH / 2 - h / 2
    (a1, b, tx, ty), miss = _fit(_turn_terms, x, y, dx[found], dy[found], np.sqrt(strength[found]), least)
    if int((miss < 1.0).sum()) < least:
        return None                     # no one turn that half of the patches follow
    return _as_turn(a1, b, tx, ty)


def _as_turn(a1: float, b: float, tx: float, ty: float) -> tuple[float, float, float]:
    """(rotation in degrees, zoom factor, shift in layout px) of ``_turn_terms``' parameters."""
    a = 1.0 + a1
    return float(np.degrees(np.arctan2(b, a))), float(np.hypot(a, b)), float(np.hypot(tx, ty))


def turn_again(view: np.ndarray, patches: Patches, shifts: Shifts) -> tuple[float, float, float] | None:
    """``turn``'s answer for a view whose turn or zoom moved the outer patches beyond their reach, or None.

    Why: a zoom of 12 % moves a patch at the layout's edge by 10 px, past ``_PATCH_REACH``;
    the patches nearer the centre still find it. The turn fitted to those moves the
    view back, where every patch of a turned camera sits within reach again; measured
    again and fitted to the two passes' shifts together, half of all the patches must
    follow it within 1 px, as ``turn`` asks, and the view moved back must correlate
    ``_WARP_GAIN`` times as strongly as in place, as ``warp`` asks (a turn fitted to
    traffic does not move the view back onto its background), and the turn must take
    some patch beyond its reach (else ``turn`` would have found it)."""
    if view.shape != patches.shape:
        return None
    dx, dy, strength, found = shifts
    n = len(dx)
    least = max(_MIN_PATCHES, (n + 1) // 2)
    if int(found.sum()) < _MIN_PATCHES:
        return None
    h, w = patches.shape
    x = patches.xs + PATCH / 2 - w / 2
    y = patches.ys + PATCH / 2 - h / 2
    first, _ = _fit(_turn_terms, x[found], y[found], dx[found], dy[found], np.sqrt(strength[found]), _MIN_PATCHES)
    px, py = _turn_terms(x, y)
    if float(np.hypot(px @ first, py @ first).max()) <= _PATCH_REACH / 2:
        return None                     # the first fit barely moves any patch: nothing beyond reach to bring back
    again = _found_again(view, patches, _turn_terms, first, 1.0, float(strength.mean()), least)
    if again is None:
        return None
    dx2, dy2, strength2, found2 = again
    u, v = px @ first + dx2, py @ first + dy2
    (a1, b, sx, sy), miss = _fit(_turn_terms, x[found2], y[found2], u[found2], v[found2], np.sqrt(strength2[found2]),
                                 least)
    if int((miss < 1.0).sum()) < least:
        return None
    params = np.array([a1, b, sx, sy])
    if float(np.hypot(px @ params, py @ params).max()) <= _PATCH_REACH:
        return None                     # every patch was within reach: ``turn``'s to judge, and it found none
    return _as_turn(a1, b, sx, sy)


def _found_again(view: np.ndarray, patches: Patches,
                 terms: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], first: np.ndarray,
                 unit: float, strength: float, least: int) -> Shifts | None:
    """The patches' shifts in ``view`` moved back by a first fit (``_moved_back``), or None unless ``least`` of
    them are found there and they correlate ``_WARP_GAIN`` times as strongly as in place (``strength``: their
    peaks' mean strength there): a move fitted to traffic does not bring the view back onto its background."""
    again = _patch_shifts(_moved_back(view, terms, first, unit), patches)
    if int(again[3].sum()) < least or float(again[2].mean()) < _WARP_GAIN * strength:
        return None
    return again


def _moved_back(view: np.ndarray, terms: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                params: np.ndarray, unit: float) -> np.ndarray:
    """``view`` moved back by a fitted model: each pixel read where the model (``terms`` with ``params``, its
    coordinates about the centre in units of ``unit`` px) says it went."""
    h, w = view.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = terms(((gx + 0.5 - w / 2) / unit).ravel(), ((gy + 0.5 - h / 2) / unit).ravel())
    return np.asarray(cv2.remap(view, (gx.ravel() + tx @ params).reshape(h, w).astype(np.float32),
                                (gy.ravel() + ty @ params).reshape(h, w).astype(np.float32),
                                cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))


def _turn_terms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``turn``'s model: u = (a - 1) x - b y + tx, v = b x + (a - 1) y + ty, a zoom a and rotation b about the
    centre and a shift; the x and y displacements' terms in (a - 1, b, tx, ty)."""
    zero, one = np.zeros_like(x), np.ones_like(x)
    return np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)


def _fit(terms: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray,
         u: np.ndarray, v: np.ndarray, weight: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    """(the model's parameters, each point's miss in px): the displacements (u, v) at (x, y) fitted by weighted
    least squares to ``terms``' model, refitted twice without the points it misses worst (a car that drove
    through a patch) while ``least`` points remain."""
    keep = np.ones(len(x), bool)
    tx, ty = terms(x, y)
    for _ in range(3):
        w2 = np.concatenate([weight[keep], weight[keep]])
        design = np.concatenate([tx[keep], ty[keep]]) * w2[:, None]
        params = np.linalg.lstsq(design, np.concatenate([u[keep], v[keep]]) * w2, rcond=None)[0]
        miss = np.hypot(u - tx @ params, v - ty @ params)
        again = miss < max(1.0, 2.5 * float(np.median(miss[keep])))
        if int(again.sum()) < least or np.array_equal(again, keep):
            break
        keep = again
    return params, miss


#: ``warp``: at least this many patches (and half of them) must be found, and fit, in its second pass: its
#: field has 8 parameters; the first pass fits what it finds if ``_WARP_FIRST`` or more are.
_WARP_PATCHES = 12
_WARP_FIRST = 10
#: Moved back by the first field, the view's patches must correlate with the background's this many times
#: as strongly (their peaks' mean strength) as in place: a moved camera's view does (footage/tune's sweep:
#: tilted 8 %, 1.13-1.7; zoomed 1.08 and 1.12, 1.17-1.8), a field fitted to traffic over part of the view
#: does not (footage/tune and train cases: every benign view 1.044 at most); about midway.
_WARP_GAIN = 1.1


def _field_terms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The x and y displacements' terms in the 8 parameters of ``warp``'s field (x, y in half-widths about
    the centre): an affine map and the first order of a perspective one (a camera tipped: keystone)."""
    zero, one = np.zeros_like(x), np.ones_like(x)
    return (np.stack([x, y, one, zero, zero, zero, -x * x, -x * y], 1),
            np.stack([zero, zero, zero, x, y, one, -x * y, -y * y], 1))


def warp(view: np.ndarray, patches: Patches, shifts: Shifts | None = None) -> tuple[float, float] | None:
    """(how far a view's stable structure moved other than by a shift: the largest displacement, less the
    shift, of one smooth field (affine plus keystone) that the stable patches follow; the shift of the
    centre), each as a share of the layout's width; None when too few patches are found again or fit it.

    Why: ``turn`` fits a rotation and zoom to patch shifts of a few px. A camera tipped
    up or down (the far edge narrows) fits no rotation, and a zoom of 10 % or a turn of
    3 degrees moves the edge patches beyond what one patch can find, so ``turn`` gives
    None there. A first pass fits this field to the patches it does find; the view is
    moved back by it and measured again, where every patch of a moved camera now sits
    within reach, and the field is fitted again with the second pass's shifts added.
    A crowd or a stranger's view gives no field that half of the patches follow, and a
    field fitted to traffic that fills part of the view does not move the view back to
    its background (``_WARP_GAIN``). With 8 parameters a field needs ``_WARP_PATCHES``
    patches at least. footage/tune and train cases: no benign view has a field (without
    the gain rule, every one under 1.4 px of 160, 0.009).
    """
    if view.shape != patches.shape or len(patches.ys) < _WARP_PATCHES:
        return None
    dx, dy, strength, found = shifts if shifts is not None else _patch_shifts(view, patches)
    if int(found.sum()) < _WARP_FIRST:
        return None
    h, w = patches.shape
    half_width = w / 2.0
    x = (patches.xs + PATCH / 2 - w / 2) / half_width
    y = (patches.ys + PATCH / 2 - h / 2) / half_width
    first, _ = _fit(_field_terms, x[found], y[found], dx[found], dy[found], np.sqrt(strength[found]), _WARP_FIRST)
    least = max(_WARP_PATCHES, (len(dx) + 1) // 2)
    again = _found_again(view, patches, _field_terms, first, half_width, float(strength.mean()), least)
    if again is None:
        return None
    dx2, dy2, strength2, found2 = again
    px, py = _field_terms(x, y)
    u, v = px @ first + dx2, py @ first + dy2            # each patch's whole shift: the first field's and the rest
    params, miss = _fit(_field_terms, x[found2], y[found2], u[found2], v[found2], np.sqrt(strength2[found2]), least)
    fits = miss < 1.0
    if int(fits.sum()) < least:
        return None
    fx, fy = px[found2][fits] @ params - params[2], py[found2][fits] @ params - params[5]
    return float(np.hypot(fx, fy).max()) / w, float(np.hypot(params[2], params[5])) / w


def _moves(view: np.ndarray, patches: Patches | None) -> tuple[float | None, float | None, float | None,
                                                                 float | None]:
    """(``turned``, ``zoomed``, ``warped``, ``shifted``): ``turn``'s rotation and zoom as sizes (degrees, share)
    and its shift (share of the width), or where ``turn`` finds none, ``warp``'s displacement and shift; None
    where not judged."""
    if patches is None or view.shape != patches.shape:
        return None, None, None, None
    shifts = _patch_shifts(view, patches)                # the first pass of both
    moved = turn(view, patches, shifts)
    if moved is None:
        moved = turn_again(view, patches, shifts)
    if moved is not None:
        return abs(moved[0]), abs(moved[1] - 1.0), None, moved[2] / patches.shape[1]
    field = warp(view, patches, shifts)
    if field is not None:
        return None, None, field[0], field[1]
    return None, None, None, _panned(view, patches)


#: ``_panned`` looks no further when the whole layout's shift is under this (layout px): a vibration.
_PAN_LEAST = 2.0


def _panned(view: np.ndarray, patches: Patches) -> float | None:
    """The shift (share of the width) of a view (of the patches' shape) panned too far for its patches, or None.

    Why: a pan of 5 % or more moves every patch out of its own reach, so neither
    ``turn`` nor ``warp`` finds enough of them. The whole layout's phase correlation with
    the background's gives one shift; moved back by it, the view's stable patches must
    sit in place again, half of them within 1 px, as ``turn`` asks. Traffic or a crowd
    may pull the global peak anywhere; moved back, their views find no such half."""
    h, w = patches.shape
    (sx, sy), _ = cv2.phaseCorrelate(patches.layout.astype(np.float64), view.astype(np.float64))
    if np.hypot(sx, sy) < _PAN_LEAST:
        return None
    back = cv2.warpAffine(view, np.array([[1, 0, -sx], [0, 1, -sy]], np.float32), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
    dx, dy, _, found = _patch_shifts(back, patches)
    fits = found & (np.hypot(dx, dy) < 1.0)
    if int(fits.sum()) < max(_MIN_PATCHES, (len(dx) + 1) // 2):
        return None
    return float(np.hypot(sx + np.median(dx[fits]), sy + np.median(dy[fits]))) / w


def measure(layout: object, focus_grid: object, background: Background) -> SceneCues:
    """The cues of one view (its encoded layout and focus grid) on ``background``."""
    aligned = cover = soft = contrast = glare = soft_whole = contrast_whole = edges = edges_whole = plain = None
    veil = dulled = hidden_contrast = visible = hidden = shown = unexplained = turned = zoomed = warped = shifted = None
    veiled = None
    raw = structure.decode_grey(layout)
    bg = background.layout
    if raw is not None and bg is not None and background.textured is not None \
            and background.stable is not None and int(background.textured.sum()):
        if raw.shape != bg.shape:
            raw = np.asarray(cv2.resize(raw, (bg.shape[1], bg.shape[0]), interpolation=cv2.INTER_AREA))
        view = structure.standardise(raw).astype(np.float32)
        turned, zoomed, warped, shifted = _moves(view, background.patches)
        corr, ev, eb = _compare(view, bg, background.gradients)
        aligned = float(np.quantile(corr[background.stable], ALIGNED_QUANTILE))
        visible = corr >= STABLE_CORRELATION
        hidden, shown = background.textured & ~visible, background.textured & visible
        cover = _cover(background.textured, corr, ev, eb)
        means = _cell_means(raw, *_grid(bg.shape))          # the view's mean grey per cell, for both
        plain = _plain(background.textured, corr, means)
        if background.grey is not None and background.grey.shape == means.shape:
            unexplained = _unexplained(background.textured, corr, means, background.grey)
        if background.grey is not None and background.blown is not None:
            glare = _glare(raw, means, background.grey, background.blown)
    grid = FocusGrid.parse(focus_grid)
    if grid is not None and background.focus is not None and background.detailed is not None \
            and len(grid.focus) == len(background.focus.focus):
        detailed = background.detailed
        focus = grid.focus - background.focus.focus
        local = grid.contrast - background.focus.contrast
        peaks = None if grid.edges is None or background.focus.edges is None \
            else grid.edges - background.focus.edges
        soft_whole, contrast_whole = _mid(focus[detailed]), _mid(local[detailed])
        seen = detailed if visible is None else detailed & _on_focus_grid(visible, len(detailed))
        if int(seen.sum()) < _MIN_SEEN:
            seen = detailed
        soft, contrast = _mid(focus[seen]), _mid(local[seen])
        if peaks is not None:
            edges, edges_whole = _mid(peaks[seen]), _mid(peaks[detailed])
        if grid.edges is not None and hidden is not None and shown is not None:
            behind, in_view = _on_focus_grid(hidden, len(grid.focus)), _on_focus_grid(shown, len(grid.focus))
            veil, dulled, hidden_contrast = _veil(grid, behind, in_view, background.focus)
            veiled = _veiled(grid, behind, in_view, background.focus)
    return SceneCues(aligned, cover, soft, contrast, glare, soft_whole, contrast_whole, edges, edges_whole, plain,
                     veil, dulled, hidden_contrast=hidden_contrast, unexplained=unexplained, turned=turned,
                     zoomed=zoomed, warped=warped, shifted=shifted, veiled=veiled)


def _veiled(grid: FocusGrid, behind: np.ndarray, seen: np.ndarray, learned: FocusGrid) -> float | None:
    """``SceneCues.veiled`` from a view's focus grid, its focus cells hidden and still in view (``_on_focus_grid``)
    and the background's focus grid; None where no cell is still in view or the view's grid lacks edges."""
    if grid.edges is None or len(grid.focus) != FOCUS_GRID[0] * FOCUS_GRID[1] \
            or len(learned.focus) != len(grid.focus) or not seen.any():
        return None
    tail = grid.edges - grid.focus
    mid = _mid(tail[seen])
    soft = behind & (tail <= mid - VEILED_TAIL) & ((grid.contrast - learned.contrast <= -VEILED_CONTRAST)
                                                  | (tail <= mid - VEILED_GRAIN))
    columns, rows = FOCUS_GRID
    return _largest(soft.reshape(rows, columns)) / len(tail)


def _veil(grid: FocusGrid, behind: np.ndarray, seen: np.ndarray, learned: FocusGrid | None
          ) -> tuple[float | None, float | None, float | None]:
    """(``SceneCues.veil``, ``SceneCues.dulled``, ``SceneCues.hidden_contrast``) from a view's focus grid, its
    focus cells hidden and still in view (``_on_focus_grid``) and the background's focus grid; None where a
    side is empty or the background lacks what the cue compares with."""
    assert grid.edges is not None
    tail = grid.edges - grid.focus            # log(sqrt(mean L^4) / mean L^2): half the log of L's kurtosis
    if not seen.any():
        return None, None, None
    veil = _mid(tail[seen]) - _mid(tail[behind]) if behind.any() else None
    if learned is None:
        return veil, None, None
    hidden_contrast = _mid(grid.contrast[behind] - learned.contrast[behind]) if behind.any() else None
    if learned.edges is None:
        return veil, None, hidden_contrast
    return veil, _mid((learned.edges - learned.focus)[seen] - tail[seen]), hidden_contrast


#: The global moves ``displaced`` tries (each with the shift phase correlation finds after it): zooms
#: and rotations (degrees) as a camera knocked or turned shows them; a shift alone is the first.
_MOVES = tuple((scale, angle) for scale in (1.0, 0.75, 0.87, 1.15, 1.33) for angle in (0.0, -10.0, -5.0, 5.0, 10.0))
#: A shift (layout px) within this, unzoomed and unrotated, is vibration that steadying left (it
#: takes out MAX_SHIFT): not a move.
_VIBRATION = 2 * MAX_SHIFT
#: Half steps tried around the grid's best move (zoom factor, degrees).
_REFINE = tuple((z, t) for z in (1 / 1.07, 1.0, 1.07) for t in (-2.5, 0.0, 2.5) if (z, t) != (1.0, 0.0))
#: A move must leave this many stable cells inside the view to be judged.
_MIN_MOVED_CELLS = _MIN_STABLE


def displaced(layout: object, background: Background, above: float | None = None) -> float | None:
    """The best ``aligned`` of a view (its encoded layout) moved back onto ``background`` by a global move.

    Why: a view aligned below its camera's line is either moved (its structure is
    all elsewhere) or in place with much of its structure hidden (a crowd, a queue
    of cars, a cover). Moved back by the right zoom, rotation and shift, a moved
    camera's structure aligns again, better than in place; a hidden one aligns
    nowhere better. Each of 25 zooms and rotations, then 8 half steps around the
    best of them, gets the shift that phase correlation finds after it; a move
    within vibration counts as in place.
    ``above``: stop at the first move that aligns better than this (the decision
    needs no more). ~23 ms at 160 px when every move is tried (``python
    benchmarks/bench_structure.py``): the decision asks only for views its other
    cues leave undecided. None when the view or the background cannot be compared.
    """
    raw = structure.decode_grey(layout)
    bg = background.layout
    if raw is None or bg is None or background.stable is None or not int(background.stable.sum()):
        return None
    if raw.shape != bg.shape:
        raw = np.asarray(cv2.resize(raw, (bg.shape[1], bg.shape[0]), interpolation=cv2.INTER_AREA))
    view = _steady(structure.standardise(raw).astype(np.float32), bg)
    h, w = view.shape
    cols, rows = _grid(bg.shape)
    gradients = background.gradients if background.gradients is not None else _background_gradients(bg)
    corners = _corners(w, h, cols, rows)

    def moved_back(scale: float, angle: float) -> float | None:
        """``aligned`` of the view moved back by this zoom and rotation and the shift found after them."""
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        turned = view if scale == 1.0 and angle == 0.0 else \
            cv2.warpAffine(view, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        (dx, dy), _ = cv2.phaseCorrelate(bg.copy(), np.ascontiguousarray(turned, np.float32))
        if scale == 1.0 and angle == 0.0 and abs(dx) <= _VIBRATION and abs(dy) <= _VIBRATION:
            return None                     # in place, or within vibration: what ``aligned`` measured
        m[0, 2] -= dx
        m[1, 2] -= dy
        back = cv2.warpAffine(view, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cells = background.stable & _inside(m, corners, w, h)
        if int(cells.sum()) < _MIN_MOVED_CELLS:
            return None
        corr = _compare(back, bg, gradients, steady=False)[0]
        return float(np.quantile(corr[cells], ALIGNED_QUANTILE))

    best: float | None = None
    best_move = (1.0, 0.0)
    # A move between the grid's steps aligns only partly at its nearest step: then half steps around it.
    for half_steps in (False, True):
        moves = [(best_move[0] * zoom, best_move[1] + turn) for zoom, turn in _REFINE] if half_steps else _MOVES
        for scale, angle in moves:
            found = moved_back(scale, angle)
            if found is not None and (best is None or found > best):
                best, best_move = found, (scale, angle)
                if above is not None and best > above:
                    return best
    return best


def _corners(w: int, h: int, cols: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the four corner pixels of each layout cell, each of shape (4, rows, cols)."""
    xs = np.array([w * i // cols for i in range(cols + 1)], np.float64)
    ys = np.array([h * j // rows for j in range(rows + 1)], np.float64)
    pairs = [np.meshgrid(x, y) for x in (xs[:-1], xs[1:] - 1) for y in (ys[:-1], ys[1:] - 1)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _inside(m: np.ndarray, corners: tuple[np.ndarray, np.ndarray], w: int, h: int) -> np.ndarray:
    """Per layout cell: whether all of it came from inside the view under the affine move ``m`` (view -> back)."""
    inv = cv2.invertAffineTransform(m)
    gx, gy = corners
    sx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    sy = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    return np.asarray(((sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)).all(axis=0))


def _on_focus_grid(cells: np.ndarray, size: int) -> np.ndarray:
    """Layout cells (bool) as focus-grid cells: those at least half covered by them (flat, as the grid is kept)."""
    columns, rows = FOCUS_GRID
    if size != columns * rows:
        return np.ones(size, bool)
    share = cv2.resize(cells.astype(np.float32), (columns, rows), interpolation=cv2.INTER_AREA)
    return np.asarray(share.ravel() >= 0.5)


def _largest(cells: np.ndarray, connectivity: int = 4) -> int:
    n, _, st, _ = cv2.connectedComponentsWithStats(cells.astype(np.uint8), connectivity=connectivity)
    return int(st[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def _plain_regions(cells: np.ndarray, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels 1.. of the regions of ``cells`` whose neighbours join where their mean ``grey`` differs by under
    ``PLAIN_GREY``, 0 elsewhere; each region's cell count)."""
    rows, cols = cells.shape
    # A lattice twice the grid's size: cells on its even points, a link between two neighbours on the
    # point between them, so the image library's connected components follow only the links.
    lattice = np.zeros((2 * rows - 1, 2 * cols - 1), np.uint8)
    lattice[::2, ::2] = cells
    lattice[::2, 1::2] = cells[:, :-1] & cells[:, 1:] & (np.abs(np.diff(grey, axis=1)) < PLAIN_GREY)
    lattice[1::2, ::2] = cells[:-1, :] & cells[1:, :] & (np.abs(np.diff(grey, axis=0)) < PLAIN_GREY)
    n, labels = cv2.connectedComponents(lattice, connectivity=4)
    cell_labels = labels[::2, ::2]
    return cell_labels, np.bincount(cell_labels.ravel(), minlength=max(n, 1))[1:]


def _largest_plain(cells: np.ndarray, grey: np.ndarray) -> int:
    """Cells in the largest region of ``cells`` that ``_plain_regions`` joins."""
    _, sizes = _plain_regions(cells, grey)
    return int(sizes.max()) if len(sizes) else 0


_NEAR = np.ones((3, 3), np.uint8)
_FAR = np.ones((5, 5), np.uint8)


def _glare(raw: np.ndarray, means: np.ndarray, grey: np.ndarray, was_blown: np.ndarray) -> float:
    """``SceneCues.glare`` of a view's grey layout (and its mean grey per cell, ``means``) on the background's cell
    greys and blown shares."""
    cols, rows = grey.shape[1], grey.shape[0]
    blown = _blown(raw, cols, rows) > BLOWN_SHARE
    new = blown & (was_blown < _WAS_BLOWN)
    if not new.any() or blown.all():
        return 0.0
    # Glare blows out cells the background had darker than parts the view still shows.
    new &= grey < np.quantile(grey[~blown], _GLARE_RANK)
    n, labels, st, _ = cv2.connectedComponentsWithStats(new.astype(np.uint8), connectivity=8)
    if n < 2:
        return 0.0
    patch = (labels == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    # A light adds itself around the patch too, fading with distance; a white car or a lit
    # sign is blown out to its edge and leaves what is beside it as it was.
    near_ring = cv2.dilate(patch, _NEAR).astype(bool)
    far_ring = cv2.dilate(patch, _FAR).astype(bool) & ~near_ring & ~blown
    near_ring &= ~blown
    if not near_ring.any():
        return 0.0
    rise = means - grey
    rise -= _mid(rise[~blown])
    near = _mid(rise[near_ring])
    far = _mid(rise[far_ring]) if far_ring.any() else 0.0
    if near < GLARE_HALO or not 0.0 <= far <= near:
        return 0.0
    return float(patch.sum()) / float(patch.size)


def focus_cells(grey: np.ndarray, columns: int, rows: int) -> tuple[float, ...]:
    """``ViewStats.focus_grid`` of a grey view: per cell log(mean squared Laplacian / (variance + 1)),
    then per cell log(std + 1), then per cell log(root mean fourth power of the Laplacian / (variance
    + 1)), each to 0.001; () when the view is smaller than the grid.

    The third is the Laplacian's peaks, where the strongest edges are: any blur (a lens, a smear)
    lowers them about as much as it lowers the mean detail, while a starved encoder or a denoiser
    wipes the faint texture and keeps the strong edges (footage/tune clips re-encoded at CRF 42:
    peaks fell 0.5-0.8 times as much as detail; lens-like and Gaussian blur: 1.0-1.1 times)."""
    h, w = grey.shape[:2]
    if h < 2 * rows or w < 2 * columns:
        return ()
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    ys, xs = cell_bounds(h, w, columns, rows)
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    energy_px = cv2.multiply(lap, lap)                 # exact in float32: |lap| <= 2040
    energy = _band_sums(energy_px, ys, xs) / area
    # The fourth power in float32 (6e-8 relative), summed in double: far below the grid's 0.001.
    peaks = _band_sums(cv2.multiply(energy_px, energy_px), ys, xs) / area
    mean = _band_sums(grey, ys, xs) / area
    var = np.maximum(_band_sums(cv2.multiply(grey, grey, dtype=cv2.CV_32F), ys, xs) / area - mean * mean, 0.0)
    focus = np.log((energy + 1e-3) / (var + 1.0))
    contrast = np.log(np.sqrt(var) + 1.0)
    edges = np.log((np.sqrt(peaks) + 1e-3) / (var + 1.0))
    values = np.concatenate([focus.ravel(), contrast.ravel(), edges.ravel()])
    # Rounded as arrays: a Python round() per cell was a third of this function's time.
    values = np.where(np.isfinite(values), np.round(values, 3), 0.0)
    return tuple(values.tolist())
