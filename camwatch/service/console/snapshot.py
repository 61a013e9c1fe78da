"""The last view a camera's check saw, kept for the console as one small JPEG per camera.

Why a thumbnail made at check time: keeping the decoded frame (0.7 MB at
640x360) for 1,000 cameras would hold 700 MB; a 320-px JPEG is ~10 KB, made
once per check only while the console is enabled, and served as is.
"""

from __future__ import annotations

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
