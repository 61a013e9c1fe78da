"""What every frame source promises, and how a source says that it failed.

A source's ``read()`` gives a *fresh* frame or raises ``SourceError`` with a
bounded ``reason`` (a metrics label). Its message is one line: the camera's
redacted URL and what went wrong, never a password. It does not name the
camera's id: everyone who shows it does (the daemon's ``camera X unavailable:
...``, ``check``'s row, ``enroll``'s line), and lines that named it twice were
hard to read.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from camwatch.config import CameraConfig
from camwatch.core.errors import SourceError
from camwatch.core.secrets import mask, redact_url, scrub
from camwatch.core.types import Frame

#: Used when a camera's timeout is missing or not positive.
DEFAULT_TIMEOUT_S = 10.0


class FrameSource(Protocol):
    """What every source offers; ``read`` never blocks past ``camera.timeout`` (+slack)."""

    def read(self) -> Frame: ...

    def close(self) -> None: ...


def camera_timeout(camera: CameraConfig) -> float:
    """The camera's timeout in seconds, or the default if it is not a positive number."""
    try:
        t = float(camera.timeout)
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT_S
    return t if t > 0 else DEFAULT_TIMEOUT_S


def source_error(camera: CameraConfig, reason: str, what: str) -> SourceError:
    """A one-line SourceError: the camera's redacted URL, then ``what``; masked and scrubbed once more."""
    password = [camera.password] if camera.password else []
    shown = camera.redacted_url or redact_url(str(camera.url), password)
    text = mask(f"{shown}: {what}", password)
    return SourceError(reason, scrub(" ".join(text.split())))


def to_bgr(image: np.ndarray) -> np.ndarray:
    """BGR uint8 HxWx3 whatever the decoder gave (grey, BGRA, 16-bit)."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, float(image.max())))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
