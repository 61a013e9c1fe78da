"""A request's body, read within a bound: forms and API actions carry a few fields, never more."""

from __future__ import annotations

from starlette.requests import Request

#: The largest body a form or an API action may send (bytes).
MAX_BODY = 4096


async def read_body(request: Request) -> bytes | None:
    """The whole body, or None as soon as it passes ``MAX_BODY`` (the rest is never read)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return None
    return raw
