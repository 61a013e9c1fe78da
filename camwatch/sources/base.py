"""Frame sources: where a camera's pictures come from.

One ``FrameSource`` per camera, opened with ``open_source(camera)``, whose
``read()`` gives a *fresh* frame or raises ``SourceError`` with a bounded
``reason`` (a metrics label). Every blocking call is bounded: network work runs
in a worker thread the caller waits for with a hard deadline, so even a library
that ignores its own timeouts cannot delay a check (or another camera) past
``camera.timeout`` plus a small slack. Such an abandoned worker is counted and a
source never has more than one in flight, so hung servers cannot pile up threads.

URL forms:
  rtsp://, rtsps://   OpenCV's FFmpeg backend; ``?transport=udp`` (or tcp, the default)
  http://, https://   a JPEG/PNG snapshot URL (basic or digest auth)
  file://..., a path  an image (re-read each time), a folder of images, or a video
  demo:scene?...      a synthetic scene (camwatch/sources/demo.py)
Error messages name the camera id and its redacted URL, never a password.
"""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import numpy as np

from camwatch.core.errors import SourceError
from camwatch.core.secrets import scrub

T = TypeVar("T")

#: Extra seconds a caller waits past ``camera.timeout`` for a worker to report.
DEADLINE_SLACK_S = 0.5
#: Largest snapshot body accepted (an HD JPEG is well under 2 MB).
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024
#: Abandoned (hung) worker threads allowed process-wide before new fetches are refused.
MAX_ABANDONED = 64

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".h264", ".264",
                  ".mjpeg", ".mjpg", ".mpg", ".mpeg", ".flv"}


@dataclass
class Frame:
    """One picture from a camera; ``captured_at`` is ``time.time()`` at arrival."""

    image: np.ndarray  # BGR uint8, HxWx3
    captured_at: float


class FrameSource(Protocol):
    """What every source offers; ``read`` never blocks past ``camera.timeout`` (+slack)."""

    def read(self) -> Frame: ...

    def close(self) -> None: ...


# -- backoff --------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with full jitter ("sleep = random(0, min(cap, base*2^n))").

    Full jitter spreads reconnects of many cameras that failed together (a
    switch reboot) instead of hammering the recorder in lockstep; ``reset``
    after a success so the next outage starts fast again.
    """

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0


# -- helpers --------------------------------------------------------------------


def _cam_id(camera: Any) -> str:
    return str(getattr(camera, "id", "?"))


def _redacted(camera: Any) -> str:
    red = getattr(camera, "redacted_url", None)
    text = red if isinstance(red, str) and red else scrub(str(getattr(camera, "url", "")))
    pw = getattr(camera, "password", None)
    if pw:
        text = text.replace(pw, "***")
    return text


def _timeout(camera: Any) -> float:
    t = getattr(camera, "timeout", None)
    try:
        t = float(t)
    except (TypeError, ValueError):
        return 10.0
    return t if t > 0 else 10.0


def _error(camera: Any, reason: str, what: str) -> SourceError:
    """A SourceError naming the camera and its redacted URL, scrubbed once more."""
    text = f"camera {_cam_id(camera)} ({_redacted(camera)}): {what}"
    pw = getattr(camera, "password", None)
    if pw:
        text = text.replace(pw, "***")
    return SourceError(reason, scrub(text))


_abandoned_lock = threading.Lock()
_abandoned = 0


def abandoned_workers() -> int:
    """How many workers were given up on and are still running (hung in a library)."""
    return _abandoned


class _Worker:
    """Run one call in a daemon thread; the caller waits at most a deadline.

    A source keeps one of these per attempt and refuses to start another while a
    previous one is still hung, which bounds threads per camera to one.
    """

    def __init__(self, fn: Callable[[], Any], name: str):
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.abandoned = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)

    def _run(self, fn: Callable[[], Any]) -> None:
        global _abandoned
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            with self._lock:
                self.done.set()
                if self.abandoned:
                    with _abandoned_lock:
                        _abandoned -= 1

    def start(self) -> None:
        self._thread.start()

    def wait(self, seconds: float) -> bool:
        if self.done.wait(max(0.0, seconds)):
            return True
        global _abandoned
        with self._lock:
            if self.done.is_set():
                return True
            self.abandoned = True
            with _abandoned_lock:
                _abandoned += 1
        return False

    @property
    def alive(self) -> bool:
        return not self.done.is_set()


class _Bounded:
    """Runs one source's blocking calls in workers with a hard deadline, one at a time.

    The worker is remembered before waiting, so a call given up on keeps the
    source from starting another until it has ended: at most one hung thread
    per camera, and MAX_ABANDONED in the whole process.
    """

    def __init__(self, camera: Any, name: str):
        self.camera, self.name = camera, name
        self.worker: _Worker | None = None

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.alive

    def call(self, fn: Callable[[], T], seconds: float) -> T:
        """``fn()`` in a worker, waited for ``seconds``; SourceError("timeout") past it."""
        if self.busy:
            raise _error(self.camera, "timeout", "the previous attempt is still hung; not starting another")
        if _abandoned >= MAX_ABANDONED:
            raise _error(self.camera, "timeout", f"{_abandoned} hung fetches in this process; refusing more")
        self.worker = worker = _Worker(fn, self.name)
        worker.start()
        if not worker.wait(seconds):
            raise _error(self.camera, "timeout", f"no frame within {seconds:.1f} s")
        # Hand the outcome over and drop it here: the worker stays remembered (for the
        # hung check above) and would otherwise keep the last frame alive per camera
        # (0.7 MB at 640x360; measured: RSS 1.1 GB at 1,000 HTTP cameras).
        error, result = worker.error, worker.result
        worker.error = worker.result = None
        if error is not None:
            raise error
        return result


# -- RTSP -----------------------------------------------------------------------

_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class _CaptureOptions:
    """Sets OPENCV_FFMPEG_CAPTURE_OPTIONS around an open, safely across threads.

    FFmpeg reads the variable at each open, so two cameras opening at once with
    different transports would race. Opens that want the value already in
    force share it (no serialisation at all in the usual all-TCP case); one
    that wants another value waits, bounded by its deadline, until the current
    holders are released. OpenCV reads the variable first thing in its open,
    before any network I/O, so a hold is released when the open returns or
    after HOLD_S, whichever comes first: a camera hung in its open cannot hold
    cameras of the other transport back.
    """

    HOLD_S = 0.25

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        self._holders = 0

    def acquire(self, value: str, deadline: float) -> Callable[[], None] | None:
        """A release function (idempotent), or None if the deadline passed first."""
        with self._cond:
            while self._holders and self._value != value:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            os.environ[_OPTIONS_ENV] = value
            self._value = value
            self._holders += 1
        released = threading.Event()

        def release() -> None:
            timer.cancel()
            with self._cond:
                if not released.is_set():
                    released.set()
                    self._holders -= 1
                    self._cond.notify_all()

        timer = threading.Timer(self.HOLD_S, release)
        timer.daemon = True
        timer.start()
        return release


_capture_options = _CaptureOptions()


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


# FFmpeg and OpenCV print straight to stderr, past our secret-scrubbing log filter, and
# our SourceError already says what failed: keep them quiet unless the user asks.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
_quieted = False


def rtsp_probe(camera: Any, url: str, deadline: float) -> None:
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
        raise _error(camera, "connect", "the URL's port is not a number") from None
    if not host:
        raise _error(camera, "connect", "the URL has no host")

    def left() -> float:
        rest = deadline - time.monotonic()
        if rest <= 0:
            raise _error(camera, "timeout", "the RTSP server did not answer in time")
        return rest

    try:
        sock = socket.create_connection((host, port), timeout=left())
    except TimeoutError:
        raise _error(camera, "timeout", f"no TCP connection to port {port} in time") from None
    except OSError as exc:
        raise _error(camera, "connect", f"cannot connect to port {port} ({exc.strerror or type(exc).__name__})") from None
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
            raise _error(camera, "timeout", "the RTSP server accepted but did not answer in time") from None
        except OSError as exc:
            raise _error(camera, "connect", f"the RTSP server dropped the connection ({exc.strerror or type(exc).__name__})") from None
        if not reply.startswith(b"RTSP/"):
            what = "closed the connection" if not reply else "answered, but not in RTSP"
            raise _error(camera, "connect", f"port {port} {what}")


def _open_capture(camera: Any, url: str, transport: str, timeout_s: float, threads: int = 0) -> Any:
    """An opened cv2.VideoCapture or a SourceError; timeouts passed at open (GUIDE.md).

    ``threads``: FFmpeg decoder threads (0 = its default, one per core). One frame
    per connection decodes cheaper on one thread: measured 720p 20 -> 16 ms CPU and
    155 -> 110 ms wall per open + first frame, 1080p 38 -> 30 ms CPU.
    """
    import cv2

    global _quieted
    if not _quieted:
        _quieted = True
        if "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    deadline = time.monotonic() + timeout_s
    rtsp_probe(camera, url, deadline)
    open_s = max(1.0, deadline - time.monotonic())
    options = f"rtsp_transport;{transport}|analyzeduration;0|probesize;32"
    release = _capture_options.acquire(options, deadline)
    if release is None:
        raise _error(camera, "timeout", "waited too long for another camera's open")
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
            raise _error(camera, "timeout", f"no answer within {timeout_s:.1f} s")
        raise _error(camera, "connect", f"cannot open the stream over {transport} "
                     "(refused, unreachable, wrong path or credentials, or not H.264/H.265)")
    return cap


class RtspSnapshotSource:
    """Connect, take one fresh frame, disconnect: cheap for long check intervals.

    Holding no connection between checks costs nothing while idle and cannot
    serve a stale frame; the price is one open plus frames up to a keyframe.
    """

    def __init__(self, camera: Any):
        self.camera = camera
        self.timeout = _timeout(camera)
        self._url, self._transport = rtsp_target(str(camera.url))
        self._bounded = _Bounded(camera, f"rtsp-snap-{_cam_id(camera)}")
        self._lock = threading.Lock()

    def _grab(self) -> Frame:
        cap = _open_capture(self.camera, self._url, self._transport, self.timeout, threads=1)
        try:
            ok, image = cap.read()
            if not ok or image is None:
                raise _error(self.camera, "stalled", "connected but no frame arrived")
            return Frame(image=_bgr(image), captured_at=time.time())
        finally:
            cap.release()

    def read(self) -> Frame:
        with self._lock:
            return self._bounded.call(self._grab, self.timeout + DEADLINE_SLACK_S)

    def close(self) -> None:
        pass


class RtspStreamSource:
    """A held connection: a reader thread keeps only the newest frame.

    A supervisor thread watches the reader: no NEW frame for ``timeout``
    seconds marks the stream stalled, the connection is dropped (a reader hung
    inside FFmpeg is abandoned, not waited for) and re-made after a Backoff
    delay. ``read`` never waits on the network beyond ``timeout``.
    """

    POLL_S = 0.1

    def __init__(self, camera: Any, backoff: Backoff | None = None):
        self.camera = camera
        self.timeout = _timeout(camera)
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
                                            name=f"rtsp-stream-{_cam_id(camera)}")
        self._supervisor.start()

    # reader: one per connection generation
    def _reader(self, generation: int, state: dict) -> None:
        cap = None
        try:
            cap = _open_capture(self.camera, self._url, self._transport, self.timeout)
            state["opened"] = time.monotonic()
            while not self._closed.is_set() and generation == self._generation:
                ok, image = cap.read()
                if not ok or image is None:
                    raise _error(self.camera, "stalled", "the stream stopped sending frames")
                if generation != self._generation:
                    break
                frame = Frame(image=_bgr(image), captured_at=time.time())
                with self._cond:
                    self._latest = frame
                    self._seq += 1
                    self._stalled = False
                    self._last_error = None
                    state["last_frame"] = time.monotonic()
                    self._cond.notify_all()
        except SourceError as exc:
            state["error"] = exc
        except Exception as exc:  # an OpenCV error: report it, never crash the thread silently
            state["error"] = _error(self.camera, "connect", f"capture failed: {type(exc).__name__}")
        finally:
            if cap is not None:
                cap.release()

    def _supervise(self) -> None:
        previous: threading.Thread | None = None
        while not self._closed.is_set():
            if previous is not None and previous.is_alive():
                # The last reader is stuck inside FFmpeg: wait for it rather than pile up threads.
                with self._cond:
                    self._last_error = _error(self.camera, "stalled", "the last connection is still hung")
                    self._stalled = True
                    self._cond.notify_all()
                self._closed.wait(self.backoff.next_delay())
                continue
            generation = self._generation
            state: dict = {"started": time.monotonic()}
            reader = threading.Thread(target=self._reader, args=(generation, state), daemon=True,
                                      name=f"rtsp-read-{_cam_id(self.camera)}")
            reader.start()
            previous = reader
            got_frames = False
            while not self._closed.is_set():
                reader.join(self.POLL_S)
                last = state.get("last_frame")
                if last is not None and not got_frames:
                    got_frames = True
                    self.backoff.reset()
                if not reader.is_alive():
                    break
                since = last if last is not None else state["started"]
                # Open has its own timeout; allow it plus slack before calling it hung.
                limit = self.timeout if last is not None else self.timeout * 2 + DEADLINE_SLACK_S
                if time.monotonic() - since > limit:
                    state.setdefault("error", _error(
                        self.camera, "stalled" if last is not None else "timeout",
                        f"no new frame for {self.timeout:.1f} s"))
                    break
            with self._cond:
                self._generation += 1  # the old reader stops (and releases) when it returns
                err = state.get("error") or _error(self.camera, "stalled", "the stream ended")
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
                    raise _error(self.camera, "ended", "source is closed")
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
                        raise _error(self.camera, "timeout", f"no frame within {self.timeout:.1f} s")
                    raise _error(self.camera, "stalled", f"no new frame for {self.timeout:.1f} s")
                self._cond.wait(min(left, 0.25))

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()


# -- HTTP snapshots -------------------------------------------------------------

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC) or data[:2] == b"BM" \
        or data[:4] in (b"RIFF",) or data[:4] in (b"II*\x00", b"MM\x00*")


class _SharedState:
    """A plain attribute holder standing in for threading.local()."""


class HttpSnapshotSource:
    """A snapshot URL read with connect/read timeouts, a total deadline and a size cap.

    The per-read socket timeout alone does not stop a server that sends one
    byte a second, so the body is read in chunks against a total deadline, and
    the whole fetch also runs in a bounded worker. Keep-alive session per camera.
    """

    def __init__(self, camera: Any, max_bytes: int = MAX_SNAPSHOT_BYTES):
        self.camera = camera
        self.timeout = _timeout(camera)
        self.max_bytes = max_bytes
        parts = urlsplit(str(camera.url))
        user = getattr(camera, "username", None)
        password = getattr(camera, "password", None)
        if parts.username is not None and not user:
            user = unquote(parts.username)
            password = unquote(parts.password or "")
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        self._url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        self._user, self._password = user, password
        self._auth_kind = getattr(camera, "auth", None)  # basic | digest | None = from challenge
        self._session: Any = None
        self._auths: dict[str, Any] = {}
        self._bounded = _Bounded(camera, f"http-{_cam_id(camera)}")
        self._lock = threading.Lock()

    def _auth(self, kind: str | None) -> Any:
        from requests.auth import HTTPBasicAuth, HTTPDigestAuth

        if not self._user or kind is None:
            return None
        if kind not in self._auths:  # kept: digest then reuses its nonce, saving a 401 per fetch
            if kind == "digest":
                auth = HTTPDigestAuth(self._user, self._password or "")
                # requests keeps digest state per thread, and every fetch here runs on a
                # fresh worker thread (one at a time): share the state so the nonce is reused.
                auth._thread_local = _SharedState()
            else:
                auth = HTTPBasicAuth(self._user, self._password or "")
            self._auths[kind] = auth
        return self._auths[kind]

    def _fetch(self) -> Frame:
        import requests

        deadline = time.monotonic() + self.timeout
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False
        kind = self._auth_kind
        try:
            resp = self._get(kind)
            if resp.status_code == 401 and self._user and kind is None:
                challenge = resp.headers.get("WWW-Authenticate", "").lower()
                resp.close()
                kind = "digest" if challenge.startswith("digest") else "basic"
                resp = self._get(kind)
                if resp.status_code != 401:
                    self._auth_kind = kind  # remember what worked
            with resp:
                return self._body(resp, deadline)
        except requests.exceptions.SSLError:
            raise _error(self.camera, "connect", "TLS certificate verification failed") from None
        except requests.exceptions.ConnectTimeout:
            raise _error(self.camera, "timeout", f"no connection within {self.timeout:.1f} s") from None
        except requests.exceptions.ReadTimeout:
            raise _error(self.camera, "timeout", f"no answer within {self.timeout:.1f} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise _error(self.camera, "connect", f"cannot connect ({_short(exc)})") from None
        except requests.exceptions.RequestException as exc:
            raise _error(self.camera, "connect", f"request failed ({type(exc).__name__})") from None

    def _get(self, kind: str | None) -> Any:
        return self._session.get(self._url, auth=self._auth(kind), stream=True, verify=True,
                                 timeout=(self.timeout, self.timeout), allow_redirects=True,
                                 headers={"Accept": "image/jpeg, image/*;q=0.9",
                                          "Accept-Encoding": "identity"})  # raw bytes are read

    def _body(self, resp: Any, deadline: float) -> Frame:
        import cv2

        if resp.status_code in (401, 403):
            raise _error(self.camera, "auth", f"HTTP {resp.status_code}: credentials refused or missing")
        if not 200 <= resp.status_code < 300:
            raise _error(self.camera, "http_status", f"HTTP {resp.status_code}")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise _error(self.camera, "too_large",
                         f"body of {int(length)} bytes is over the {self.max_bytes} byte limit")
        limit = self.max_bytes
        if ctype.startswith("text/") or ctype in ("application/json", "application/xml"):
            limit = 4096  # enough to tell an error page from an image
        chunks: list[bytes] = []
        size = 0
        raw = resp.raw
        while True:
            if time.monotonic() > deadline:
                raise _error(self.camera, "timeout",
                             f"body not complete within {self.timeout:.1f} s ({size} bytes so far)")
            chunk = raw.read1(65536) if hasattr(raw, "read1") else raw.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                if limit < self.max_bytes:
                    break
                raise _error(self.camera, "too_large", f"body over the {self.max_bytes} byte limit")
        data = b"".join(chunks)
        if not _looks_like_image(data) and not ctype.startswith("image/"):
            raise _error(self.camera, "not_image",
                         f"the answer is {ctype or 'untyped'}, not an image (a login or error page?)")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise _error(self.camera, "decode", f"{size} bytes of {ctype or 'data'} do not decode as an image")
        return Frame(image=_bgr(image), captured_at=time.time())

    def read(self) -> Frame:
        with self._lock:
            return self._bounded.call(self._fetch, self.timeout + DEADLINE_SLACK_S)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not self._bounded.busy:  # else the hung worker still uses it
            session.close()


def _short(exc: BaseException) -> str:
    """A one-line, password-free cause from a requests/urllib3 error chain."""
    text = str(exc)
    for key in ("Connection refused", "Name or service not known", "No route to host",
                "Connection reset", "timed out", "Temporary failure in name resolution",
                "Network is unreachable", "RemoteDisconnected"):
        if key in text:
            return key.lower()
    return type(exc).__name__


# -- local files ----------------------------------------------------------------


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _read_image(camera: Any, path: Path) -> np.ndarray:
    import cv2

    try:
        # read_bytes reads to end of file, so a pipe or special file is read whole; np.fromfile
        # sizes the file first and can stop at 0 bytes on a pipe, closing it under the writer.
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except FileNotFoundError:
        raise _error(camera, "connect", f"no such file: {path}") from None
    except OSError as exc:
        raise _error(camera, "connect", f"cannot read {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise _error(camera, "decode", f"{path} is not an image OpenCV can decode")
    return _bgr(image)


class ImageFileSource:
    """One image file, re-read at every read: replacing the file changes the view."""

    def __init__(self, camera: Any, path: Path):
        self.camera, self.path = camera, path

    def read(self) -> Frame:
        return Frame(image=_read_image(self.camera, self.path), captured_at=time.time())

    def close(self) -> None:
        pass


class FolderSource:
    """The images of a folder in numeric order, one per read, looping; re-listed per pass."""

    def __init__(self, camera: Any, path: Path):
        self.camera, self.path = camera, path
        self._files: list[Path] = []
        self._index = 0

    def _list(self) -> list[Path]:
        try:
            names = [p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        except OSError as exc:
            raise _error(self.camera, "connect", f"cannot list {self.path}: {exc.strerror or exc}") from None
        return sorted(names, key=lambda p: _natural_key(p.name))

    def read(self) -> Frame:
        if self._index >= len(self._files):
            self._files, self._index = self._list(), 0
            if not self._files:
                raise _error(self.camera, "ended", f"no images in {self.path}")
        path = self._files[self._index]
        self._index += 1
        return Frame(image=_read_image(self.camera, path), captured_at=time.time())

    def close(self) -> None:
        pass


class VideoFileSource:
    """A video file, the next frame per read, looping at the end."""

    def __init__(self, camera: Any, path: Path):
        self.camera, self.path = camera, path
        self._cap: Any = None

    def _open(self) -> Any:
        import cv2

        if not self.path.is_file():
            raise _error(self.camera, "connect", f"no such file: {self.path}")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise _error(self.camera, "decode", f"{self.path} is not a video OpenCV can read")
        return cap

    def read(self) -> Frame:
        for attempt in range(2):
            if self._cap is None:
                self._cap = self._open()
            ok, image = self._cap.read()
            if ok and image is not None:
                return Frame(image=_bgr(image), captured_at=time.time())
            self._cap.release()  # at the end: reopen from the start (seeking is unreliable)
            self._cap = None
        raise _error(self.camera, "ended", f"{self.path} has no readable frames")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class _BoundedLocal:
    """Runs a local source's read in a bounded worker: a dead NFS mount is a hang too."""

    def __init__(self, camera: Any, inner: Any):
        self.camera, self.inner = camera, inner
        self.timeout = _timeout(camera)
        self._bounded = _Bounded(camera, f"file-{_cam_id(camera)}")
        self._lock = threading.Lock()

    def read(self) -> Frame:
        with self._lock:
            return self._bounded.call(self.inner.read, self.timeout + DEADLINE_SLACK_S)

    def close(self) -> None:
        if not self._bounded.busy:
            self.inner.close()


def _local_source(camera: Any, path: Path) -> FrameSource:
    if path.is_dir():
        inner: Any = FolderSource(camera, path)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        inner = VideoFileSource(camera, path)
    else:
        inner = ImageFileSource(camera, path)
    return _BoundedLocal(camera, inner)


# -- dispatch -------------------------------------------------------------------


def _bgr(image: np.ndarray) -> np.ndarray:
    """BGR uint8 HxWx3 whatever the decoder gave (grey, BGRA, 16-bit)."""
    import cv2

    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, float(image.max())))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def open_source(camera: Any) -> FrameSource:
    """The source for a camera's URL. Cheap: no network I/O happens here.

    (A stream-mode RTSP source starts its reader thread, which connects in the
    background.) Unknown schemes raise SourceError("unsupported").
    """
    url = str(getattr(camera, "url", "") or "")
    mode = getattr(camera, "mode", "snapshot") or "snapshot"
    scheme = url.split(":", 1)[0].lower() if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) else ""
    if scheme in ("rtsp", "rtsps"):
        return RtspStreamSource(camera) if mode == "stream" else RtspSnapshotSource(camera)
    if scheme in ("http", "https"):
        return HttpSnapshotSource(camera)
    if scheme == "demo":
        from camwatch.sources.demo import DemoSource

        return DemoSource(camera)
    if scheme == "file":
        parts = urlsplit(url)
        return _local_source(camera, Path(unquote((parts.netloc or "") + parts.path)))
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        if not url:
            raise _error(camera, "unsupported", "no URL given")
        return _local_source(camera, Path(url).expanduser())
    raise _error(camera, "unsupported",
                 f"scheme {scheme}: is not supported (use rtsp://, rtsps://, http(s)://, file:// or demo:)")
