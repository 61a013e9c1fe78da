"""A frame -> its model input and its view statistics, from one reduction of the frame.

What the daemon does for every check; enrolment calls ``prepare`` and
``view_stats`` one after the other, with the same results.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from camwatch.vision.images import check_image
from camwatch.vision.prepare import (
    InputSpec,
    base_halvings,
    finish,
    halve,
    model_halvings,
    prepare,
    row_step,
    rows_route,
    spread,
)
from camwatch.vision.stats import ViewStats, stats_after, stats_of, stats_size, view_stats


def analyse(image_bgr: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, ViewStats]:
    """``(prepare(image, spec), view_stats(image))``, sharing the first reduction where both have one.

    Why: the daemon needs both for every check, and at 720p reading the full frame
    (the first 2x2 halving) and converting to grey were a large part of their cost,
    paid twice. 1080p-class frames share nothing: the model input reads every 4th row
    and column (``rows_route``), the statistics every pixel; the rows are read after the
    statistics (either order measured the same). Results are identical to the two calls
    (tests/test_preprocess.py).
    """
    check_image(image_bgr)
    img = image_bgr[:, :, 0] if image_bgr.ndim == 3 and image_bgr.shape[2] == 1 else image_bgr
    k = row_step(img.shape, spec)
    if k:
        # the model reads every k-th row and column, the statistics every pixel (their 2x2 means): no shared reduction
        stats = view_stats(image_bgr)
        return rows_route(img, spec, k), stats
    n_model = model_halvings(img.shape, spec)
    n_stats = base_halvings(img.shape, *stats_size(img.shape))
    if not n_model or not n_stats:
        return prepare(image_bgr, spec), view_stats(image_bgr)
    half = halve(img, 1)                                   # both routes start here
    grey_half = None
    if half.ndim == 3 and spec.channels == "gray":
        grey_half = cv2.cvtColor(half, cv2.COLOR_BGR2GRAY)  # converted once for both
    x = finish(half if grey_half is None else grey_half, spec)
    if n_stats == 1:
        return x, stats_of(half, img.shape, grey_half)
    return x, stats_after(half, 1, img.shape, grey_half)


def analyse_batch(images: Sequence[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[ViewStats]]:
    """``analyse`` of several frames: model input [N, C, H, W] and each view's statistics."""
    out = np.empty((len(images), spec.n_channels, spec.height, spec.width), np.float32)
    stats: list[ViewStats | None] = [None] * len(images)

    def one(i: int) -> None:
        out[i], stats[i] = analyse(images[i], spec)

    spread(len(images), one)                        # fills every slot or raises
    return out, [s for s in stats if s is not None]
