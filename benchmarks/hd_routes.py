"""Candidate routes from an HD frame to the model input that read less than the whole frame.

Not shipped: the benchmarks measure them (``bench_embed.py --route``,
``bench_route_drift.py``, ``bench_preprocess.py --compare``) against the package's
routes, so the figures in docs/performance.md can be rerun. Every route returns
what ``preprocess.prepare`` returns (float32 [C, H, W]); frames below HD (1280x720),
or whose sides do not divide by the row step, or too small for a pyrDown to follow,
take the shipped route, so only large frames change.

Why these: one ``cvtColor`` pass over each 6.2 MB 1080p BGR frame already runs
at only ~1,700 frames/s on the 2 cores, so 2,000 views/s end to end needs a route
that does not read every row. A numpy strided view ``frame[::k]`` goes to OpenCV
without a copy (a Mat with a larger row step), so OpenCV touches only those rows.

- ``exact``:   the pyrDown chain at full size (what the model was trained with).
- ``shipped``: ``preprocess.prepare``, whatever the package does now.
- ``halve2``:  one exact 2x2 mean (INTER_AREA), then the chain: ``prepare`` for HD frames until
               the row route (``rows4n``) replaced it at 1080p. Reads every pixel.
Rows are 0, k, 2k...: a pyrDown output pixel i is centred on input pixel 2i (its
[1 4 6 4 1] taps), so the exact route's level-2 pixel j sits on row 4j (rows 4j+2
measured: embedding cosine to the exact route min 0.985 against 0.990 on upscaled stills).

- ``rows4``:   every 4th row; grey; 4:1 INTER_AREA across (box of 4 columns); then the chain
               from pyramid level 2 (1080p: 480x270 -> pyrDown 240x135 -> INTER_AREA 128x128).
               Reads 25% of the frame; no vertical low-pass before the row sampling.
- ``rows4lin``: every 4th row, 4:1 INTER_LINEAR across in BGR (mean of columns 4j+1 and 4j+2),
               grey at 1/4 width; then the chain. Reads 25%.
- ``rows4g``:  every 4th row, grey at full width, then 4:1 INTER_LINEAR across; then the chain.
               The same picture as ``rows4lin`` up to rounding, without a BGR image at 1/4 size.
- ``rows4c``:  ``rows4g`` with the column pair centred where the exact route's pixel is: mean of
               columns 4j-1 and 4j (the first output column repeats the second).
- ``rows4n``:  every 4th row, 4:1 INTER_NEAREST across in BGR (columns 0, 4, 8...: OpenCV's nearest
               takes floor(4j)), grey at 1/4 size; then the chain. The frame's pixels at the
               exact route's level-2 pixel centres, no low-pass before the pyrDown; the cheapest
               of these (reads every cache line of the rows, computes a sixteenth of the pixels).
- ``pair4``:   one INTER_LINEAR resize of the whole frame to 1/4 size: OpenCV reads only rows
               4i+1 and 4i+2 and averages them (a row pair every 4 rows, 50% of the rows),
               and columns likewise; then grey and the chain.
- ``rows2``:   every 2nd row, grey, 2:1 INTER_LINEAR across, then the whole chain from level 1
               (two pyrDowns at 1080p). Reads 50%.

The daemon's route (model input and view statistics of every check) for the same figure:

- ``daemon``:  ``preprocess.analyse`` as the package does it now (model input returned, statistics
               computed and dropped).
- ``daemon-halve2``: ``analyse`` before the row route: one 2x2 mean shared by the model input and the
               statistics, which also take a second 2x2 mean (``_stats_of``).
- ``daemon-rowsfirst``: ``daemon`` with the rows read before the statistics instead of after
               (measured the same: 649 vs 635 views/s, so ``analyse`` keeps statistics first).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camwatch.vision import preprocess  # noqa: E402
from camwatch.vision.preprocess import InputSpec, _check_image, _finish, _halve, _model_halvings, _prepare, prepare  # noqa: E402

Route = Callable[[np.ndarray, InputSpec], np.ndarray]


def _grey_first(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    if spec.channels == "gray" and img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img


def _strided(k: int, across: int, grey_first: bool, centred: bool = False) -> Route:
    def route(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
        img = frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
        if not preprocess._row_step(img.shape, spec, k):
            return _halve2(frame, spec)
        h, w = img.shape[:2]
        rows = img[::k]                                   # a view: OpenCV reads only these rows
        if grey_first:                                    # grey at full width, then reduce across
            rows = _grey_first(rows, spec)
        if not centred:
            return _finish(cv2.resize(rows, (w // k, h // k), interpolation=across), spec)
        # output j from columns k*j - k/2 .. : drop k/2 columns each side, repeat the first output column
        small = cv2.resize(rows[:, k // 2:w - k // 2], (w // k - 1, h // k), interpolation=across)
        return _finish(cv2.copyMakeBorder(small, 0, 0, 1, 0, cv2.BORDER_REPLICATE), spec)
    return route


def _pair4(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    img = frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
    if not preprocess._row_step(img.shape, spec, 4):
        return _halve2(frame, spec)
    h, w = img.shape[:2]
    return _finish(cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_LINEAR), spec)


def _halve2(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    _check_image(frame)
    img = frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
    return _finish(_halve(img, _model_halvings(img.shape, spec)), spec)


ROUTES: dict[str, Route] = {
    "exact": lambda f, spec: _prepare(f, spec, fast=False),
    "shipped": prepare,
    "halve2": _halve2,
    "rows4": _strided(4, cv2.INTER_AREA, grey_first=True),
    "rows4lin": _strided(4, cv2.INTER_LINEAR, grey_first=False),
    "rows4g": _strided(4, cv2.INTER_LINEAR, grey_first=True),
    "rows4c": _strided(4, cv2.INTER_LINEAR, grey_first=True, centred=True),
    "rows4n": _strided(4, cv2.INTER_NEAREST, grey_first=False),
    "pair4": _pair4,
    "rows2": _strided(2, cv2.INTER_LINEAR, grey_first=True),
}


def _daemon(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    return preprocess.analyse(frame, spec)[0]


def _daemon_halve2(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    _check_image(frame)
    img = frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
    n_model = _model_halvings(img.shape, spec)
    n_stats = preprocess._base_halvings(img.shape, *preprocess._stats_size(img.shape))
    if not n_model or not n_stats:
        preprocess.view_stats(frame)
        return _halve2(frame, spec)
    half = _halve(img, 1)
    grey_half = cv2.cvtColor(half, cv2.COLOR_BGR2GRAY) if half.ndim == 3 and spec.channels == "gray" else None
    x = _finish(half if grey_half is None else grey_half, spec)
    if n_stats == 1:
        preprocess._stats_of(half, img.shape, grey_half)
    else:
        preprocess._stats_of(_halve(half, n_stats - 1), img.shape)
    return x


def _daemon_rows_first(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    img = frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
    k = preprocess._row_step(img.shape, spec)
    if not k:
        return _daemon(frame, spec)
    x = preprocess._rows_route(img, spec, k)
    preprocess.view_stats(frame)
    return x


ROUTES.update({"daemon": _daemon, "daemon-halve2": _daemon_halve2, "daemon-rowsfirst": _daemon_rows_first})


def route_batch(route: str, images, spec: InputSpec) -> np.ndarray:
    """``prepare_batch`` through ``route``, spread over the same worker pool as the package's."""
    if route == "shipped":
        return preprocess.prepare_batch(images, spec)
    fn = ROUTES[route]
    out = np.empty((len(images), spec.n_channels, spec.height, spec.width), np.float32)

    def one(i: int) -> None:
        out[i] = fn(images[i], spec)

    preprocess._spread(len(images), one)
    return out
