"""Real servers for tests and benchmarks: a GStreamer RTSP server and an HTTP snapshot server.

A plain module (not conftest.py) so that benchmark scripts can start the same servers the
tests use without importing pytest's fixture file; conftest.py wraps these in fixtures.
Put ``tests/`` on ``sys.path`` and ``import servers``.

- ``RtspServer``: tests/rtsp_server.py run by Debian's python3 (its ``gi`` bindings).
- ``SnapshotServer``: a threaded HTTP server on loopback whose answer per path the caller
  sets (image, HTML, huge body, drip, hang, status, basic/digest auth, redirect); ``start()``/``stop()``.
- ``camera_config``: a real CameraConfig without writing a YAML file.
- ``self_signed_context``: a TLS server context with a fresh self-signed certificate (openssl).

Image bombs and the stub RTSP camera (``RtspStub``) live in hostile.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from media import encode_jpeg, scene_image

from camwatch.config import CameraConfig, redact_url

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


# -- cameras --------------------------------------------------------------------


def camera_config(url: str, id: str = "cam", timeout: float = 3.0, **kw: Any) -> CameraConfig:
    """A real CameraConfig for ``url`` (redacted_url filled in as load_config does)."""
    password = kw.get("password")
    return CameraConfig(id=id, url=str(url), name=kw.pop("name", id), timeout=timeout,
                        redacted_url=redact_url(str(url), [password] if password else []), **kw)



def free_port() -> int:
    """A TCP port free on loopback right now (for servers that cannot pick port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def self_signed_context(folder: Path) -> ssl.SSLContext | None:
    """A TLS server context for 127.0.0.1 with a self-signed certificate written into
    ``folder``; None if the openssl command is not installed."""
    if not shutil.which("openssl"):
        return None
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


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
    location: str = ""           # redirect: where to


class SnapshotServer:
    """An HTTP snapshot camera on loopback whose answer per path the caller sets.

    ``.image(path, img_or_bytes)`` (call again to swap), ``.html(path)``, ``.big(path, size=100 MB,
    send_length=True)``, ``.drip(path)`` (1 byte/s), ``.hang(path)``, ``.status(path, 500)``,
    ``.basic(path, user, pw)``, ``.digest(path, user, pw)``, ``.redirect(path, location, 302)``.
    ``.url(path, user=None, password=None)`` builds the URL; ``.hits[path]`` counts requests and
    ``.auth_headers`` keeps the Authorization headers received (``""`` for none) on auth routes,
    ``.all_auth_headers`` on every route. ``start(host="127.0.0.1")`` then ``stop()``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.auth_headers: list[str] = []
        self.all_auth_headers: list[str] = []
        #: Digest routes' 401 also offers Basic (listed first), as many cameras' do.
        self.also_basic = False
        self.host = "127.0.0.1"
        self.stopping = threading.Event()
        self.nonce = secrets.token_hex(8)
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0
        self._thread: threading.Thread | None = None

    def start(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> SnapshotServer:
        """Listen on a free port of ``host`` (keep-alive, TCP_NODELAY, one write per response);
        ``tls`` serves HTTPS with that server context. 127.0.0.2 is another host on loopback.
        Returns self."""
        self.host = host
        httpd = ThreadingHTTPServer((host, 0), snapshot_handler(self))
        httpd.daemon_threads = True
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        self.httpd, self.port = httpd, httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung/dripping handlers, then shut the server down."""
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def url(self, path: str = "/snap.jpg", user: str | None = None, password: str | None = None) -> str:
        userinfo = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"http://{userinfo}{self.host}:{self.port}{path}"

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

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``status`` with ``Location: location`` (absolute or relative)."""
        self.routes[path] = Route("redirect", status=status, location=location, content_type="text/plain",
                                  body=b"moved\n")


def _digest_ok(header: str, route: Route, method: str, nonce: str, realm: str = "camwatch-test") -> bool:
    if not header.lower().startswith("digest "):
        return False
    fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(header[7:]))
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    if fields.get("username") != route.user or fields.get("nonce") != nonce:
        return False
    ha1 = md5(f"{route.user}:{realm}:{route.password}")
    ha2 = md5(f"{method}:{fields.get('uri', '')}")
    if fields.get("qop"):
        expect = md5(f"{ha1}:{nonce}:{fields.get('nc')}:{fields.get('cnonce')}:{fields.get('qop')}:{ha2}")
    else:
        expect = md5(f"{ha1}:{nonce}:{ha2}")
    return secrets.compare_digest(expect, fields.get("response", ""))


def snapshot_handler(ctl: SnapshotServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class answering as ``ctl.routes`` say (for a server of your own)."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # GUIDE.md: no 44 ms Nagle stall per response

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, ctype: str, body: bytes, extra: dict | list | None = None) -> None:
            head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                    f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
            pairs = list(extra.items()) if isinstance(extra, dict) else list(extra or [])
            head += [f"{k}: {v}" for k, v in pairs]
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)  # one write

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            ctl.hits[path] = ctl.hits.get(path, 0) + 1
            route = ctl.routes.get(path)
            ctl.all_auth_headers.append(self.headers.get("Authorization", ""))
            if route is None:
                self._send(404, "text/plain", b"not found\n")
                return
            if route.auth:
                header = self.headers.get("Authorization", "")
                ctl.auth_headers.append(header)
                if route.auth == "basic":
                    good = "Basic " + base64.b64encode(f"{route.user}:{route.password}".encode()).decode()
                    ok, challenge = header == good, 'Basic realm="camwatch-test"'
                else:
                    ok = _digest_ok(header, route, "GET", ctl.nonce)
                    challenge = f'Digest realm="camwatch-test", qop="auth", nonce="{ctl.nonce}", algorithm=MD5'
                if not ok:
                    offers = [("WWW-Authenticate", challenge)]
                    if route.auth == "digest" and ctl.also_basic:
                        offers.insert(0, ("WWW-Authenticate", 'Basic realm="camwatch-test"'))
                    self._send(401, "text/html", b"<html>401</html>", offers)
                    return
            if route.kind in ("image", "html", "status"):
                self._send(route.status, route.content_type, route.body)
            elif route.kind == "redirect":
                self._send(route.status, route.content_type, route.body, {"Location": route.location})
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
