"""The /metrics HTTP listener: a fixed pool of threads behind one accept loop, every connection bounded.

Why not ``socketserver.ThreadingMixIn``: it starts a thread per connection, so
1,000 idle or byte-a-second clients held 1,000 threads, and its listen backlog
of 5 refused honest scrapes meanwhile. Here:

* ONE thread accepts and reads each request's head (request line and headers)
  without blocking, in a selector, so an idle connection costs a file
  descriptor and a few bytes, never a thread;
* a head not complete within ``HEAD_TIMEOUT_S`` (however slowly it trickles),
  or larger than ``MAX_HEAD``, closes the connection; past ``MAX_OPEN``
  connections still reading, the one waiting longest is closed (an honest
  scraper sends its request at once, so it is never the oldest);
* a complete request goes to one of ``WORKERS`` threads through a bounded
  queue (a full queue answers 503 at once) and its answer must be sent within
  ``WRITE_TIMEOUT_S`` (socket timeout; ``sendall`` counts the whole answer);
* the listen backlog is ``BACKLOG``.

The thread count is ``WORKERS + 1`` whatever the clients do. The accept loop
sleeps in ``select()`` until a connection, a byte, a deadline or ``close``
(no polling: benchmarks/bench_idle.py).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)

#: Threads answering requests (a scrape renders in ~0.1 s at 1,000 cameras; Prometheus scrapes one at a time).
WORKERS = 4
#: Complete requests waiting for a worker; past it, 503.
QUEUE = 32
#: Connections still sending their request head; past it, the oldest is closed.
MAX_OPEN = 256
#: Seconds a client has to send its whole request head.
HEAD_TIMEOUT_S = 10.0
#: Seconds a client has to take the whole answer (4.4 MiB at 1,000 cameras, less gzipped).
WRITE_TIMEOUT_S = 30.0
#: Largest request head read (a scrape sends a few hundred bytes).
MAX_HEAD = 16384
#: The listen() backlog.
BACKLOG = 128

_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"


@dataclass
class _Pending:
    sock: socket.socket
    address: tuple[str, int]
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class QuietHandler(WSGIRequestHandler):
    """One request whose head the accept loop already read; no log line per scrape."""

    def __init__(self, request: socket.socket, client_address: tuple[str, int], server: WSGIServer,
                 head: bytes = b"") -> None:
        self.head = head                     # before the base's __init__, which handles the request
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BytesIO(self.head)   # the head; a body, if any, is not read

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """No log line per scrape."""


class PooledServer(WSGIServer):
    """A WSGI server whose threads are fixed (see the module's docstring)."""

    request_queue_size = BACKLOG
    _wake: tuple[int, int] | None = None
    _closing = False

    def open_wake(self) -> None:
        """The pipe close_loop writes to, and the workers; made before the loop starts, so no close is missed."""
        self._wake = os.pipe()
        self._queue: queue.Queue[tuple[socket.socket, tuple[str, int], bytes] | None] = queue.Queue(QUEUE)
        self._workers = [threading.Thread(target=self._work, name=f"metrics-http-{i}", daemon=True)
                         for i in range(WORKERS)]
        for t in self._workers:
            t.start()

    def serve_until_closed(self) -> None:
        """Accept, read request heads, hand complete ones to the pool; until close_loop."""
        assert self._wake is not None, "open_wake() first"
        pending: dict[int, _Pending] = {}
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ)
            sel.register(self._wake[0], selectors.EVENT_READ)
            while not self._closing:
                now = time.monotonic()
                timeout = min((p.deadline for p in pending.values()), default=now + 3600) - now
                for key, _ in sel.select(max(0.0, timeout)):
                    if self._closing:
                        break
                    if key.fileobj is self.socket:
                        self._accept(sel, pending)
                    elif key.fileobj is not self._wake[0]:
                        self._read(sel, pending, pending[key.fd])
                now = time.monotonic()
                for p in [p for p in pending.values() if p.deadline <= now]:
                    self._drop(sel, pending, p)
            for p in list(pending.values()):
                self._drop(sel, pending, p)

    def _accept(self, sel: selectors.BaseSelector, pending: dict[int, _Pending]) -> None:
        for _ in range(64):   # several per wake-up, but never starve the reads
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # out of file descriptors, say: the loop must go on
                log.warning("metrics: cannot accept a connection: %s", exc)
                return
            if len(pending) >= MAX_OPEN:
                self._drop(sel, pending, min(pending.values(), key=lambda p: p.deadline))
            sock.setblocking(False)
            p = _Pending(sock, address, time.monotonic() + HEAD_TIMEOUT_S)
            pending[sock.fileno()] = p
            sel.register(sock, selectors.EVENT_READ)

    def _read(self, sel: selectors.BaseSelector, pending: dict[int, _Pending], p: _Pending) -> None:
        try:
            data = p.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        p.head += data
        if not data or len(p.head) > MAX_HEAD:
            self._drop(sel, pending, p)
            return
        if b"\r\n\r\n" not in p.head and b"\n\n" not in p.head:
            return
        sel.unregister(p.sock)
        del pending[p.sock.fileno()]
        try:
            p.sock.setblocking(True)
            p.sock.settimeout(WRITE_TIMEOUT_S)
            self._queue.put_nowait((p.sock, p.address, bytes(p.head)))
        except queue.Full:
            try:
                p.sock.send(_BUSY)
            except OSError:
                pass
            p.sock.close()
        except OSError:
            p.sock.close()

    def _drop(self, sel: selectors.BaseSelector, pending: dict[int, _Pending], p: _Pending) -> None:
        pending.pop(p.sock.fileno(), None)
        try:
            sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sock, address, head = item
            try:
                QuietHandler(sock, address, self, head)
            except Exception as exc:   # a client that went away, a timeout: its problem, not ours
                log.debug("metrics: request from %s ended: %s", address[0], exc)
            finally:
                try:
                    sock.shutdown(socket.SHUT_WR)    # the answer is complete: let the client read it all
                except OSError:
                    pass
                sock.close()

    def close_loop(self, thread: threading.Thread, timeout: float) -> None:
        """Stop the accept loop and the workers (a worker mid-answer finishes within its timeout)."""
        self._closing = True
        if self._wake is not None:
            os.write(self._wake[1], b"\0")
        deadline = time.monotonic() + timeout
        thread.join(timeout)
        for _ in self._workers:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                break
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._wake is not None and not thread.is_alive():
            for fd in self._wake:
                os.close(fd)
            self._wake = None
