"""Frame -> model input, ROI/mask regions, and view statistics.

This module is shared by the daemon and by training (``export/``): the model is
trained on exactly the pixels ``prepare`` produces at serving time, so there is
no train/serve skew. It needs only numpy and cv2.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from camwatch.core.errors import ModelError
from camwatch.vision.structure import thumbnail

Point = tuple[float, float]
Polygon = Sequence[Point]

#: Width at which sharpness is judged. Gentle lens defocus that is invisible at
#: 128 px still drops Laplacian energy clearly at ~480 px (see GUIDE.md).
STATS_WIDTH = 480

_CHANNELS = ("gray", "bgr", "rgb")

#: How view statistics are measured; stored references whose statistics carry
#: another route are re-measured from their images (``ReferenceStore.reembed``).
#: 2: HD frames reduced by 2x2 means to 480-959 px, then INTER_AREA (box filters only).
#: 3: the same, but that last step (less than 2x; 640 -> 480 px at 720p) is INTER_LINEAR:
#: OpenCV's INTER_AREA at a non-integer ratio took 0.80 ms CPU of the ~2.3 ms a 720p view's
#: input and statistics take; linear takes 0.19 ms. Frames under HD are unchanged.
#: 4: route 3, and the statistics carry the view's structure thumbnail (``structure.thumbnail``).
STATS_ROUTE = 4
#: References whose statistics carry an older route than this were embedded from a model
#: input that has changed since (1080p-class frames read from every 4th row and column,
#: ``_rows_route``, session 4): ``ReferenceStore.reembed`` embeds them again, not only
#: re-measures them, so a reference and its camera's views come through the same route.
MODEL_INPUT_ROUTE = 4

#: Grey-level standard deviation below which a stats cell counts as textureless.
FLAT_CELL_STD = 4.0


@dataclass(frozen=True)
class InputSpec:
    """What the model wants as input, read from its ONNX metadata by the embedder.

    ``prepare`` resizes to ``width`` x ``height``, converts to ``channels``,
    multiplies by ``scale`` and then applies ``(x - mean) / std`` per channel.
    """

    width: int = 128
    height: int = 128
    channels: str = "gray"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.channels not in _CHANNELS:
            raise ModelError(f"model input: channels {self.channels!r} is not one of {', '.join(_CHANNELS)}")
        if self.width < 1 or self.height < 1:
            raise ModelError(f"model input: size {self.width}x{self.height} is not positive")
        n = self.n_channels
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, n):
                raise ModelError(f"model input: {name} has {len(values)} values, expected 1 or {n}")
        if any(s == 0 for s in self.std):
            raise ModelError("model input: std contains 0")

    @property
    def n_channels(self) -> int:
        return 1 if self.channels == "gray" else 3


def _shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to (width, height); halve with pyrDown first while the image is >= 2x the target.

    INTER_AREA from 720p/1080p with a non-integer ratio is most of the per-view
    cost; pyrDown halves cheaply and the final INTER_AREA step is then small.
    """
    h, w = image.shape[:2]
    while w >= 2 * width and h >= 2 * height:
        image = cv2.pyrDown(image)
        h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    interp = cv2.INTER_AREA if (w >= width and h >= height) else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


#: Frames of at least this many pixels (HD and up) are first reduced by exact 2x2
#: means (``_base_halvings``). The model was trained on views of at most 640 px through the
#: exact pyrDown chain, so their input stays bit-identical; only large frames change route.
FAST_MIN_PIXELS = 1280 * 720


def _halvings(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Exact 2x2 means (OpenCV's SIMD fast path) while the image stays >= (width, height)."""
    h, w = image.shape[:2]
    while w // 2 >= width and h // 2 >= height:
        image = cv2.resize(image[:h - h % 2, :w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    return image


def _base_halvings(shape: tuple[int, ...], min_w: int, min_h: int) -> int:
    """How many exact 2x2 halvings (``_halve``) a frame of ``shape`` gets before the rest of its route.

    Only HD frames and larger, only while both sides are even (odd sizes, no real
    camera mode, would map their edges differently from pyrDown's ceil-sized
    halves) and the result stays at least ``min_w`` x ``min_h``.
    """
    h, w = shape[:2]
    if h * w < FAST_MIN_PIXELS:
        return 0
    n = 0
    while w % 2 == 0 and h % 2 == 0 and w // 2 >= min_w and h // 2 >= min_h:
        w, h, n = w // 2, h // 2, n + 1
    return n


#: Row step of the model route for 1080p-class frames (``_row_step``).
ROW_STEP = 4


def _row_step(shape: tuple[int, ...], spec: InputSpec, k: int = ROW_STEP) -> int:
    """``k`` when the model input of a frame of ``shape`` may be read from every ``k``-th row, else 0.

    Why: one pass over a 1080p BGR frame (6.2 MB) alone runs at ~1,700-1,800 frames/s
    on the 2 cores of the build machine, so no route that reads every row reaches
    2,000 views/s end to end; reading every 4th row does (``_rows_route``). Only for
    HD frames and larger whose sides divide by the step and where at least one pyrDown
    still follows at 1/4 size (1080p: 480x270; 720p keeps the 2x2-mean route): the
    pyrDown and the final INTER_AREA then filter what the row sampling lets through.
    """
    h, w = shape[:2]
    if h * w < FAST_MIN_PIXELS or h % k or w % k or w // k < 2 * spec.width or h // k < 2 * spec.height:
        return 0
    return k


def _rows_route(img: np.ndarray, spec: InputSpec, k: int) -> np.ndarray:
    """Model input from the pixels at rows and columns 0, k, 2k... of ``img`` (``_row_step`` said ``k``).

    ``img[::k]`` is a numpy view with a k-row step, which OpenCV takes as it is (a Mat
    with a larger row step), so only those rows are read: a quarter of the frame at
    k = 4. A k:1 INTER_NEAREST across (OpenCV's nearest takes column floor(k*j)) then
    computes only a 1/k^2 of the pixels, and the result is pyramid level log2(k) of the
    exact route sampled at its pixel centres (pyrDown's [1 4 6 4 1] taps centre output i
    on input 2i); grey conversion, the pyrDown chain and the final INTER_AREA then run as
    for any frame, and filter what the sampling lets through.

    Measured (docs/performance.md, Speed): 1080p end to end, 2 streams of batch 32,
    ~1,000 -> ~2,100 views/s; embedding cosine to the exact route >= 0.99 on real frames
    upscaled to 1080p (the 2x2-mean route: >= 0.998), and what users see does not move:
    benign views' similarity to their reference (both through this route) and drifted
    views' stay where the exact route puts them to ~0.001-0.004 at p1/p5/median/p95/p99
    (``benchmarks/bench_route_drift.py``). Averaging the column pairs (INTER_LINEAR, ~10%
    slower end to end) or rows 4i+2 instead of 4i brought nothing or moved it further.
    """
    h, w = img.shape[:2]
    rows = img[::k]                                            # a view: no copy, only these rows are read
    return _finish(cv2.resize(rows, (w // k, h // k), interpolation=cv2.INTER_NEAREST), spec)


def _halve(image: np.ndarray, times: int) -> np.ndarray:
    for _ in range(times):
        h, w = image.shape[:2]
        image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return image


def _stats_size(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    return STATS_WIDTH, max(1, round(h * STATS_WIDTH / w))


def _model_halvings(shape: tuple[int, ...], spec: InputSpec) -> int:
    """2x2-mean halvings the model route starts with: one, when at least one pyrDown follows.

    Why one and only one: on a 1080p BGR frame ``cvtColor`` + ``pyrDown`` cost
    ~1.4 ms and a 2x2 INTER_AREA (OpenCV's SIMD path for an exact factor 2) ~0.7 ms,
    after which everything else runs on a quarter of the pixels. The pyrDown levels
    that follow dominate the blur, so the model input barely changes (shipped model:
    embedding cosine >= 0.998 against the exact route on real 720p and 1080p frames,
    ``benchmarks/bench_preprocess.py --compare``); a box filter as the only low-pass
    before the final resize changed embeddings visibly (cos ~0.97), and a second
    2x2 halving at 1080p moved the input twice as far from the exact route.
    """
    return min(1, _base_halvings(shape, 2 * spec.width, 2 * spec.height))


class ImageFileError(Exception):
    """An image file that cannot be used; ``missing`` tells a wrong path from bad content.

    Callers turn it into their own CamwatchError with the context a user needs
    (the camera, the case folder, the command's argument).
    """

    def __init__(self, message: str, missing: bool = False):
        self.missing = missing
        super().__init__(message)


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file (any format OpenCV reads) to BGR uint8.

    Raises ImageFileError: missing file (``missing=True``), unreadable file
    ("cannot read it (...)"), or content OpenCV cannot decode.
    """
    if not os.path.isfile(path):
        raise ImageFileError("no such file", missing=True)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageFileError(f"cannot read it ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageFileError("not an image OpenCV can decode (JPEG, PNG, BMP...)")
    return image


def _check_image(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3) \
            or (image_bgr.ndim == 3 and image_bgr.shape[2] not in (1, 3)) or min(image_bgr.shape[:2]) < 1:
        raise ValueError(f"expected a uint8 BGR or grey image, got {getattr(image_bgr, 'dtype', type(image_bgr))} "
                         f"{getattr(image_bgr, 'shape', '')}")


def prepare(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR uint8 frame -> the model's float32 [C, H, W] input.

    Grey conversion happens before shrinking (one channel is a third of the
    resize work); both are linear so the order does not change the picture.
    1080p-class frames are read from every 4th row and column only (``_row_step``, ``_rows_route``);
    other HD frames (720p) are first halved by an exact 2x2 mean (``_model_halvings``);
    smaller ones get exactly the pixels the model was trained on.
    """
    return _prepare(image_bgr, spec, fast=True)


def _prepare(image_bgr: np.ndarray, spec: InputSpec, fast: bool) -> np.ndarray:
    """``prepare``; ``fast=False`` is the exact pyrDown route for every size (the reference)."""
    _check_image(image_bgr)
    img = image_bgr
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if fast:
        k = _row_step(img.shape, spec)
        if k:
            return _rows_route(img, spec, k)
        img = _halve(img, _model_halvings(img.shape, spec))
    return _finish(img, spec)


def _finish(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Colour conversion, pyrDown chain to the input size, normalisation."""
    if spec.channels == "gray":
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = _shrink(img, spec.width, spec.height)
    if spec.channels == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x = img.astype(np.float32)
    if x.ndim == 2:
        x = x[None]
    else:
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    if spec.scale != 1.0:
        x *= np.float32(spec.scale)
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    if np.any(mean != 0) or np.any(std != 1):
        x = (x - mean) / std
    return x


def prepare_batch(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Several frames -> float32 [N, C, H, W] (N may be 0), spread over the CPU cores."""
    out = np.empty((len(images), spec.n_channels, spec.height, spec.width), np.float32)

    def one(i: int) -> None:
        out[i] = prepare(images[i], spec)

    _spread(len(images), one)
    return out


def analyse_batch(images: Sequence[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[ViewStats]]:
    """``analyse`` of several frames: model input [N, C, H, W] and each view's statistics."""
    out = np.empty((len(images), spec.n_channels, spec.height, spec.width), np.float32)
    stats: list = [None] * len(images)

    def one(i: int) -> None:
        out[i], stats[i] = analyse(images[i], spec)

    _spread(len(images), one)
    return out, stats


def _spread(n: int, one: Callable[[int], None]) -> None:
    """Call ``one(i)`` for i < n, in one contiguous chunk per worker of a shared pool.

    OpenCV releases the GIL, and its own threading does little for these small
    steps but spin (camwatch runs it single-threaded: ``single_threaded_opencv``),
    so the daemon's batch of checks is how its preprocessing uses every core.
    """
    workers = min(PREPARE_WORKERS, n)
    if workers < 2:
        for i in range(n):
            one(i)
        return

    def chunk(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            one(i)

    bounds = [n * k // workers for k in range(workers + 1)]
    futures = [_pool().submit(chunk, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    chunk(bounds[0], bounds[1])                     # the calling thread takes the first chunk
    for f in futures:
        f.result()                                  # re-raises a worker's error here


def single_threaded_opencv() -> None:
    """Make OpenCV run each call on the calling thread.

    Why: OpenCV's own thread pool splits even a 720p resize across the cores and
    its workers then spin waiting for more; measured in process at 720p, one
    view's statistics cost 6.3 ms of CPU with OpenCV's default threads and 3.3 ms
    with one. camwatch spreads whole frames over cores itself (``_spread``), and
    FFmpeg's decoder threads are set apart from this.
    """
    cv2.setNumThreads(1)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: Threads that prepare one batch together (the caller is one of them).
PREPARE_WORKERS = max(1, min(4, _cpu_count()))
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The shared helper threads (created on first use: training and small batches never need it).

    A forked child inherits the pool object but not its threads, and would wait
    forever on it: a new pool is made per process.
    """
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max_workers=max(1, PREPARE_WORKERS - 1),
                                       thread_name_prefix="camwatch-prepare")
            _POOL_PID = os.getpid()
        return _POOL


# -- regions ----------------------------------------------------------------------


def _polygon_pixels(polygon: Polygon, w: int, h: int) -> np.ndarray:
    pts = np.asarray(polygon, np.float64).reshape(-1, 2)
    pts = np.clip(pts, 0.0, 1.0) * np.array([w, h])
    return np.round(pts).astype(np.int32)


def _grey_level(image: np.ndarray, visible: np.ndarray) -> int:
    """Mean grey of the visible pixels (all channels), 128 when nothing is visible.

    cv2.mean with a mask: boolean-index gathering of a 1080p frame took tens of ms.
    """
    count = cv2.countNonZero(visible)
    if count == 0:
        return 128
    channels = 1 if image.ndim == 2 else image.shape[2]
    means = cv2.mean(image, mask=visible)[:channels]
    return int(round(sum(means) / channels))


def _fill(image: np.ndarray, hide: np.ndarray, level: int) -> np.ndarray:
    """A copy of ``image`` with the pixels where ``hide`` != 0 set to ``level``."""
    out = image.copy()
    if image.ndim == 3 and image.shape[2] == 1:
        view = out[:, :, 0]
    else:
        view = out
    fill = np.full(view.shape, level, np.uint8)
    cv2.copyTo(fill, hide, view)          # writes into out's pixels in place
    return out


def apply_regions(image_bgr: np.ndarray, roi: Sequence[Polygon] | None,
                  mask: Sequence[Polygon] | None) -> np.ndarray:
    """Keep what the camera's ROI selects and hide what its mask covers.

    Polygons are in 0..1 view coordinates. ROI: crop to the bounding box of all
    ROI polygons and fill what lies outside them with mean grey. Mask: fill the
    inside of each mask polygon with mean grey. No regions = the image as is.
    Reference and query always go through this same function.

    The fill level is the mean grey of the visible pixels: the model standardises
    each image, so a fill at the visible mean moves that standardisation as little
    as possible; reference and query get the same treatment because both pass here.
    """
    _check_image(image_bgr)
    roi = [p for p in (roi or ()) if len(p) >= 3]
    mask = [p for p in (mask or ()) if len(p) >= 3]
    if not roi and not mask:
        return image_bgr
    h, w = image_bgr.shape[:2]
    hide = np.zeros((h, w), np.uint8)
    if roi:
        hide[:] = 255
        cv2.fillPoly(hide, [_polygon_pixels(p, w, h) for p in roi], 0)
    if mask:
        cv2.fillPoly(hide, [_polygon_pixels(p, w, h) for p in mask], 255)
    level = _grey_level(image_bgr, cv2.bitwise_not(hide))
    img = image_bgr
    if roi:
        pts = np.concatenate([_polygon_pixels(p, w, h) for p in roi])
        x0, y0 = np.maximum(pts.min(axis=0), 0)
        x1, y1 = np.minimum(pts.max(axis=0), [w, h])
        if x1 - x0 >= 2 and y1 - y0 >= 2:          # fill only what is kept
            img, hide = img[y0:y1, x0:x1], hide[y0:y1, x0:x1]
    return np.ascontiguousarray(_fill(img, np.ascontiguousarray(hide), level))


# -- statistics -------------------------------------------------------------------


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
    #: The grey view at ``structure.THUMB_WIDTH`` px, encoded (``structure.thumbnail``), made
    #: from the same grey as the other statistics; "" for statistics stored before route 4.
    thumb: str = dataclasses.field(default="", repr=False)


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
    rows = np.array([gh * j // 12 for j in range(13)])
    cols = np.array([gw * i // 16 for i in range(17)])
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
    (``_base_halvings``; ``analyse`` shares the first halving with the model's
    input), converted to grey and brought to ``STATS_WIDTH`` by INTER_LINEAR
    (a step of less than 2x; route 3). Colourfulness, which no rule uses, is
    read at 240-479 px. Frames under HD (the 640 px views the rules in
    decision.py were tuned on) take the old route, INTER_AREA.
    """
    _check_image(image_bgr)
    img = image_bgr if image_bgr.ndim == 3 else image_bgr[:, :, None]
    n = _base_halvings(img.shape, *_stats_size(img.shape))
    if n:
        return _stats_of(_halve(img, n), img.shape)
    return _view_stats(image_bgr, fast=True)


def _stats_of(base: np.ndarray, shape: tuple[int, ...], grey: np.ndarray | None = None) -> ViewStats:
    """Statistics of a frame of ``shape`` from its 2x2-mean reduction ``base`` (and its grey, if at hand)."""
    sw, th = _stats_size(shape)
    colour = None
    if base.ndim == 3 and base.shape[2] == 3:
        grey = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY) if grey is None else grey
        colour = _halvings(base, sw // 2, 1)
    elif grey is None:
        grey = base if base.ndim == 2 else base[:, :, 0]
    if grey.shape[1] != sw or grey.shape[0] != th:       # 480-959 px wide: less than 2x to go
        grey = cv2.resize(grey, (sw, th), interpolation=cv2.INTER_LINEAR)
    return _measure(grey, colour)


def analyse(image_bgr: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, ViewStats]:
    """``(prepare(image, spec), view_stats(image))``, sharing the first reduction where both have one.

    Why: the daemon needs both for every check, and at 720p reading the full frame
    (the first 2x2 halving) and converting to grey were a large part of their cost,
    paid twice. 1080p-class frames share nothing: the model input reads every 4th row
    and column (``_rows_route``), the statistics every pixel; the rows are read after the
    statistics (either order measured the same). Results are identical to the two calls
    (tests/test_preprocess.py).
    """
    _check_image(image_bgr)
    img = image_bgr[:, :, 0] if image_bgr.ndim == 3 and image_bgr.shape[2] == 1 else image_bgr
    k = _row_step(img.shape, spec)
    if k:
        # the model reads every k-th row and column, the statistics every pixel (their 2x2 means): no shared reduction
        stats = view_stats(image_bgr)
        return _rows_route(img, spec, k), stats
    n_model = _model_halvings(img.shape, spec)
    n_stats = _base_halvings(img.shape, *_stats_size(img.shape))
    if not n_model or not n_stats:
        return prepare(image_bgr, spec), view_stats(image_bgr)
    half = _halve(img, 1)                                   # both routes start here
    grey_half = None
    if half.ndim == 3 and spec.channels == "gray":
        grey_half = cv2.cvtColor(half, cv2.COLOR_BGR2GRAY)  # converted once for both
    x = _finish(half if grey_half is None else grey_half, spec)
    if n_stats == 1:
        return x, _stats_of(half, img.shape, grey_half)
    return x, _stats_of(_halve(half, n_stats - 1), img.shape)


def _view_stats(image_bgr: np.ndarray, fast: bool) -> ViewStats:
    """Frames below HD (``fast=True``), or every size by pyrDown (``fast=False``, the reference route)."""
    _check_image(image_bgr)
    img = image_bgr if image_bgr.ndim == 3 else image_bgr[:, :, None]
    h, w = img.shape[:2]
    _, th = _stats_size(img.shape)
    colour = None
    if fast and img.shape[2] == 3 and w >= 2 * STATS_WIDTH and h >= 2 * th:
        # pyrDown on grey, not BGR: a third of the work, same picture up to rounding
        grey = _shrink(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), STATS_WIDTH, th)
        colour = _halvings(img, grey.shape[1], grey.shape[0])
    else:
        small = _shrink(img, STATS_WIDTH, th) if w > STATS_WIDTH else img
        if small.ndim == 2:
            small = small[:, :, None]
        if small.shape[2] == 3:
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            colour = small
        else:
            grey = small[:, :, 0]
    return _measure(grey, colour)


def _measure(grey: np.ndarray, colour: np.ndarray | None) -> ViewStats:
    """The statistics of a grey view at (about) STATS_WIDTH and its colour version (any size)."""
    colourful = _colourfulness(colour) if colour is not None else 0.0
    mean, std = cv2.meanStdDev(grey)
    contrast = float(std[0, 0])
    n = float(grey.size)
    # int16 holds a 3x3 Laplacian of uint8 exactly; the squared norm is summed in double
    sharp = cv2.norm(cv2.Laplacian(grey, cv2.CV_16S, ksize=3), cv2.NORM_L2SQR) / n
    tiny = cv2.pyrDown(cv2.pyrDown(grey)) if min(grey.shape) >= 48 else grey
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
    )
