"""The console's JSON API under /api/ (read-only): the same facts as the pages, for scripts and other tools.

Errors are JSON too, ``{"error": "one line"}`` with the status, so a script
never has to parse HTML; a camera id the config does not have is a 404
whatever it looks like, and nothing is ever changed by a GET.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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


def camera(request: Request) -> Response:
    src: data.Sources = request.app.state.sources
    cid = request.path_params["camera_id"]
    cam = src.camera(cid)
    if cam is None:
        return unknown_camera(cid)
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


def current_jpg(request: Request) -> Response:
    src: data.Sources = request.app.state.sources
    cid = request.path_params["camera_id"]
    cam = src.camera(cid)
    if cam is None:
        return unknown_camera(cid)
    return _jpeg(request, data.current_jpeg(src, cam), f"camera '{cid}' has no checked view yet")


def reference_jpg(request: Request) -> Response:
    src: data.Sources = request.app.state.sources
    cid = request.path_params["camera_id"]
    cam = src.camera(cid)
    if cam is None:
        return unknown_camera(cid)
    return _jpeg(request, data.reference_jpeg(src, cam), f"camera '{cid}' has no reference")
