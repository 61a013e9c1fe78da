"""Frame -> model input: the routes from a decoded frame to the model's float tensor.

Shared by the daemon and by training (``export/``): the model is trained on
exactly the pixels ``prepare`` produces at serving time, so there is no
train/serve skew. HD frames take cheaper routes whose figures are in
docs/performance.md; ``prepare_exact`` is the plain pyrDown route they are
checked against. Also here: how a batch of frames is spread over the cores
(``spread``), which the view statistics (``analyse``) share. numpy and cv2 only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from camwatch.core.errors import ModelError
from camwatch.vision.images import check_image

_CHANNELS = ("gray", "bgr", "rgb")

#: References whose statistics carry an older ``stats.STATS_ROUTE`` than this were embedded
#: from a model input that has changed since (1080p-class frames read from every 4th row and
#: column, ``rows_route``): re-embedding them (not only re-measuring them) makes a reference
#: and its camera's views come through the same route.
MODEL_INPUT_ROUTE = 4

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


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
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
#: means (``base_halvings``). The model was trained on views of at most 640 px through the
#: exact pyrDown chain, so their input stays bit-identical; only large frames change route.
FAST_MIN_PIXELS = 1280 * 720


def halvings(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Exact 2x2 means (OpenCV's SIMD fast path) while the image stays >= (width, height)."""
    h, w = image.shape[:2]
    while w // 2 >= width and h // 2 >= height:
        image = cv2.resize(image[:h - h % 2, :w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    return image


def base_halvings(shape: tuple[int, ...], min_w: int, min_h: int) -> int:
    """How many exact 2x2 halvings (``halve``) a frame of ``shape`` gets before the rest of its route.

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


#: Row step of the model route for 1080p-class frames (``row_step``).
ROW_STEP = 4


def row_step(shape: tuple[int, ...], spec: InputSpec, k: int = ROW_STEP) -> int:
    """``k`` when the model input of a frame of ``shape`` may be read from every ``k``-th row, else 0.

    Why: one pass over a 1080p BGR frame (6.2 MB) alone runs at ~1,700-1,800 frames/s
    on the 2 cores of the build machine, so no route that reads every row reaches
    2,000 views/s end to end; reading every 4th row does (``rows_route``). Only for
    HD frames and larger whose sides divide by the step and where at least one pyrDown
    still follows at 1/4 size (1080p: 480x270; 720p keeps the 2x2-mean route): the
    pyrDown and the final INTER_AREA then filter what the row sampling lets through.
    """
    h, w = shape[:2]
    if h * w < FAST_MIN_PIXELS or h % k or w % k or w // k < 2 * spec.width or h // k < 2 * spec.height:
        return 0
    return k


def rows_route(img: np.ndarray, spec: InputSpec, k: int) -> np.ndarray:
    """Model input from the pixels at rows and columns 0, k, 2k... of ``img`` (``row_step`` said ``k``).

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
    (measured by the route probe ``benchmarks/bench_route_drift.py``, in git history).
    Averaging the column pairs (INTER_LINEAR, ~10% slower end to end) or rows 4i+2
    instead of 4i brought nothing or moved it further.
    """
    h, w = img.shape[:2]
    rows = img[::k]                                            # a view: no copy, only these rows are read
    return finish(cv2.resize(rows, (w // k, h // k), interpolation=cv2.INTER_NEAREST), spec)


def halve(image: np.ndarray, times: int) -> np.ndarray:
    """``times`` exact 2x2 means (``base_halvings`` said how many)."""
    for _ in range(times):
        h, w = image.shape[:2]
        image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return image


def model_halvings(shape: tuple[int, ...], spec: InputSpec) -> int:
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
    return min(1, base_halvings(shape, 2 * spec.width, 2 * spec.height))


def prepare(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR uint8 frame -> the model's float32 [C, H, W] input.

    Grey conversion happens before shrinking (one channel is a third of the
    resize work); both are linear so the order does not change the picture.
    1080p-class frames are read from every 4th row and column only (``row_step``, ``rows_route``);
    other HD frames (720p) are first halved by an exact 2x2 mean (``model_halvings``);
    smaller ones get exactly the pixels the model was trained on.
    """
    return _prepare(image_bgr, spec, fast=True)


def prepare_exact(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The plain pyrDown route for every size: what the fast routes of HD frames are measured against."""
    return _prepare(image_bgr, spec, fast=False)


def _prepare(image_bgr: np.ndarray, spec: InputSpec, fast: bool) -> np.ndarray:
    check_image(image_bgr)
    img = image_bgr
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if fast:
        k = row_step(img.shape, spec)
        if k:
            return rows_route(img, spec, k)
        img = halve(img, model_halvings(img.shape, spec))
    return finish(img, spec)


def finish(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Colour conversion, pyrDown chain to the input size, normalisation."""
    if spec.channels == "gray":
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = shrink(img, spec.width, spec.height)
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

    spread(len(images), one)
    return out


def spread(n: int, one: Callable[[int], None]) -> None:
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
    with one. camwatch spreads whole frames over cores itself (``spread``), and
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
