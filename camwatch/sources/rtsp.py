"""RTSP cameras through OpenCV's FFmpeg backend: a bounded probe, snapshot and stream sources.

``rtsp://`` and ``rtsps://`` URLs; ``?transport=udp`` (or tcp, the default,
udp_multicast, http) is ours and is taken off before FFmpeg sees the URL.
Snapshot mode connects per check; stream mode holds a connection whose reader
keeps only the newest frame. Either way ``read`` returns within the camera's
timeout (plus slack), however FFmpeg behaves.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
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
from camwatch.core.secrets import split_credentials
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


#: Bytes of an RTSP answer read at most (headers and an SDP body).
_MAX_ANSWER = 65536


class _Rtsp:
    """One bounded RTSP/1.0 conversation over a TCP connection, for the probe and its diagnosis.

    Every wait is cut at ``deadline`` (time.monotonic), with the camera's SourceError.
    """

    def __init__(self, camera: CameraConfig, url: str, deadline: float):
        self.camera, self.deadline = camera, deadline
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        try:
            self.port = parts.port or (322 if parts.scheme == "rtsps" else 554)
        except ValueError:
            raise source_error(camera, "connect", "the URL's port is not a number") from None
        if not self.host:
            raise source_error(camera, "connect", "the URL has no host")
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        self.path = parts.path or "/"
        #: The request URI: no credentials, nothing FFmpeg would not send.
        self.target = urlunsplit(("rtsp", f"{netloc}:{self.port}", self.path, parts.query, ""))
        self.cseq = 0
        self.sock = self._connect()

    def left(self) -> float:
        rest = self.deadline - time.monotonic()
        if rest <= 0:
            raise source_error(self.camera, "timeout", "the RTSP server did not answer in time")
        return rest

    def _connect(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.left())
        except TimeoutError:
            raise source_error(self.camera, "timeout", f"no TCP connection to port {self.port} in time") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise source_error(self.camera, "connect", f"cannot connect to port {self.port} ({why})") from None

    def close(self) -> None:
        self.sock.close()

    def ask(self, method: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request; (status, headers with lower-case names, body), or the camera's SourceError
        when the peer does not answer in RTSP."""
        self.cseq += 1
        lines = [f"{method} {self.target} RTSP/1.0", f"CSeq: {self.cseq}", "User-Agent: camwatch"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        reply = b""
        try:
            self.sock.settimeout(self.left())
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            while b"\r\n\r\n" not in reply and len(reply) < _MAX_ANSWER:
                self.sock.settimeout(self.left())
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            if not reply.startswith(b"RTSP/"):
                what = "closed the connection" if not reply else "answered, but not in RTSP (another service?)"
                raise source_error(self.camera, "connect", f"port {self.port} {what}")
            head, _, body = reply.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            fields = status_line.split(" ", 2)
            status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            found: dict[str, str] = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    key = name.strip().lower()
                    found[key] = f"{found[key]}, {value.strip()}" if key in found else value.strip()
            length = int(found["content-length"]) if found.get("content-length", "").isdigit() else 0
            while len(body) < min(length, _MAX_ANSWER):
                self.sock.settimeout(self.left())
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                body += chunk
        except TimeoutError:
            raise source_error(self.camera, "timeout", "the RTSP server accepted but did not answer in time") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise source_error(self.camera, "connect", f"the RTSP server dropped the connection ({why})") from None
        return status, found, body[:length]


def rtsp_probe(camera: CameraConfig, url: str, deadline: float) -> None:
    """Check, in Python and bounded, that an RTSP server answers before OpenCV opens it.

    OpenCV's FFmpeg backend serialises opens behind one process-wide lock
    (measured: while one open waited 3 s on a silent server, another camera's
    open waited the same 3 s). A camera that is off (SYN unanswered) or hung
    would so delay every other RTSP camera's open. This probe (TCP connect, then
    OPTIONS for rtsp://; TCP connect only for rtsps://) takes no lock, so such a
    camera fails here on its own, and only servers that answer reach OpenCV.
    Connection refused and a peer that does not speak RTSP are told apart here.
    """
    rtsp = _Rtsp(camera, url, deadline)
    try:
        if rtsp.scheme == "rtsp":
            rtsp.ask("OPTIONS")
    finally:
        rtsp.close()


def _digest(challenge: str, user: str, password: str, method: str, uri: str) -> str | None:
    """An Authorization value answering a Digest challenge (RFC 2617, MD5; qop=auth if offered)."""
    fields = dict(re.findall(r'(\w+)\s*=\s*"?([^",]*)"?', challenge))
    realm, nonce = fields.get("realm"), fields.get("nonce")
    if realm is None or nonce is None or fields.get("algorithm", "MD5").upper() not in ("MD5", ""):
        return None

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    value = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in [q.strip() for q in fields.get("qop", "").split(",")]:
        cnonce = secrets.token_hex(8)
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        return value + f', qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}"'
    return value + f', response="{md5(f"{ha1}:{nonce}:{ha2}")}"'


def _credentials(camera: CameraConfig, url: str) -> tuple[str | None, str]:
    _, user, password = split_credentials(url)
    if camera.username:
        return camera.username, camera.password or ""
    return user, password or ""


def rtsp_diagnose(camera: CameraConfig, url: str, transport: str, deadline: float) -> SourceError:
    """Why FFmpeg could not open a stream whose server answers: DESCRIBE asked in Python.

    FFmpeg's open says only that it failed; an operator needs to know which
    mistake it was: the path (404), the credentials (401, told apart from none
    configured), or a stream the server describes but FFmpeg cannot take.
    Credentials go as Digest when the server asks for it, as Basic only when it
    offers nothing else (FFmpeg itself would send them so).
    """
    generic = source_error(camera, "connect", f"cannot open the stream over {transport} "
                                              "(the server answers, but FFmpeg could not open it)")
    if urlsplit(url).scheme != "rtsp" or deadline - time.monotonic() < 0.1:
        return generic
    try:
        rtsp = _Rtsp(camera, url, deadline)
    except SourceError as exc:
        return exc
    try:
        accept = {"Accept": "application/sdp"}
        status, headers, body = rtsp.ask("DESCRIBE", accept)
        if status == 401:
            user, password = _credentials(camera, url)
            if not user:
                return source_error(camera, "auth", "RTSP 401: the camera wants credentials and none are "
                                                    "configured (user:password@ in the URL, or username/password)")
            challenge = headers.get("www-authenticate", "")
            answer = _digest(challenge, user, password, "DESCRIBE", rtsp.target) \
                if "digest" in challenge.lower() else None
            if answer is None and "basic" in challenge.lower():
                answer = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if answer is None:
                return source_error(camera, "auth", "RTSP 401: the camera asks for an auth scheme camwatch "
                                                    "does not speak")
            status, headers, body = rtsp.ask("DESCRIBE", {**accept, "Authorization": answer})
            if status == 401:
                return source_error(camera, "auth", "RTSP 401: the camera refused the credentials")
    except SourceError as exc:
        return exc
    finally:
        rtsp.close()
    if status == 404:
        return source_error(camera, "http_status", f"RTSP 404: no stream at {rtsp.path} (wrong path?)")
    if status == 403:
        return source_error(camera, "auth", "RTSP 403: the camera refuses this user the stream")
    if status != 200:
        return source_error(camera, "http_status", f"RTSP {status} to DESCRIBE")
    codecs = sorted(set(re.findall(rb"a=rtpmap:\d+ ([A-Za-z0-9-]+)/", body)))
    if b"m=video" not in body:
        return source_error(camera, "unsupported", "the stream has no video")
    shown = ", ".join(c.decode("latin-1") for c in codecs) or "unnamed codec"
    return source_error(camera, "connect", f"cannot open the stream over {transport} (the server describes "
                                           f"its video as {shown}, but FFmpeg could not open it)")


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
        raise rtsp_diagnose(camera, url, transport, deadline)
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

