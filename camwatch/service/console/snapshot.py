"""The last view a camera's check saw, kept for the console as one small JPEG per camera.

Why a thumbnail made at check time: keeping the decoded frame (0.7 MB at
640x360) for 1,000 cameras would hold 700 MB; a 320-px JPEG is ~10 KB, made
once per check only while the console is enabled, and served as is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

#: Width in pixels of the thumbnails the console shows (height follows the aspect ratio).
THUMB_WIDTH = 320
#: JPEG quality of the thumbnails (small, still readable).
THUMB_QUALITY = 75


def thumbnail(image_bgr: np.ndarray, width: int = THUMB_WIDTH) -> bytes:
    """A JPEG of ``image_bgr`` at most ``width`` pixels wide."""
    h, w = image_bgr.shape[:2]
    if w > width:
        image_bgr = cv2.resize(image_bgr, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return bytes(buf)


@dataclass(frozen=True)
class LastView:
    """One assessed check: when, what it measured, and the view as a thumbnail."""

    checked_at: float            # unix time the frame was captured
    similarity: float
    threshold: float             # the threshold the view was held to
    drifted: bool                # this check's own verdict (before hysteresis)
    kind: str | None
    jpeg: bytes

    @classmethod
    def of(cls, image_bgr: np.ndarray, checked_at: float, similarity: float, threshold: float, drifted: bool,
           kind: str | None) -> LastView:
        return cls(float(checked_at), float(similarity), float(threshold), bool(drifted), kind, thumbnail(image_bgr))


#: Seconds one point of a camera's 24-hour chart covers.
BUCKET_S = 300
#: Points kept per camera: 24 hours.
BUCKETS = 24 * 3600 // BUCKET_S


class ViewLog:
    """A camera's latest view and its last 24 hours of checks, in fixed memory.

    Why fixed arrays: 1,000 cameras x 288 five-minute points x (lowest
    similarity, threshold, checks, drifted checks) is 4.6 MB whatever the
    interval; a list of every check at a 10-s interval would be 8,640 per camera
    per day. Written by the inference thread, read by the console: a lock
    keeps a point whole.
    """

    def __init__(self) -> None:
        self.last: LastView | None = None
        self._slot = np.full(0, -1, np.int64)           # which bucket (t // BUCKET_S) each row holds
        self._rows = np.zeros((0, 4), np.float32)       # lowest similarity, threshold, checks, drifted
        self._lock = threading.Lock()

    def add(self, view: LastView) -> None:
        bucket = int(view.checked_at // BUCKET_S)
        i = bucket % BUCKETS
        with self._lock:
            self.last = view
            if not len(self._slot):   # made on the first check: nothing is held while the console is off
                self._slot, self._rows = np.full(BUCKETS, -1, np.int64), np.zeros((BUCKETS, 4), np.float32)
            if self._slot[i] != bucket:
                self._slot[i] = bucket
                self._rows[i] = (view.similarity, view.threshold, 0, 0)
            row = self._rows[i]
            row[0] = min(row[0], view.similarity)
            row[1] = view.threshold
            row[2] += 1
            row[3] += int(view.drifted)

    def series(self, now: float) -> list[tuple[float, float, float, int, int]]:
        """(bucket start, lowest similarity, threshold, checks, drifted checks) of the last 24 h, oldest first."""
        first = int(now // BUCKET_S) - BUCKETS + 1
        with self._lock:
            slots, rows = self._slot.copy(), self._rows.copy()
        keep = np.flatnonzero(slots >= first)
        keep = keep[np.argsort(slots[keep])]
        return [(float(slots[i] * BUCKET_S), round(float(rows[i, 0]), 4), round(float(rows[i, 1]), 4),
                 int(rows[i, 2]), int(rows[i, 3])) for i in keep]
