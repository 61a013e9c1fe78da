"""RTSP cameras through OpenCV's FFmpeg backend: a bounded probe, snapshot and stream sources.

``rtsp://`` and ``rtsps://`` URLs; ``?transport=udp`` (or tcp, the default,
udp_multicast, http) is ours and is taken off before FFmpeg sees the URL.
Snapshot mode connects per check; stream mode holds a connection whose reader
keeps only the newest frame. Either way ``read`` returns within the camera's
timeout (plus slack), however FFmpeg behaves.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import cv2

from camwatch.config import CameraConfig
from camwatch.core.backoff import Backoff
from camwatch.core.errors import SourceError
from camwatch.core.types import Frame
from camwatch.sources.bounded import DEADLINE_SLACK_S, Bounded
from camwatch.sources.capture import capture_options, quiet_ffmpeg
from camwatch.sources.protocol import camera_timeout, source_error, to_bgr


def rtsp_target(url: str) -> tuple[str, str]:
    """Split our ``transport=`` query parameter off an RTSP URL: (url for FFmpeg, transport)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    transport = "tcp"
    kept = []
    for key, value in query:
        if key == "transport" and value.lower() in ("tcp", "udp", "udp_multicast", "http"):
            transport = value.lower()
        else:
            kept.append((key, value))
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return clean, transport


def rtsp_probe(camera: CameraConfig, url: str, deadline: float) -> None:
    """Check, in Python and bounded, that an RTSP server answers before OpenCV opens it.

    OpenCV's FFmpeg backend serialises opens behind one process-wide lock
    (measured: while one open waited 3 s on a silent server, another camera's
    open waited the same 3 s). A camera that is off (SYN unanswered) or hung
    would so delay every other RTSP camera's open. This probe (TCP connect, then
    OPTIONS for rtsp://; TCP connect only for rtsps://) takes no lock, so such a
    camera fails here on its own, and only servers that answer reach OpenCV.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (322 if parts.scheme == "rtsps" else 554)
    except ValueError:
        raise source_error(camera, "connect", "the URL's port is not a number") from None
    if not host:
        raise source_error(camera, "connect", "the URL has no host")

    def left() -> float:
        rest = deadline - time.monotonic()
        if rest <= 0:
            raise source_error(camera, "timeout", "the RTSP server did not answer in time")
        return rest

    try:
        sock = socket.create_connection((host, port), timeout=left())
    except TimeoutError:
        raise source_error(camera, "timeout", f"no TCP connection to port {port} in time") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise source_error(camera, "connect", f"cannot connect to port {port} ({why})") from None
    with sock:
        if parts.scheme != "rtsp":
            return
        netloc = host if ":" not in host else f"[{host}]"
        target = urlunsplit(("rtsp", f"{netloc}:{port}", parts.path or "/", parts.query, ""))
        request = f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: camwatch\r\n\r\n"
        reply = b""
        try:
            sock.settimeout(left())
            sock.sendall(request.encode())
            while b"\r\n\r\n" not in reply and len(reply) < 8192:
                sock.settimeout(left())
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            raise source_error(camera, "timeout", "the RTSP server accepted but did not answer in time") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise source_error(camera, "connect", f"the RTSP server dropped the connection ({why})") from None
        if not reply.startswith(b"RTSP/"):
            what = "closed the connection" if not reply else "answered, but not in RTSP"
            raise source_error(camera, "connect", f"port {port} {what}")


def open_capture(camera: CameraConfig, url: str, transport: str, timeout_s: float,
                 threads: int = 0) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture or a SourceError; timeouts passed at open (GUIDE.md).

    ``threads``: FFmpeg decoder threads (0 = its default, one per core). One frame
    per connection decodes cheaper on one thread: measured 720p 20 -> 16 ms CPU and
    155 -> 110 ms wall per open + first frame, 1080p 38 -> 30 ms CPU.
    """
    quiet_ffmpeg()
    deadline = time.monotonic() + timeout_s
    rtsp_probe(camera, url, deadline)
    open_s = max(1.0, deadline - time.monotonic())
    options = f"rtsp_transport;{transport}|analyzeduration;0|probesize;32"
    release = capture_options.acquire(options, deadline)
    if release is None:
        raise source_error(camera, "timeout", "waited too long for another camera's open")
    started = time.monotonic()
    try:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(max(1.0, timeout_s) * 1000)]
        if threads and hasattr(cv2, "CAP_PROP_N_THREADS"):
            params += [cv2.CAP_PROP_N_THREADS, int(threads)]
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    finally:
        release()
    if not cap.isOpened():
        cap.release()
        if time.monotonic() - started >= open_s * 0.95:
            raise source_error(camera, "timeout", f"no answer within {timeout_s:.1f} s")
        raise source_error(camera, "connect", f"cannot open the stream over {transport} "
                     "(refused, unreachable, wrong path or credentials, or not H.264/H.265)")
    return cap


class RtspSnapshotSource:
    """Connect, take one fresh frame, disconnect: cheap for long check intervals.

    Holding no connection between checks costs nothing while idle and cannot
    serve a stale frame; the price is one open plus frames up to a keyframe.
    """

    def __init__(self, camera: CameraConfig):
        self.camera = camera
        self.timeout = camera_timeout(camera)
        self._url, self._transport = rtsp_target(str(camera.url))
        self._bounded = Bounded(f"rtsp-snap-{camera.id}", partial(source_error, camera))
        self._lock = threading.Lock()

    def _grab(self) -> Frame:
        cap = open_capture(self.camera, self._url, self._transport, self.timeout, threads=1)
        try:
            ok, image = cap.read()
            if not ok or image is None:
                raise source_error(self.camera, "stalled", "connected but no frame arrived")
            return Frame(image=to_bgr(image), captured_at=time.time())
        finally:
            cap.release()

    def read(self) -> Frame:
        with self._lock:
            limit = self.timeout + DEADLINE_SLACK_S
            return self._bounded.call(self._grab, limit, late=f"no frame within {limit:.1f} s")

    def close(self) -> None:
        pass


@dataclass
class _Attempt:
    """One connection of a stream source, as its reader reports it to the supervisor."""

    started: float
    opened: float | None = None
    last_frame: float | None = None
    error: SourceError | None = None


class RtspStreamSource:
    """A held connection: a reader thread keeps only the newest frame.

    A supervisor thread watches the reader: no NEW frame for ``timeout``
    seconds marks the stream stalled, the connection is dropped (a reader hung
    inside FFmpeg is abandoned, not waited for) and re-made after a Backoff
    delay. ``read`` never waits on the network beyond ``timeout``.
    """

    POLL_S = 0.1

    def __init__(self, camera: CameraConfig, backoff: Backoff | None = None):
        self.camera = camera
        self.timeout = camera_timeout(camera)
        self._url, self._transport = rtsp_target(str(camera.url))
        self.backoff = backoff or Backoff(base=0.5, cap=min(30.0, max(2.0, self.timeout * 3)))
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0              # increments per frame received
        self._returned_seq = 0     # seq of the last frame handed out
        self._last_error: SourceError | None = None
        self._stalled = False
        self._generation = 0
        self._closed = threading.Event()
        self.reconnects = 0
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"rtsp-stream-{camera.id}")
        self._supervisor.start()

    # reader: one per connection generation
    def _reader(self, generation: int, state: _Attempt) -> None:
        cap = None
        try:
            cap = open_capture(self.camera, self._url, self._transport, self.timeout)
            state.opened = time.monotonic()
            while not self._closed.is_set() and generation == self._generation:
                ok, image = cap.read()
                if not ok or image is None:
                    raise source_error(self.camera, "stalled", "the stream stopped sending frames")
                if generation != self._generation:
                    break
                frame = Frame(image=to_bgr(image), captured_at=time.time())
                with self._cond:
                    self._latest = frame
                    self._seq += 1
                    self._stalled = False
                    self._last_error = None
                    state.last_frame = time.monotonic()
                    self._cond.notify_all()
        except SourceError as exc:
            state.error = exc
        except Exception as exc:  # an OpenCV error: report it, never crash the thread silently
            state.error = source_error(self.camera, "connect", f"capture failed: {type(exc).__name__}")
        finally:
            if cap is not None:
                cap.release()

    def _supervise(self) -> None:
        previous: threading.Thread | None = None
        while not self._closed.is_set():
            if previous is not None and previous.is_alive():
                # The last reader is stuck inside FFmpeg: wait for it rather than pile up threads.
                with self._cond:
                    self._last_error = source_error(self.camera, "stalled", "the last connection is still hung")
                    self._stalled = True
                    self._cond.notify_all()
                self._closed.wait(self.backoff.next_delay())
                continue
            generation = self._generation
            state = _Attempt(started=time.monotonic())
            reader = threading.Thread(target=self._reader, args=(generation, state), daemon=True,
                                      name=f"rtsp-read-{self.camera.id}")
            reader.start()
            previous = reader
            got_frames = False
            while not self._closed.is_set():
                reader.join(self.POLL_S)
                last = state.last_frame
                if last is not None and not got_frames:
                    got_frames = True
                    self.backoff.reset()
                if not reader.is_alive():
                    break
                since = last if last is not None else state.started
                # Open has its own timeout; allow it plus slack before calling it hung.
                limit = self.timeout if last is not None else self.timeout * 2 + DEADLINE_SLACK_S
                if time.monotonic() - since > limit:
                    if state.error is None:
                        state.error = source_error(self.camera, "stalled" if last is not None else "timeout",
                                                   f"no new frame for {self.timeout:.1f} s")
                    break
            with self._cond:
                self._generation += 1  # the old reader stops (and releases) when it returns
                err = state.error or source_error(self.camera, "stalled", "the stream ended")
                if not self._closed.is_set():
                    self._last_error = err
                    self._stalled = True
                self._cond.notify_all()
            if self._closed.is_set():
                break
            self.reconnects += 1
            self._closed.wait(self.backoff.next_delay())

    def read(self) -> Frame:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                if self._closed.is_set():
                    raise source_error(self.camera, "ended", "source is closed")
                frame = self._latest
                if frame is not None and not self._stalled:
                    newer = self._seq != self._returned_seq
                    young = time.time() - frame.captured_at < self.timeout
                    if newer or young:
                        self._returned_seq = self._seq
                        return frame
                if self._last_error is not None:
                    # Down or stalled: say so now, the reconnect runs behind. A fresh
                    # copy, so threads do not share (and grow) one traceback.
                    raise SourceError(self._last_error.reason, str(self._last_error))
                left = deadline - time.monotonic()
                if left <= 0:
                    if frame is None:
                        raise source_error(self.camera, "timeout", f"no frame within {self.timeout:.1f} s")
                    raise source_error(self.camera, "stalled", f"no new frame for {self.timeout:.1f} s")
                self._cond.wait(min(left, 0.25))

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

