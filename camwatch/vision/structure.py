"""A view's coarse structure: a small grey thumbnail and how far two of them differ.

Why next to the embedding: the 128-px embedding is trained to forgive a
little vibration, and so it is slow to see a small rotation or zoom, which
moves every edge of the view a few pixels at once. Structural similarity
(SSIM) of the two views, each standardised so light and gain do not count,
sees exactly that, and misses what the embedding sees (covers, blur, a
view with no picture). decision.py adds the two, the structure weighted and
scaled per camera (see there). The distance is 1 - SSIM of the standardised
thumbnails: 0 for the same picture, about 1 for an unrelated one.

Thumbnails travel inside ``preprocess.ViewStats`` (and so in the reference
store's JSON) as ``"<w>x<h>:<base64 of the grey pixels>"``: 96 x 54 px are
5 KB of pixels, 7 KB as text, and a string keeps ViewStats hashable and its JSON plain.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

#: Thumbnail width in pixels (height keeps the aspect). Chosen on train cases
#: (docs/evaluation.md): 64, 96 and 160 px ranked drifted views alike; 96 is cheap.
THUMB_WIDTH = 96
#: Grey standard deviation each thumbnail is scaled to before SSIM, around grey 128.
_Z_STD = 50.0
#: Share of the SSIM map's worst pixels left out of its mean (0: the plain mean). Trimming
#: would forgive a local change (a near car) more than a move, but it also forgives the part
#: of a rotation or zoom that moves most; tried at 0.2-0.5 on train cases and kept at 0
#: (docs/evaluation.md, "Structure pooling, scale and registration, session 8"). Benchmarks set it with
#: ``--set structure.POOL_TRIM=T``.
POOL_TRIM = 0.0
#: With C > 0 the map is first averaged over a C x C grid of cells and POOL_TRIM leaves out the
#: worst cells instead of the worst pixels (a move changes the edges of every textured cell; a
#: near car fills a few cells). Tried at 3 and 4 on train cases (same section): rotations kept,
#: more benign alarms at today's scale bounds. 0 in the product; ``--set structure.POOL_CELLS=C``.
POOL_CELLS = 0


def thumbnail(grey: np.ndarray) -> str:
    """The encoded thumbnail of a grey uint8 view (any size)."""
    h, w = grey.shape[:2]
    th = max(8, round(h * THUMB_WIDTH / w))
    small = cv2.resize(grey, (THUMB_WIDTH, th), interpolation=cv2.INTER_AREA)
    return f"{THUMB_WIDTH}x{th}:" + base64.b64encode(np.ascontiguousarray(small, np.uint8).tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray | None:
    # Not cached: a query's thumbnail is new at every check, and a cache big enough for a
    # thousand cameras' references would hold ~30 MB to save ~0.1 ms per check.
    try:
        size, data = text.split(":", 1)
        w, h = (int(v) for v in size.split("x"))
        raw = np.frombuffer(base64.b64decode(data, validate=True), np.uint8)
        if w < 1 or h < 1 or raw.size != w * h:
            return None
    except (ValueError, TypeError):
        return None
    img = raw.reshape(h, w).astype(np.float32)
    return (img - img.mean()) / (img.std() + 1e-3) * _Z_STD + 128.0


def thumb_of(stats: Any) -> np.ndarray | None:
    """The standardised float thumbnail carried by a ViewStats or its stored dict, or None."""
    if stats is None:
        return None
    text = stats.get("thumb") if isinstance(stats, Mapping) else getattr(stats, "thumb", None)
    if not isinstance(text, str) or not text:
        return None
    return _decode(text)


def ssim(a: np.ndarray, b: np.ndarray, trim: float = 0.0, cells: int = 0) -> float:
    """Mean structural similarity of two grey float images (Wang et al. 2004, Gaussian window 1.5).

    ``trim``: the share of the map's lowest values left out of the mean; ``cells`` > 0: the
    map is averaged over a cells x cells grid first, and the trim leaves out whole cells.
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    ssim_map = num / den
    if cells > 0:
        ssim_map = cv2.resize(ssim_map, (cells, cells), interpolation=cv2.INTER_AREA)
    if trim <= 0:
        return float(np.mean(ssim_map))
    values = np.sort(ssim_map, axis=None)
    return float(np.mean(values[min(int(trim * values.size), values.size - 1):]))


def distance(stats: Any, ref_stats: Any) -> float | None:
    """1 - SSIM of the view's and the reference's standardised thumbnails; None if either has none.

    A view whose frame changed shape (the camera's resolution was changed) is
    resized to the reference's thumbnail first.
    """
    q, r = thumb_of(stats), thumb_of(ref_stats)
    if q is None or r is None:
        return None
    if q.shape != r.shape:
        q = cv2.resize(q, (r.shape[1], r.shape[0]), interpolation=cv2.INTER_AREA)
    return 1.0 - ssim(r, q, POOL_TRIM, POOL_CELLS)
