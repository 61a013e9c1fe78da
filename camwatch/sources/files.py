"""Local cameras: an image file, a folder of images, or a video file (``file://`` URLs or paths).

Handy for trying camwatch and for tests, and real deployments use them too (a
recorder writing the latest snapshot to a share). A read runs in a bounded
worker like a network read: a file on a dead NFS mount hangs just the same.

A path is stat'ed before it is opened: only a regular file is read, unless the
camera sets ``allow_special_file`` (a recorder's FIFO). ``url: /dev/zero``
would otherwise be read for ever (measured: 4.7 GB in 6.6 s, and an abandoned
worker reading on), and merely opening some devices acts (a watchdog starts
counting). Whatever the file, at most the byte cap is read, and an image's
header is checked against ``max_pixels`` before it is decoded
(``vision.images``).
"""

from __future__ import annotations

import os
import re
import stat
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
from camwatch.vision.images import ImageFileError, decode_image, max_file_bytes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".h264", ".264",
                  ".mjpeg", ".mjpg", ".mpg", ".mpeg", ".flv"}


def _natural_key(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _stat(camera: CameraConfig, path: Path, where: str = "") -> os.stat_result:
    """The file's stat (following links), or the camera's SourceError if it cannot be read or is special.

    ``where`` starts each message: "" for the camera's own file (the message already starts
    with its URL), "NAME: " for one of a folder's images.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise source_error(camera, "connect", f"{where}no such file") from None
    except OSError as exc:
        raise source_error(camera, "connect", f"{where}cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode) and not camera.allow_special_file:
        raise source_error(camera, "unsupported", f"{where}{_kind(info.st_mode)}, not a regular file: not read "
                                                  "(allow_special_file: true reads it)")
    return info


def read_capped(camera: CameraConfig, path: Path, cap: int, where: str = "") -> bytes:
    """At most ``cap`` bytes of the file; SourceError if it is (or grows) larger, or is special.

    Size checked with stat first; a regular file is opened non-blocking and checked
    again on its descriptor, so a file swapped for a FIFO between the two is refused
    rather than waited on.
    """
    info = _stat(camera, path, where)
    if stat.S_ISREG(info.st_mode) and info.st_size > cap:
        raise source_error(camera, "too_large", f"{where}a file of {info.st_size} bytes, over the {cap} byte "
                                                "limit: not read")
    special = not stat.S_ISREG(info.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (0 if special else getattr(os, "O_NONBLOCK", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise source_error(camera, "connect", f"{where}cannot read it ({exc.strerror or exc})") from None
    try:
        with open(fd, "rb", buffering=0, closefd=True) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) and not camera.allow_special_file:
                raise source_error(camera, "unsupported", f"{where}not a regular file: not read "
                                                          "(allow_special_file: true reads it)")
            chunks: list[bytes] = []
            size = 0
            while size <= cap:
                chunk = f.read(min(1 << 20, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise source_error(camera, "connect", f"{where}cannot read it ({exc.strerror or exc})") from None
    if size > cap:
        raise source_error(camera, "too_large", f"{where}over {cap} bytes: not read further")
    return b"".join(chunks)


def _read_image(camera: CameraConfig, path: Path, where: str = "") -> np.ndarray:
    data = read_capped(camera, path, max_file_bytes(camera.max_pixels), where)
    if not data:
        raise source_error(camera, "decode", f"{where}the file is empty")
    try:
        return to_bgr(decode_image(data, camera.max_pixels))
    except ImageFileError as exc:
        raise source_error(camera, exc.reason, f"{where}{exc}") from None


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
            raise source_error(self.camera, "connect", f"cannot list the folder ({exc.strerror or exc})") from None
        return sorted(names, key=lambda p: _natural_key(p.name))

    def read(self) -> Frame:
        if self._index >= len(self._files):
            self._files, self._index = self._list(), 0
            if not self._files:
                raise source_error(self.camera, "ended", "no images in the folder")
        path = self._files[self._index]
        self._index += 1
        return Frame(image=_read_image(self.camera, path, f"{path.name}: "), captured_at=time.time())

    def close(self) -> None:
        pass


class VideoFileSource:
    """A video file, the next frame per read, looping at the end."""

    def __init__(self, camera: CameraConfig, path: Path):
        self.camera, self.path = camera, path
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> cv2.VideoCapture:
        _stat(self.camera, self.path)
        quiet_ffmpeg()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise source_error(self.camera, "decode", "not a video OpenCV can read")
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
        raise source_error(self.camera, "ended", "no readable frames")

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

