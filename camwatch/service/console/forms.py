"""The console's forms: log in, log out, and an operator's actions on a camera (``operate``).

Every form carries a CSRF token that must match the one the console gave
(the session's, or before login the login cookie's), and a form without it
changes nothing. Bodies are read up to ``bodies.MAX_BODY`` bytes and parsed here
(urlencoded: three short fields), so no multipart parser is needed.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from camwatch.core.errors import ActionError
from camwatch.service.console import auth, operate, views
from camwatch.service.console.bodies import read_body
from camwatch.service.console.data import Sources

#: Largest form body read.


def operators(request: Request) -> auth.Operators | None:
    ops: auth.Operators | None = request.app.state.operators
    return ops


def viewer(request: Request) -> views.Viewer:
    """Who is looking: a logged-in operator, or a reader (who may log in when actions are on)."""
    ops = operators(request)
    if ops is None:
        return views.READER
    s = ops.session(request.cookies.get(auth.SESSION_COOKIE))
    return views.Viewer(True, s.who, s.csrf) if s else views.Viewer(True)


async def _form(request: Request) -> dict[str, str] | None:
    body = await read_body(request)
    if body is None:
        return None
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


def _refused(status: int, text: str, request: Request) -> HTMLResponse:
    return HTMLResponse(views.message_page("Refused", text, viewer(request)), status_code=status)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def login_form(request: Request) -> Response:
    if operators(request) is None:
        return _refused(404, "actions are off: settings.console.token is not set", request)
    csrf = auth.new_token()
    r = HTMLResponse(views.login_page(csrf), headers={"Cache-Control": "no-store"})
    r.set_cookie(auth.LOGIN_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict", path="/login",
                 secure=request.url.scheme == "https")
    return r


async def login(request: Request) -> Response:
    ops = operators(request)
    if ops is None:
        return _refused(404, "actions are off: settings.console.token is not set", request)
    form = await _form(request)
    if form is None or not auth.same(form.get("csrf"), request.cookies.get(auth.LOGIN_COOKIE)):
        return _refused(403, "the form has expired or did not come from this console; log in again", request)
    client = _client(request)
    wait = ops.wait_s(client)
    if wait:
        r = _refused(429, f"too many failed logins from this address; try again in {wait:.0f} s", request)
        r.headers["Retry-After"] = f"{wait:.0f}"
        return r
    who = form.get("name", "").strip()
    if not auth.NAME.fullmatch(who):
        return HTMLResponse(views.login_page(form["csrf"], "your name: 1 to 40 letters, digits, spaces, "
                                                         "'.', '_', '@' or '-'"), status_code=400)
    got = ops.login(client, who, form.get("token", ""))
    if got is None:
        return HTMLResponse(views.login_page(form["csrf"], "wrong token"), status_code=401)
    sid, _ = got
    done = RedirectResponse("/", status_code=303)
    done.set_cookie(auth.SESSION_COOKIE, sid, max_age=auth.SESSION_S, httponly=True, samesite="strict", path="/",
                    secure=request.url.scheme == "https")   # over HTTPS, never sent in clear
    done.delete_cookie(auth.LOGIN_COOKIE, path="/login")
    return done


async def logout(request: Request) -> Response:
    ops = operators(request)
    form = await _form(request)
    sid = request.cookies.get(auth.SESSION_COOKIE)
    s = ops.session(sid) if ops is not None else None
    if ops is None or s is None or form is None or not auth.same(form.get("csrf"), s.csrf):
        return _refused(403, "not logged in, or the form did not come from this console", request)
    ops.logout(sid)
    r = RedirectResponse("/", status_code=303)
    r.delete_cookie(auth.SESSION_COOKIE, path="/")
    return r


async def act(request: Request) -> Response:
    """POST /cameras/{id}/{action}: one of ``operate.ACTIONS``, by a logged-in operator with the form's CSRF token."""
    ops = operators(request)
    if ops is None:
        return _refused(404, "actions are off: settings.console.token is not set", request)
    s = ops.session(request.cookies.get(auth.SESSION_COOKIE))
    if s is None:
        return _refused(401, "log in first", request)
    form = await _form(request)
    if form is None or not auth.same(form.get("csrf"), s.csrf):
        return _refused(403, "the form did not come from this console (no or a wrong CSRF token); nothing was done",
                        request)
    src: Sources = request.app.state.sources
    cid, action = request.path_params["camera_id"], request.path_params["action"]
    cam = src.camera(cid)
    if cam is None or src.runtimes().get(cid) is None:
        return _refused(404, f"unknown camera '{cid[:80]}'", request)
    try:
        done = await run_in_threadpool(operate.perform, src, cam, action, form, s.who)
    except ActionError as exc:
        return _refused(exc.status, f"{exc}; nothing was done", request)
    if "label" in done and not done["done"]:
        return RedirectResponse(f"/cameras/{quote(cid)}?accepted={quote(str(done['label']))}", status_code=303)
    return RedirectResponse(f"/cameras/{quote(cid)}?done={action}", status_code=303)
