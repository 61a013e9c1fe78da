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
import threading
from collections import OrderedDict

import cv2
import numpy as np

#: Thumbnail width in pixels (height keeps the aspect). Chosen on cases from footage/train
#: (docs/evaluation.md): 64, 96 and 160 px ranked drifted views alike; 96 is cheap.
THUMB_WIDTH = 96
#: Grey standard deviation each thumbnail is scaled to before SSIM, around grey 128.
_Z_STD = 50.0
#: Encoded images (thumbnails, ``core.scene`` layouts) made or decoded lately, kept decoded (``_Recent``).
RECENT = 64


class _Recent:
    """The last ``RECENT`` encoded images made or decoded, by the identity of their text: its grey levels
    (and standardised, once asked), as read-only arrays.

    Why: a check decodes the thumbnail and layout its own view's statistics
    encoded moments before, and its reference's thumbnail, the same text at
    every check (the store keeps its references' statistics); the learned scene
    decodes the same layouts each time it learns again. The same arrays, not
    decoded again: ~0.2 ms of CPU a check at 720p. By identity, not by value:
    no text is hashed, and an entry keeps its text alive so its id is not reused.
    Bounded, so a fleet's references are not all held (a thousand cameras'
    would be ~30 MB).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[str, np.ndarray, np.ndarray | None]] = OrderedDict()

    def get(self, text: str) -> tuple[np.ndarray, np.ndarray | None] | None:
        with self._lock:
            item = self._items.get(id(text))
            if item is None or item[0] is not text:
                return None
            self._items.move_to_end(id(text))
            return item[1], item[2]

    def put(self, text: str, grey: np.ndarray, standard: np.ndarray | None = None) -> None:
        grey.flags.writeable = False
        if standard is not None:
            standard.flags.writeable = False
        with self._lock:
            self._items[id(text)] = (text, grey, standard)
            self._items.move_to_end(id(text))
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_recent = _Recent(RECENT)


def thumbnail(grey: np.ndarray, width: int = THUMB_WIDTH) -> str:
    """The encoded thumbnail of a grey uint8 view (any size), ``width`` px wide (never wider than the view)."""
    h, w = grey.shape[:2]
    width = min(width, w) if width != THUMB_WIDTH else width
    th = max(8, round(h * width / w))
    small = grey if (width, th) == (w, h) else cv2.resize(grey, (width, th), interpolation=cv2.INTER_AREA)
    pixels = np.ascontiguousarray(small, np.uint8)
    text = f"{width}x{th}:" + base64.b64encode(pixels.tobytes()).decode("ascii")
    _recent.put(text, pixels.astype(np.float32))       # what decode_grey(text) gives
    return text


def standardise(img: np.ndarray) -> np.ndarray:
    """A float grey image scaled to grey 128 +- ``_Z_STD``, so light and gain do not count in SSIM."""
    return np.asarray((img - img.mean()) / (img.std() + 1e-3) * _Z_STD + 128.0)


def decode(text: object) -> np.ndarray | None:
    """The standardised float thumbnail encoded in ``text`` (read-only); None when there is none or it
    is damaged."""
    raw = decode_grey(text)
    if raw is None:
        return None
    assert isinstance(text, str)                       # decode_grey decodes nothing else
    known = _recent.get(text)
    if known is not None and known[1] is not None:
        return known[1]
    standard = standardise(raw)
    _recent.put(text, raw, standard)
    return standard


def decode_grey(text: object) -> np.ndarray | None:
    """The float thumbnail encoded in ``text`` in its own grey levels (0-255, where a blown-out
    light shows as such; read-only); None when there is none or it is damaged."""
    if not isinstance(text, str) or not text:
        return None
    known = _recent.get(text)
    if known is not None:
        return known[0]
    raw = _decode_grey(text)
    if raw is not None:
        _recent.put(text, raw)
    return raw


def _decode_grey(text: str) -> np.ndarray | None:
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
