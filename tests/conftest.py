"""Shared test fixtures: real servers and test media, cleaned up after each test.

- ``media``: session-wide maker of images and H.264 clips (tests/media.py).
- ``rtsp_server``: a real GStreamer RTSP server (tests/rtsp_server.py) looping H.264.
- ``http_snapshot_server``: a real threaded HTTP server on loopback whose answer per
  path the test sets (image, HTML, huge body, drip, hang, status, basic/digest auth).
- ``make_camera``: a camera object with the attributes CameraConfig has (DESIGN.md).
No fixture reads /work/shared: everything is made on the spot.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from media import Media, encode_jpeg, have_ffmpeg, scene_image  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


# -- media ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Media:
    """Images and clips made once per session: ``media.clip("scene"|"moved", width=, height=,
    seconds=, suffix=".h264"|".mp4")`` and ``media.image("scene"|"moved", ...)`` return paths.
    "moved" is another window of the same synthetic world (a turned camera). Skips if no ffmpeg
    only when a clip is asked for."""
    return _SkippingMedia(tmp_path_factory.mktemp("media"))


class _SkippingMedia(Media):
    def clip(self, *args: Any, **kwargs: Any) -> Path:
        if not have_ffmpeg():
            pytest.skip("ffmpeg is not installed (scripts/test.sh installs it)")
        return super().clip(*args, **kwargs)


# -- cameras --------------------------------------------------------------------


def camera_config(url: str, id: str = "cam", timeout: float = 3.0, **kw: Any) -> Any:
    """A real config.CameraConfig for ``url`` (redacted_url filled in as load_config does)."""
    from camwatch.config.loader import CameraConfig, redact_url

    password = kw.get("password")
    return CameraConfig(id=id, url=str(url), name=kw.pop("name", id), timeout=timeout,
                        redacted_url=redact_url(str(url), [password] if password else []), **kw)


@pytest.fixture
def make_camera():
    """``make_camera(url, id="cam", timeout=3, mode="snapshot", username=..., password=..., auth=...)``:
    a real CameraConfig for open_source() and friends without writing a YAML file."""
    return camera_config


def free_port() -> int:
    """A TCP port free on loopback right now (for servers that cannot pick port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- RTSP -----------------------------------------------------------------------


def gst_rtsp_available() -> str | None:
    """None if the RTSP server can run here, else why not."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer','1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return ("gst-rtsp-server with python3-gi is not installed for /usr/bin/python3 "
                "(scripts/test.sh installs it)")
    return None


class RtspServer:
    """A running tests/rtsp_server.py; mounts are "/scene" (alt: the moved view) and
    "/small" (320x180, alt: moved). ``url(mount)`` gives rtsp://127.0.0.1:PORT/mount."""

    def __init__(self, mounts: dict[str, list[Path]], fps: int = 15):
        self.mounts = mounts
        self.fps = fps
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.frozen = False

    def url(self, mount: str = "scene", transport: str | None = None, userinfo: str = "") -> str:
        """The stream URL; ``transport="udp"`` adds camwatch's ``?transport=`` override."""
        url = f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{mount.strip('/')}"
        return url + (f"?transport={transport}" if transport else "")

    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart, on the same port) and wait for READY."""
        if self.proc is not None and self.proc.poll() is None:
            return
        args = [SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), "--fps", str(self.fps)]
        for name, files in self.mounts.items():
            args += ["--mount", f"{name}={','.join(str(f) for f in files)}"]
        self._lines = []
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1)
            threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
            line = self._wait_for(("READY", "ERROR"), deadline)
            if line and line.startswith("READY"):
                self.port = int(line.split()[1])
                self.frozen = False
                return
            self._kill()
            # A restart on the same port can race the old socket's release: retry briefly.
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start: {self._lines[-5:]}")
            time.sleep(0.2)

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            with self._cond:
                self._lines.append(line.strip())
                self._cond.notify_all()

    def _wait_for(self, prefixes: tuple[str, ...], deadline: float, start: int = 0) -> str | None:
        """The first output line from ``start`` on with one of the prefixes; None past the
        deadline or once the server has exited without printing one."""
        with self._cond:
            while True:
                for line in self._lines[start:]:
                    if line.startswith(prefixes):
                        return line
                left = deadline - time.monotonic()
                exited = self.proc is None or self.proc.poll() is not None
                if left <= 0 or exited and not self._cond.wait(0.2):
                    return None
                self._cond.wait(min(left, 0.2))

    def swap(self, mount: str = "scene", timeout: float = 5.0) -> None:
        """Serve the mount's other clip (the camera "moves"); live clients see it after
        the current loop of the clip ends (clips here are 1 s)."""
        self._command(f"swap {mount.strip('/')}", timeout)

    def _command(self, text: str, timeout: float) -> str:
        assert self.proc is not None and self.proc.poll() is None, "RTSP server is not running"
        with self._cond:
            start = len(self._lines)
        self.proc.stdin.write(text + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self._wait_for(("OK", "ERROR"), time.monotonic() + timeout, start)
        if not line or not line.startswith("OK"):
            raise RuntimeError(f"RTSP server command {text!r} failed: {line}")
        return line

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets open but sends nothing (a hung camera)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after freeze()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """Terminate the server (connections refused until start())."""
        self._kill()

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.frozen:
            proc.send_signal(signal.SIGCONT)
            self.frozen = False
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass


@pytest.fixture
def rtsp_server(media) -> Iterator[RtspServer]:
    """A real RTSP server (gst-rtsp-server, H.264 over TCP and UDP) on a free loopback port.

    Mounts: ``scene`` (640x360, swap() serves the moved view) and ``small`` (320x180, same).
    ``.url(mount, transport=None)``, ``.swap(mount)``, ``.stop()``/``.start()`` (same port),
    ``.freeze()``/``.thaw()`` (SIGSTOP/SIGCONT). Always stopped after the test. Skips with the
    reason if gst-rtsp-server or ffmpeg is missing (scripts/test.sh installs both)."""
    why = gst_rtsp_available()
    if why:
        pytest.skip(why)
    server = RtspServer({
        "scene": [media.clip("scene"), media.clip("moved")],
        "small": [media.clip("scene", 320, 180), media.clip("moved", 320, 180)],
    })
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- HTTP -----------------------------------------------------------------------


@dataclass
class Route:
    """How the HTTP snapshot server answers one path."""

    kind: str = "image"          # image | html | big | drip | hang | status
    body: bytes = b""
    content_type: str = "image/jpeg"
    status: int = 200
    size: int = 0                # big: bytes to announce/send
    send_length: bool = True     # big: announce Content-Length (False: stream until closed)
    auth: str | None = None      # None | basic | digest
    user: str = ""
    password: str = ""


class SnapshotServer:
    """Control of the running HTTP snapshot server (see the fixture's docstring)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.auth_headers: list[str] = []
        self.stopping = threading.Event()
        self.nonce = secrets.token_hex(8)
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def url(self, path: str = "/snap.jpg", user: str | None = None, password: str | None = None) -> str:
        userinfo = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def image(self, path: str, image: np.ndarray | bytes | None = None,
              content_type: str = "image/jpeg", **auth: Any) -> None:
        """Serve an image (array → JPEG; default: the scene still); call again to swap it."""
        if image is None:
            image = scene_image(320, 180)
        body = encode_jpeg(image) if isinstance(image, np.ndarray) else image
        self.routes[path] = Route("image", body=body, content_type=content_type, **auth)

    def html(self, path: str, status: int = 200) -> None:
        """A login/error page instead of an image."""
        self.routes[path] = Route("html", status=status, content_type="text/html",
                                  body=b"<!doctype html><html><body><form>Login</form></body></html>")

    def big(self, path: str, size: int = 100 * 1024 * 1024, send_length: bool = True) -> None:
        """A JPEG-looking body of ``size`` bytes (100 MB), sent as fast as the client reads."""
        self.routes[path] = Route("big", size=size, send_length=send_length)

    def drip(self, path: str) -> None:
        """A JPEG sent one byte per second (defeats per-read socket timeouts)."""
        self.routes[path] = Route("drip", body=encode_jpeg(scene_image(160, 90)))

    def hang(self, path: str) -> None:
        """Accept and read the request, then never answer."""
        self.routes[path] = Route("hang")

    def status(self, path: str, status: int = 500) -> None:
        """Answer with an HTTP error status and a small text body."""
        self.routes[path] = Route("status", status=status, content_type="text/plain", body=b"error\n")

    def basic(self, path: str, user: str, password: str, image: np.ndarray | None = None) -> None:
        """An image behind HTTP basic auth."""
        self.image(path, image, auth="basic", user=user, password=password)

    def digest(self, path: str, user: str, password: str, image: np.ndarray | None = None) -> None:
        """An image behind HTTP digest auth (qop=auth, MD5)."""
        self.image(path, image, auth="digest", user=user, password=password)


def _digest_ok(header: str, route: Route, method: str, nonce: str) -> bool:
    import urllib.request

    if not header.lower().startswith("digest "):
        return False
    fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(header[7:]))
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    if fields.get("username") != route.user or fields.get("nonce") != nonce:
        return False
    ha1 = md5(f"{route.user}:camwatch-test:{route.password}")
    ha2 = md5(f"{method}:{fields.get('uri', '')}")
    if fields.get("qop"):
        expect = md5(f"{ha1}:{nonce}:{fields.get('nc')}:{fields.get('cnonce')}:{fields.get('qop')}:{ha2}")
    else:
        expect = md5(f"{ha1}:{nonce}:{ha2}")
    return secrets.compare_digest(expect, fields.get("response", ""))


def _handler(ctl: SnapshotServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # GUIDE.md: no 44 ms Nagle stall per response

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, ctype: str, body: bytes, extra: dict | None = None) -> None:
            head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                    f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in (extra or {}).items()]
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)  # one write

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            ctl.hits[path] = ctl.hits.get(path, 0) + 1
            route = ctl.routes.get(path)
            if route is None:
                self._send(404, "text/plain", b"not found\n")
                return
            if route.auth:
                header = self.headers.get("Authorization", "")
                ctl.auth_headers.append(header)
                if route.auth == "basic":
                    import base64

                    good = "Basic " + base64.b64encode(f"{route.user}:{route.password}".encode()).decode()
                    ok, challenge = header == good, 'Basic realm="camwatch-test"'
                else:
                    ok = _digest_ok(header, route, "GET", ctl.nonce)
                    challenge = f'Digest realm="camwatch-test", qop="auth", nonce="{ctl.nonce}", algorithm=MD5'
                if not ok:
                    self._send(401, "text/html", b"<html>401</html>", {"WWW-Authenticate": challenge})
                    return
            if route.kind in ("image", "html", "status"):
                self._send(route.status, route.content_type, route.body)
            elif route.kind == "hang":
                ctl.stopping.wait(120)
                self.close_connection = True
            elif route.kind == "drip":
                self.wfile.write((f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                                  f"Content-Length: {len(route.body)}\r\n\r\n").encode())
                for i in range(len(route.body)):
                    if ctl.stopping.wait(1.0):
                        break
                    self.wfile.write(route.body[i:i + 1])
                    self.wfile.flush()
                self.close_connection = True
            elif route.kind == "big":
                head = "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                head += f"Content-Length: {route.size}\r\n\r\n" if route.send_length else "Connection: close\r\n\r\n"
                self.wfile.write(head.encode() + b"\xff\xd8\xff\xe0")
                chunk = bytes(1 << 20)
                sent = 4
                try:
                    while sent < route.size and not ctl.stopping.is_set():
                        part = chunk[:min(len(chunk), route.size - sent)]
                        self.wfile.write(part)
                        sent += len(part)
                except OSError:
                    pass  # the client gave up, as it should
                self.close_connection = True

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@pytest.fixture
def http_snapshot_server() -> Iterator[SnapshotServer]:
    """A real ThreadingHTTPServer on 127.0.0.1 (keep-alive, TCP_NODELAY, one write per response).

    Set each path's answer from the test: ``.image(path, img_or_bytes)`` (call again to swap),
    ``.html(path)``, ``.big(path, size=100 MB, send_length=True)``, ``.drip(path)`` (1 byte/s),
    ``.hang(path)``, ``.status(path, 500)``, ``.basic(path, user, pw)``, ``.digest(path, user, pw)``.
    ``.url(path, user=None, password=None)`` builds the URL; ``.hits[path]`` counts requests and
    ``.auth_headers`` keeps the Authorization headers received. Shut down after the test."""
    ctl = SnapshotServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ctl))
    httpd.daemon_threads = True
    ctl.httpd, ctl.port = httpd, httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield ctl
    finally:
        ctl.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
