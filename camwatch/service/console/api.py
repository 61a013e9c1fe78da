"""The console's JSON API under /api/: the same facts as the pages, and the same actions, for scripts.

Errors are JSON too, ``{"error": "one line"}`` with the status, so a script
never has to parse HTML; a camera id the config does not have is a 404
whatever it looks like, and nothing is ever changed by a GET. An action is a
POST with the console token as ``Authorization: Bearer TOKEN`` (a wrong one
counts against the address as a failed login does) and a JSON object body
naming who acts (``{"by": "ops-script", ...}``); described in /api/openapi.json.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from camwatch.config import CameraConfig
from camwatch.config.types import clip
from camwatch.core.errors import ActionError
from camwatch.service.console import auth, data, operate
from camwatch.service.console.bodies import MAX_BODY, read_body
from camwatch.service.console.openapi import SPEC

#: Largest action body read.

#: How long a browser may keep a thumbnail without asking again (the tag changes with each check).
THUMB_MAX_AGE_S = 2


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def unknown_camera(camera_id: str) -> JSONResponse:
    return error(404, f"unknown camera '{clip(camera_id)}'")


def openapi(request: Request) -> Response:
    """GET /api/openapi.json: this API described (``openapi.SPEC``)."""
    return JSONResponse(SPEC)


def cameras(request: Request) -> Response:
    src: data.Sources = request.app.state.sources
    return JSONResponse(data.fleet(src), headers={"Cache-Control": "no-store"})


def per_camera(answer: Callable[[Request, data.Sources, CameraConfig], Response]) -> Callable[[Request], Response]:
    """A route about one camera: ``answer`` gets the configured camera the path names; any other id is a 404."""

    @functools.wraps(answer)
    def route(request: Request) -> Response:
        src: data.Sources = request.app.state.sources
        cid = request.path_params["camera_id"]
        cam = src.camera(cid)
        return unknown_camera(cid) if cam is None else answer(request, src, cam)

    return route


@per_camera
def camera(request: Request, src: data.Sources, cam: CameraConfig) -> Response:
    return JSONResponse(data.camera_detail(src, cam), headers={"Cache-Control": "no-store"})


def _jpeg(request: Request, got: tuple[str, bytes] | None, missing: str) -> Response:
    if got is None:
        return error(404, missing)
    tag, jpeg = got
    etag = f'"{tag}"'
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={THUMB_MAX_AGE_S}"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(jpeg, media_type="image/jpeg", headers=headers)


#: The thumbnails a camera has: (how it is made, what a 404 says when there is none yet).
THUMBNAILS = {"current.jpg": (data.current_jpeg, "has no checked view yet"),
              "reference.jpg": (data.reference_jpeg, "has no reference"),
              "difference.jpg": (data.difference_jpeg, "has no reference or no checked view yet")}


@per_camera
def thumbnail(request: Request, src: data.Sources, cam: CameraConfig) -> Response:
    """GET /api/cameras/{id}/current.jpg | reference.jpg | difference.jpg."""
    which = THUMBNAILS.get(request.path_params["image"])
    if which is None:
        return error(404, "not found")
    make, missing = which
    return _jpeg(request, make(src, cam), f"camera '{cam.id}' {missing}")


@per_camera
def evidence(request: Request, src: data.Sources, cam: CameraConfig) -> Response:
    """GET /api/cameras/{id}/events/{event_id}/evidence.jpg: reference and view side by side, as alerted."""
    event_id = request.path_params["event_id"]
    return _jpeg(request, data.evidence_jpeg(src, cam, event_id),
                 f"camera '{cam.id}' has no event '{clip(event_id, 40)}' with evidence")


@per_camera
def scene(request: Request, src: data.Sources, cam: CameraConfig) -> Response:
    """GET /api/cameras/{id}/scene: the stable/busy map of its newest reference."""
    return JSONResponse(data.scene(src, cam), headers={"Cache-Control": "no-store"})


@per_camera
def history(request: Request, src: data.Sources, cam: CameraConfig) -> Response:
    """GET /api/cameras/{id}/history: 24 h of checks, five-minute points."""
    return JSONResponse(data.history(src, cam), headers={"Cache-Control": "no-store"})


async def _body(request: Request) -> dict[str, str] | None:
    """The JSON object an action carries (its values as text), or None when it is not one."""
    raw = await read_body(request)
    if raw is None:
        return None
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or not all(isinstance(v, (str, int, float)) for v in doc.values()):
        return None
    return {str(k): str(v) for k, v in doc.items()}


async def act(request: Request) -> Response:
    """POST /api/cameras/{id}/{action} (``operate.ACTIONS``): 200 done, 202 asked (at the next check)."""
    ops: auth.Operators | None = request.app.state.operators
    if ops is None:
        return error(404, "actions are off: settings.console.token is not set")
    client = request.client.host if request.client else "?"
    wait = ops.wait_s(client)
    if wait:
        r = error(429, f"too many failed logins from this address; try again in {wait:.0f} s")
        r.headers["Retry-After"] = f"{wait:.0f}"
        return r
    given = request.headers.get("authorization", "")
    if not given.lower().startswith("bearer ") or not ops.token_ok(client, given[7:].strip()):
        return JSONResponse({"error": "an action needs the console token: Authorization: Bearer TOKEN"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"})
    body = await _body(request)
    if body is None:
        return error(400, f"the body must be a JSON object of texts and numbers, at most {MAX_BODY} bytes")
    src: data.Sources = request.app.state.sources
    cid = request.path_params["camera_id"]
    cam = src.camera(cid)
    if cam is None:
        return error(404, f"unknown camera '{clip(cid)}'; nothing was done")
    try:
        done = await run_in_threadpool(operate.perform, src, cam, request.path_params["action"], body,
                                       body.get("by", "api"))
    except ActionError as exc:
        return error(exc.status, f"{exc}; nothing was done")
    return JSONResponse(done, status_code=200 if done["done"] else 202, headers={"Cache-Control": "no-store"})
