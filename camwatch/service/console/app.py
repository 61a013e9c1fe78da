"""The console's routes (Starlette): pages, the JSON API, the packaged assets.

Every answer carries headers that keep a page to its own origin (a strict
Content-Security-Policy: no inline script, no third-party asset, no framing):
cameras live on closed networks, so nothing is ever fetched from a CDN.
"""

from __future__ import annotations

import ipaddress
import json
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camwatch.service.console import api, auth, data, forms, operate, views

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                                 b"base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class _Headers:
    """Adds SECURITY_HEADERS to every HTTP answer (pure ASGI, so streaming is untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def is_loopback_name(host: str) -> bool:
    """Whether ``host`` (a Host header's name, or a listen address) names this machine's loopback."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    if value.startswith("["):                      # [::1]:9809
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _LoopbackHost:
    """On a loopback listener, answers only requests whose Host is a loopback name.

    Why: a page on any web site can make the operator's browser resolve its own
    name to 127.0.0.1 (DNS rebinding) and then read a loopback console as
    same-origin: camera views included. Such a request carries the site's name in
    Host and is refused here. An SSH tunnel (localhost) and a reverse proxy's
    default Host (its upstream, 127.0.0.1:port) pass.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not is_loopback_name(_host_name(host)):
                body = json.dumps({"error": "this console answers only requests to a loopback name "
                                            "(localhost, 127.0.0.1, [::1])"}).encode()
                await send({"type": "http.response.start", "status": 421,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def fleet_page(request: Request) -> Response:
    src: data.Sources = request.app.state.sources
    state = request.query_params.get("state") or None
    if state is not None and state not in views.FILTERS:
        return HTMLResponse(views.not_found_page(f"no such state: {state[:40]}"), status_code=404)
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        page = 1
    return HTMLResponse(views.fleet_page(data.fleet(src), state, page, forms.viewer(request)),
                        headers={"Cache-Control": "no-store"})


def camera_page(request: Request) -> Response:
    src: data.Sources = request.app.state.sources
    cid = request.path_params["camera_id"]
    cam = src.camera(cid)
    if cam is None:
        return HTMLResponse(views.not_found_page(f"unknown camera '{cid[:80]}'"), status_code=404)
    label = request.query_params.get("accepted")
    notice = (f"Asked: the next checked view becomes reference '{label[:64]}'; the page follows by itself."
              if label else operate.DONE.get(request.query_params.get("done", ""), ""))
    page = views.camera_page(data.camera_detail(src, cam), data.history(src, cam), forms.viewer(request), notice,
                             data.scene(src, cam))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith("/api/"):
        return api.error(status, "not found" if status == 404 else "method not allowed" if status == 405
                         else "error")
    return HTMLResponse(views.not_found_page(request.url.path[:80]), status_code=status)


def build_app(sources: data.Sources, loopback: bool = True, operators: auth.Operators | None = None) -> ASGIApp:
    """The console as an ASGI app reading from ``sources``; ``loopback``: it listens on a loopback
    address, so it refuses a Host that is not a loopback name (see _LoopbackHost); ``operators``:
    who may log in and act (None: read-only)."""
    static = StaticFiles(directory=str(resources.files("camwatch.service.console") / "static"))
    app = Starlette(routes=[
        Route("/", fleet_page),
        Route("/cameras/{camera_id}", camera_page),
        Route("/cameras/{camera_id}/{action}", forms.act, methods=["POST"]),
        Route("/login", forms.login_form, methods=["GET"]),
        Route("/login", forms.login, methods=["POST"]),
        Route("/logout", forms.logout, methods=["POST"]),
        Route("/api/openapi.json", api.openapi),
        Route("/api/cameras", api.cameras),
        Route("/api/cameras/{camera_id}", api.camera),
        Route("/api/cameras/{camera_id}/history", api.history),
        Route("/api/cameras/{camera_id}/scene", api.scene),
        Route("/api/cameras/{camera_id}/{action}", api.act, methods=["POST"]),
        Route("/api/cameras/{camera_id}/{image}", api.thumbnail),
        Route("/api/cameras/{camera_id}/events/{event_id}/evidence.jpg", api.evidence),
        Mount("/static", static, name="static"),
    ], exception_handlers={HTTPException: _not_found})
    app.state.sources = sources
    app.state.operators = operators
    # The fleet's JSON at 1,000 cameras is ~170 KB, ~15 KB gzipped: five browsers polling it stay cheap.
    served: ASGIApp = GZipMiddleware(app, minimum_size=512)
    return _Headers(_LoopbackHost(served) if loopback else served)
