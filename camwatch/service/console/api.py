"""The console's JSON API under /api/ (read-only): the same facts as the pages, for scripts and other tools.

Errors are JSON too, ``{"error": "one line"}`` with the status, so a script
never has to parse HTML; a camera id the config does not have is a 404
whatever it looks like, and nothing is ever changed by a GET.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from camwatch.config import CameraConfig
from camwatch.config.types import clip
from camwatch.service.console import data

#: How long a browser may keep a thumbnail without asking again (the tag changes with each check).
THUMB_MAX_AGE_S = 2


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def unknown_camera(camera_id: str) -> JSONResponse:
    return error(404, f"unknown camera '{clip(camera_id)}'")


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
def history(request: Request, src: data.Sources, cam: CameraConfig) -> Response:
    """GET /api/cameras/{id}/history: 24 h of checks, five-minute points."""
    return JSONResponse(data.history(src, cam), headers={"Cache-Control": "no-store"})
