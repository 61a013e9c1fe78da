"""The console's listener: uvicorn serving the Starlette app in one daemon thread, on its own socket.

Why the socket is bound here, before the thread starts: a port already in use
must stop the daemon's start with a one-line error naming the address, not die
quietly inside a thread (uvicorn would ``sys.exit`` there). Why its own event
loop thread: the checks never wait on a browser, and a slow browser never
holds a check.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading

import uvicorn

from camwatch.config.schema import ConsoleSettings
from camwatch.core.errors import CamwatchError
from camwatch.service.console.app import build_app, is_loopback_name
from camwatch.service.console.auth import Operators
from camwatch.service.console.data import Sources

log = logging.getLogger(__name__)

#: Seconds stop() waits for the server thread (open connections are closed after it).
STOP_TIMEOUT_S = 3.0
#: Shortest console token accepted.
MIN_TOKEN = 16
#: Connections served at once; past it, 503 (a control room has a few browsers, not hundreds).
MAX_CONNECTIONS = 64


class ConsoleServer:
    """A running console; ``close()`` stops it (idempotent)."""

    def __init__(self, settings: ConsoleSettings, sources: Sources) -> None:
        if settings.token is not None and len(settings.token) < MIN_TOKEN:
            raise CamwatchError(f"settings.console.token: at least {MIN_TOKEN} characters (a login is guessed "
                                "otherwise); e.g. ${cred:console-token} from a systemd credential")
        tls = _check_tls(settings)
        family = socket.AF_INET6 if ":" in settings.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((settings.address, settings.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise CamwatchError(f"console: cannot listen on {settings.address}:{settings.port}: "
                                f"{exc.strerror or exc}") from None
        self.socket = sock
        self.address, self.port = sock.getsockname()[:2]
        operators = Operators(settings.token) if settings.token else None
        app = build_app(sources, loopback=is_loopback_name(settings.address), operators=operators)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5, server_header=False,
                                ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()
        self.scheme = "https" if tls else "http"
        log.info("console on %s://%s:%d/", self.scheme, settings.address, self.port)

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self.socket]))
        except Exception as exc:  # the checks go on without a console
            log.error("console stopped: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1.0)
        try:
            self.socket.close()
        except OSError:
            pass


def _check_tls(settings: ConsoleSettings) -> tuple[str, str] | None:
    """(certificate, key) paths when HTTPS is configured, loaded once here so a bad pair stops the start
    with one line (uvicorn would fail inside its thread, and the console would quietly be missing)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    cert, key = str(settings.tls_cert), str(settings.tls_key)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise CamwatchError(f"settings.console.tls_cert/tls_key: {cert} and {key} are not a PEM certificate "
                            f"and its private key ({reason})") from None
    return cert, key
