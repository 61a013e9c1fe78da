"""Frame sources: where a camera's pictures come from.

One ``FrameSource`` per camera, opened with ``open_source(camera)``, whose
``read()`` gives a *fresh* frame or raises ``SourceError`` with a bounded
``reason`` (a metrics label). Every blocking call is bounded (``bounded``): it
runs in a worker thread the caller waits for with a hard deadline, so even a
library that ignores its own timeouts cannot delay a check (or another camera)
past ``camera.timeout`` plus a small slack.

URL forms, and the module for each:
  rtsp://, rtsps://   ``rtsp``: OpenCV's FFmpeg backend; ``?transport=udp`` (or tcp, the default)
  http://, https://   ``http``: a JPEG/PNG snapshot URL (basic or digest auth), over ``httpclient``
  file://..., a path  ``files``: an image (re-read each time), a folder of images, or a video
  demo:scene?...      ``demo``: a synthetic scene
Error messages name the camera id and its redacted URL, never a password (``protocol``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from camwatch.config import CameraConfig
from camwatch.sources.bounded import DEADLINE_SLACK_S, abandoned_workers
from camwatch.sources.demo import DemoSource
from camwatch.sources.files import local_source
from camwatch.sources.http import HttpSnapshotSource
from camwatch.sources.protocol import FrameSource, source_error
from camwatch.sources.rtsp import RtspSnapshotSource, RtspStreamSource

__all__ = ["DEADLINE_SLACK_S", "FrameSource", "abandoned_workers", "open_source"]

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def open_source(camera: CameraConfig) -> FrameSource:
    """The source for a camera's URL. Cheap: no network I/O happens here.

    (A stream-mode RTSP source starts its reader thread, which connects in the
    background.) Unknown schemes raise SourceError("unsupported").
    """
    url = str(camera.url or "")
    mode = camera.mode or "snapshot"
    scheme = url.split(":", 1)[0].lower() if _SCHEME.match(url) else ""
    if scheme in ("rtsp", "rtsps"):
        return RtspStreamSource(camera) if mode == "stream" else RtspSnapshotSource(camera)
    if scheme in ("http", "https"):
        return HttpSnapshotSource(camera)
    if scheme == "demo":
        return DemoSource(camera)
    if scheme == "file":
        parts = urlsplit(url)
        return local_source(camera, Path(unquote((parts.netloc or "") + parts.path)))
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        if not url:
            raise source_error(camera, "unsupported", "no URL given")
        return local_source(camera, Path(url).expanduser())
    raise source_error(camera, "unsupported",
                       f"scheme {scheme}: is not supported (use rtsp://, rtsps://, http(s)://, file:// or demo:)")
