"""The process-wide settings OpenCV's FFmpeg backend reads from the environment.

FFmpeg takes its capture options (RTSP transport, probe sizes) and its log
level from environment variables read at each open, so they are set here when
a capture is opened, never when a module is imported: importing camwatch
changes nothing in the process it is imported into.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import cv2

OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"

_quiet_lock = threading.Lock()
_quieted = False


def quiet_ffmpeg() -> None:
    """Silence FFmpeg and OpenCV unless the user set their levels; call before any FFmpeg open.

    They print straight to stderr, past our secret-scrubbing log filter, and our
    SourceError already says what failed. Done once, under a lock, so no open
    in another thread reads the environment while it changes.
    """
    global _quieted
    with _quiet_lock:
        if _quieted:
            return
        os.environ.setdefault(LOGLEVEL_ENV, "-8")
        if "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        _quieted = True


class CaptureOptions:
    """Sets OPENCV_FFMPEG_CAPTURE_OPTIONS around an open, safely across threads.

    FFmpeg reads the variable at each open, so two cameras opening at once with
    different transports would race. Opens that want the value already in
    force share it (no serialisation at all in the usual all-TCP case); one
    that wants another value waits, bounded by its deadline, until the current
    holders are released. OpenCV reads the variable first thing in its open,
    before any network I/O, so a hold is released when the open returns or
    lapses HOLD_S after it was taken, whichever comes first: a camera hung in
    its open cannot hold cameras of the other transport back. A lapse is a
    time the waiters wait for, not a timer thread: one of those per open cost
    ~0.2 ms of CPU on every check of every RTSP camera.
    """

    HOLD_S = 0.25

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        #: The holds not released yet: their number -> when they lapse (time.monotonic).
        self._holds: dict[int, float] = {}
        self._taken = 0

    def _lapse(self, now: float) -> None:
        for key in [k for k, until in self._holds.items() if until <= now]:
            del self._holds[key]

    def acquire(self, value: str, deadline: float) -> Callable[[], None] | None:
        """A release function (idempotent), or None if the deadline (time.monotonic) passed first."""
        with self._cond:
            while True:
                now = time.monotonic()
                self._lapse(now)
                if not self._holds or self._value == value:
                    break
                left = deadline - now
                if left <= 0:
                    return None
                self._cond.wait(min(left, min(self._holds.values()) - now))
            os.environ[OPTIONS_ENV] = value
            self._value = value
            self._taken += 1
            key = self._taken
            self._holds[key] = now + self.HOLD_S

        def release() -> None:
            with self._cond:
                if self._holds.pop(key, None) is not None:
                    self._cond.notify_all()

        return release


#: The one instance every RTSP open goes through.
capture_options = CaptureOptions()
