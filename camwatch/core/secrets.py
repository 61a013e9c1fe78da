"""Secrets in one place: what is a secret, how it is masked, how a URL gives its own up.

Why one module: a camera password or a webhook token can reach a log line, an
error, an event, a metrics label or stdout from any layer. If each layer kept
its own list and its own URL splitting, one of them would sooner or later miss
a case (a percent-encoded password, a token in a query). So the config loader
registers every secret it sees here, once, and everything that prints or logs
passes its text through :func:`scrub` (the log handler does it for every record).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

#: A secret shorter than this would mask ordinary words ("ab" in every message).
MIN_LEN = 3
#: Query or key names whose values are taken for secrets (?token=..., password:, api_key ...).
SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred", re.I)

_SECRETS: set[str] = set()
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` masks it wherever it would be shown."""
    if value and len(value) >= MIN_LEN:
        _SECRETS.add(value)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ***, longest first (so no tail of one is left)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) >= MIN_LEN and s in text:
            text = text.replace(s, "***")
    return text


def scrub(text: str) -> str:
    """Mask every registered secret and any user:password@ part of a URL."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return mask(text, _SECRETS)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without its userinfo, username, password), the names unquoted; None where absent.

    The one place that takes a URL's ``user:password@`` apart, so that '@', ':'
    or '/' percent-encoded in a password mean the same everywhere. A URL that
    cannot be split comes back as it is, with no credentials.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    if "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return bare, username, password


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """The URL with its password, secret-looking query values and any known secret as ***: the form to log."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = netloc.rsplit("@", 1)[1]
            netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
        query = "&".join(f"{k}={'***' if SECRET_KEY.search(k) else v}" for k, v in
                         parse_qsl(parts.query, keep_blank_values=True)) if parts.query else ""
        text = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        text = scrub(url)
    return mask(text, secrets)


def url_secrets(url: str, webhook: bool = False) -> set[str]:
    """The secrets a URL carries: its password (as written and unquoted), token-like query values.

    A webhook URL is itself often the credential (Slack's /services/T0/B0/XXXX),
    so for one every query value and every long or mixed letters-and-digits path
    segment counts as well.
    """
    out: set[str] = set()
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out.update({parts.password, unquote(parts.password)})
    for k, v in parse_qsl(parts.query, keep_blank_values=False):
        if webhook or SECRET_KEY.search(k):
            if len(v) >= 6 or not webhook:
                out.add(v)
    if webhook:
        for seg in parts.path.split("/"):
            if len(seg) >= 16 or (len(seg) >= 8 and re.search(r"\d", seg) and re.search(r"[A-Za-z]", seg)):
                out.add(seg)
    return {s for s in out if s}
