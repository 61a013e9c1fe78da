"""Local cameras: an image file, a folder of images, or a video file (``file://`` URLs or paths).

Handy for trying camwatch and for tests, and real deployments use them too (a
recorder writing the latest snapshot to a share). A read runs in a bounded
worker like a network read: a file on a dead NFS mount hangs just the same.
"""

from __future__ import annotations

import re
import threading
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from camwatch.config import CameraConfig
from camwatch.core.types import Frame
from camwatch.sources.bounded import DEADLINE_SLACK_S, Bounded
from camwatch.sources.capture import quiet_ffmpeg
from camwatch.sources.protocol import FrameSource, camera_timeout, source_error, to_bgr

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".h264", ".264",
                  ".mjpeg", ".mjpg", ".mpg", ".mpeg", ".flv"}


def _natural_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _read_image(camera: CameraConfig, path: Path) -> np.ndarray:
    try:
        # read_bytes reads to end of file, so a pipe or special file is read whole; np.fromfile
        # sizes the file first and can stop at 0 bytes on a pipe, closing it under the writer.
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except FileNotFoundError:
        raise source_error(camera, "connect", f"no such file: {path}") from None
    except OSError as exc:
        raise source_error(camera, "connect", f"cannot read {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise source_error(camera, "decode", f"{path} is not an image OpenCV can decode")
    return to_bgr(image)


class ImageFileSource:
    """One image file, re-read at every read: replacing the file changes the view."""

    def __init__(self, camera: CameraConfig, path: Path):
        self.camera, self.path = camera, path

    def read(self) -> Frame:
        return Frame(image=_read_image(self.camera, self.path), captured_at=time.time())

    def close(self) -> None:
        pass


class FolderSource:
    """The images of a folder in numeric order, one per read, looping; re-listed per pass."""

    def __init__(self, camera: CameraConfig, path: Path):
        self.camera, self.path = camera, path
        self._files: list[Path] = []
        self._index = 0

    def _list(self) -> list[Path]:
        try:
            names = [p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        except OSError as exc:
            raise source_error(self.camera, "connect", f"cannot list {self.path}: {exc.strerror or exc}") from None
        return sorted(names, key=lambda p: _natural_key(p.name))

    def read(self) -> Frame:
        if self._index >= len(self._files):
            self._files, self._index = self._list(), 0
            if not self._files:
                raise source_error(self.camera, "ended", f"no images in {self.path}")
        path = self._files[self._index]
        self._index += 1
        return Frame(image=_read_image(self.camera, path), captured_at=time.time())

    def close(self) -> None:
        pass


class VideoFileSource:
    """A video file, the next frame per read, looping at the end."""

    def __init__(self, camera: CameraConfig, path: Path):
        self.camera, self.path = camera, path
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise source_error(self.camera, "connect", f"no such file: {self.path}")
        quiet_ffmpeg()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise source_error(self.camera, "decode", f"{self.path} is not a video OpenCV can read")
        return cap

    def read(self) -> Frame:
        for _ in range(2):
            if self._cap is None:
                self._cap = self._open()
            ok, image = self._cap.read()
            if ok and image is not None:
                return Frame(image=to_bgr(image), captured_at=time.time())
            self._cap.release()  # at the end: reopen from the start (seeking is unreliable)
            self._cap = None
        raise source_error(self.camera, "ended", f"{self.path} has no readable frames")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class _BoundedLocal:
    """Runs a local source's read in a bounded worker: a dead NFS mount is a hang too."""

    def __init__(self, camera: CameraConfig, inner: FrameSource):
        self.camera, self.inner = camera, inner
        self.timeout = camera_timeout(camera)
        self._bounded = Bounded(f"file-{camera.id}", partial(source_error, camera))
        self._lock = threading.Lock()

    def read(self) -> Frame:
        with self._lock:
            limit = self.timeout + DEADLINE_SLACK_S
            return self._bounded.call(self.inner.read, limit, late=f"no frame within {limit:.1f} s")

    def close(self) -> None:
        if not self._bounded.busy:
            self.inner.close()


def local_source(camera: CameraConfig, path: Path) -> FrameSource:
    """The source for a local path: a folder, a video (by its suffix) or an image; bounded."""
    if path.is_dir():
        inner: FrameSource = FolderSource(camera, path)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        inner = VideoFileSource(camera, path)
    else:
        inner = ImageFileSource(camera, path)
    return _BoundedLocal(camera, inner)

