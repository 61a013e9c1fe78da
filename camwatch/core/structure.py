"""A view's coarse structure: a small grey thumbnail, and how far two of them differ.

Why next to the embedding: the 128-px embedding is trained to forgive a
little vibration, and so it is slow to see a small rotation or zoom, which
moves every edge of the view a few pixels at once. Structural similarity
(SSIM) of the two views, each standardised so light and gain do not count,
sees exactly that, and misses what the embedding sees (covers, blur, a
view with no picture). The distance is 1 - SSIM of the standardised
thumbnails: 0 for the same picture, about 1 for an unrelated one.

Why in core and not in vision: the vision layer measures a view once, when it
is seen (``vision.stats`` makes the thumbnail with the other statistics); how
far two stored measurements lie apart is part of the judgement, like the
sharpness ratio, and only the decision uses it (its ``structure_*`` parameters
were tuned on exactly this distance). So the thumbnail's format, written and
read, lives here in one place, and the decision needs no layer above core.
OpenCV is a dependency of every install; its Gaussian filter is the one the
parameters were tuned with.

Thumbnails travel inside ``vision.stats.ViewStats`` (and so in the reference
store's JSON) as ``"<w>x<h>:<base64 of the grey pixels>"``: 96 x 54 px are
5 KB of pixels, 7 KB as text, and a string keeps ViewStats hashable and its JSON plain.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

#: Thumbnail width in pixels (height keeps the aspect). Chosen on cases from footage/train
#: (docs/evaluation.md): 64, 96 and 160 px ranked drifted views alike; 96 is cheap.
THUMB_WIDTH = 96
#: Grey standard deviation each thumbnail is scaled to before SSIM, around grey 128.
_Z_STD = 50.0


def thumbnail(grey: np.ndarray, width: int = THUMB_WIDTH) -> str:
    """The encoded thumbnail of a grey uint8 view (any size), ``width`` px wide (never wider than the view)."""
    h, w = grey.shape[:2]
    width = min(width, w) if width != THUMB_WIDTH else width
    th = max(8, round(h * width / w))
    small = grey if (width, th) == (w, h) else cv2.resize(grey, (width, th), interpolation=cv2.INTER_AREA)
    return f"{width}x{th}:" + base64.b64encode(np.ascontiguousarray(small, np.uint8).tobytes()).decode("ascii")


def standardise(img: np.ndarray) -> np.ndarray:
    """A float grey image scaled to grey 128 +- ``_Z_STD``, so light and gain do not count in SSIM."""
    return np.asarray((img - img.mean()) / (img.std() + 1e-3) * _Z_STD + 128.0)


def decode(text: object) -> np.ndarray | None:
    """The standardised float thumbnail encoded in ``text``; None when there is none or it is damaged."""
    raw = decode_grey(text)
    return None if raw is None else standardise(raw)


def decode_grey(text: object) -> np.ndarray | None:
    """The float thumbnail encoded in ``text`` in its own grey levels (0-255, where a blown-out
    light shows as such); None when there is none or it is damaged."""
    # Not cached: a query's thumbnail is new at every check, and a cache big enough for a
    # thousand cameras' references would hold ~30 MB to save ~0.1 ms per check.
    if not isinstance(text, str) or not text:
        return None
    try:
        size, data = text.split(":", 1)
        w, h = (int(v) for v in size.split("x"))
        raw = np.frombuffer(base64.b64decode(data, validate=True), np.uint8)
        if w < 1 or h < 1 or raw.size != w * h:
            return None
    except (ValueError, TypeError):
        return None
    return raw.reshape(h, w).astype(np.float32)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey float images (Wang et al. 2004, Gaussian window 1.5).

    The plain mean of the SSIM map: leaving out its worst share would forgive a near
    car more than a move, but also the part of a rotation or zoom that moves most
    (tried on cases from footage/train, docs/evaluation.md: no gain).
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.GaussianBlur(x, (11, 11), 1.5))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def distance(thumb: object, ref_thumb: object) -> float | None:
    """1 - SSIM of a view's and its reference's encoded thumbnails; None if either has none.

    A view whose frame changed shape (the camera's resolution was changed) is
    resized to the reference's thumbnail first.
    """
    q, r = decode(thumb), decode(ref_thumb)
    if q is None or r is None:
        return None
    if q.shape != r.shape:
        q = np.asarray(cv2.resize(q, (r.shape[1], r.shape[0]), interpolation=cv2.INTER_AREA))
    return 1.0 - ssim(r, q)
