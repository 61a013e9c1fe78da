"""Hostile answers for tests and benchmarks: image bombs and a stub RTSP camera.

Split from servers.py, which keeps the real RTSP and HTTP snapshot servers; a plain module for
the same reason (benchmark scripts import it too). Put ``tests/`` on ``sys.path`` and
``import hostile``.

- ``png_bomb``, ``jpeg_bomb``: real images whose header declares a huge size (hostile answers).
- ``RtspStub``: a tiny RTSP/1.0 server over a plain socket that answers DESCRIBE per path
  (a stream it describes but never serves, 404, digest or basic auth) and records what it got.
"""

from __future__ import annotations

import base64
import secrets
import socket
import struct
import threading
import zlib

import cv2
from media import scene_image
from servers import Route, _digest_ok

# -- image bombs ----------------------------------------------------------------


def png_bomb(side: int = 30000) -> bytes:
    """A valid 8-bit grey PNG of side x side zero pixels: ~0.9 MB at 30000 that decodes to side^2
    bytes (2.7 GB as a BGR frame)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the row's pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_bomb(side: int = 30000) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to say side x side: libjpeg
    believes it, and fills what the data does not cover."""
    data = bytearray(cv2.imencode(".jpg", scene_image(320, 180))[1].tobytes())
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, side, side)
    return bytes(data)


# -- a tiny RTSP server ------------------------------------------------------------


class RtspStub:
    """An RTSP/1.0 server on a plain socket: enough of the protocol to answer a client's
    OPTIONS and DESCRIBE the way a camera does, per path. It serves no media (SETUP gets
    461), so a client that gets past DESCRIBE still fails to open, as with a codec it
    cannot take.

    ``.stream(path)`` describes an H.264 stream; ``.digest(path, user, pw)`` and
    ``.basic(path, user, pw)`` require credentials for DESCRIBE; any other path is 404.
    ``not_rtsp=True`` answers every request in HTTP instead. ``.requests`` keeps
    (method, path, Authorization) of every request. ``start()`` then ``stop()``."""

    SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=stub\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
           "a=rtpmap:96 H264/90000\r\na=control:track1\r\n")

    def __init__(self, not_rtsp: bool = False) -> None:
        self.not_rtsp = not_rtsp
        self.paths: dict[str, tuple[str, str, str]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.nonce = secrets.token_hex(8)
        self.port = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    def stream(self, path: str) -> None:
        self.paths[path] = ("open", "", "")

    def digest(self, path: str, user: str, password: str) -> None:
        self.paths[path] = ("digest", user, password)

    def basic(self, path: str, user: str, password: str) -> None:
        self.paths[path] = ("basic", user, password)

    def url(self, path: str, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def start(self) -> RtspStub:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock, self.port = sock, sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()  # type: ignore[union-attr]
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    try:
                        conn.sendall(self._answer(head.decode("latin-1")))
                    except OSError:
                        return

    def _answer(self, head: str) -> bytes:
        first, *lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
        method, uri = (first.split(" ") + ["", ""])[:2]
        path = "/" + uri.split("://", 1)[-1].split("/", 1)[-1].split("?")[0] if "://" in uri else uri
        auth = headers.get("authorization", "")
        self.requests.append((method, path, auth))
        if self.not_rtsp:
            return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        cseq = headers.get("cseq", "0")

        def reply(status: str, extra: dict[str, str] | None = None, body: str = "") -> bytes:
            out = [f"RTSP/1.0 {status}", f"CSeq: {cseq}"] + [f"{k}: {v}" for k, v in (extra or {}).items()]
            out.append(f"Content-Length: {len(body)}")
            return ("\r\n".join(out) + "\r\n\r\n" + body).encode()

        if method == "OPTIONS":
            return reply("200 OK", {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"})
        if method != "DESCRIBE":
            return reply("461 Unsupported Transport")
        kind, user, password = self.paths.get(path, ("missing", "", ""))
        if kind == "missing":
            return reply("404 Not Found")
        if kind == "basic":
            good = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if auth != good:
                return reply("401 Unauthorized", {"WWW-Authenticate": 'Basic realm="stub"'})
        elif kind == "digest":
            route = Route(auth="digest", user=user, password=password)
            if not _digest_ok(auth, route, "DESCRIBE", self.nonce, realm="stub"):
                return reply("401 Unauthorized", {"WWW-Authenticate": f'Digest realm="stub", nonce="{self.nonce}"'})
        return reply("200 OK", {"Content-Type": "application/sdp", "Content-Base": uri + "/"}, self.SDP)
