"""HTTP snapshot cameras: ``http://`` and ``https://`` URLs that answer with a JPEG or PNG.

The fetch itself (auth, TLS, byte cap, deadline) is the shared HttpClient's;
this module turns its answer into a frame, or into the SourceError that says
why it is not one (an error status, a login page, a body too large to be a
snapshot, an image whose header declares more pixels than the camera's
``max_pixels``, bytes that do not decode). The decode runs in the client's
bounded worker, after the body is complete and within the same deadline, so
a frame decoded too late is dropped with the worker instead of kept.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from camwatch.config import CameraConfig
from camwatch.core.types import Frame
from camwatch.sources.httpclient import HttpClient, HttpError, HttpResponse, is_text
from camwatch.sources.protocol import camera_timeout, source_error, to_bgr
from camwatch.vision.images import ImageFileError, decode_image

#: Largest snapshot body accepted (an HD JPEG is well under 2 MB).
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024
#: Enough of a text answer to tell an error page from an image.
TEXT_BYTES = 4096

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: HttpError reasons as a camera reports them (a TLS failure is a failure to connect; a
#: refused redirect is an answer we do not take, like an error status).
_REASONS = {"tls": "connect", "redirect": "http_status"}


def looks_like_image(data: bytes) -> bool:
    """Whether the bytes start like a JPEG, PNG, BMP, WebP or TIFF file."""
    return data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC) or data[:2] == b"BM" \
        or data[:4] in (b"RIFF",) or data[:4] in (b"II*\x00", b"MM\x00*")


class HttpSnapshotSource:
    """A snapshot URL fetched per read over the camera's own keep-alive HttpClient."""

    def __init__(self, camera: CameraConfig, max_bytes: int = MAX_SNAPSHOT_BYTES):
        self.camera = camera
        self.timeout = camera_timeout(camera)
        self.max_bytes = max_bytes
        self._client = HttpClient(str(camera.url), self.timeout, username=camera.username,
                                  password=camera.password, auth=camera.auth, name=f"http-{camera.id}",
                                  redirects=camera.redirects)
        self._lock = threading.Lock()

    def read(self) -> Frame:
        with self._lock:
            try:
                image = self._client.request_then(self._image, "GET",
                                                  headers={"Accept": "image/jpeg, image/*;q=0.9"},
                                                  max_bytes=self.max_bytes, text_max_bytes=TEXT_BYTES)
            except HttpError as exc:
                raise source_error(self.camera, _REASONS.get(exc.reason, exc.reason), str(exc)) from None
            return Frame(image=image, captured_at=time.time())

    def _image(self, resp: HttpResponse) -> np.ndarray:
        if resp.status in (401, 403):
            raise source_error(self.camera, "auth", f"HTTP {resp.status}: credentials refused or missing")
        if not 200 <= resp.status < 300:
            raise source_error(self.camera, "http_status", f"HTTP {resp.status}")
        ctype = resp.content_type
        length = resp.announced_length
        if length is not None and length > self.max_bytes:
            raise source_error(self.camera, "too_large",
                               f"body of {length} bytes is over the {self.max_bytes} byte limit")
        if not resp.complete and not is_text(ctype):
            raise source_error(self.camera, "too_large", f"body over the {self.max_bytes} byte limit")
        data = resp.body
        if not looks_like_image(data) and not ctype.startswith("image/"):
            raise source_error(self.camera, "not_image",
                               f"the answer is {ctype or 'untyped'}, not an image (a login or error page?)")
        if not data:
            raise source_error(self.camera, "decode", f"an empty answer of {ctype or 'no type'}")
        try:
            return to_bgr(decode_image(data, self.camera.max_pixels))
        except ImageFileError as exc:
            raise source_error(self.camera, exc.reason, str(exc)) from None

    def close(self) -> None:
        self._client.close()
