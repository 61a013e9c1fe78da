"""Secrets in one place: what is a secret, how it is masked, how a URL gives its own up.

Why one module: a camera password or a webhook token can reach a log line, an
error, an event, a metrics label or stdout from any layer. If each layer kept
its own list and its own URL splitting, one of them would sooner or later miss
a case (a percent-encoded password, a token in a query). So the config loader
registers every secret it sees here, once, and everything that prints or logs
passes its text through :func:`scrub` (the log handler does it for every record).

Two ways to hide a secret, because they fail differently:

* **By position in a URL** (:func:`redact_url`, and :func:`scrub` for any
  ``scheme://`` URL in free text): the ``user:password@`` part, every query
  value (cameras name their credential keys anything: ``loginpas``, ``psw``,
  ``pwd1``) unless the config lists the key as public, and the ``#fragment``
  (dropped). This does not depend on the value's length: a 2-character password
  is masked like a 20-character one.
* **By value in free text** (:func:`mask`): each registered secret wherever it
  appears (a library's error that quotes only the password). Here a minimum
  length is kept (:data:`MIN_LEN`): masking "1" or "ab" would blank every digit
  and syllable of every message, and the places a secret that short can be
  shown are URLs, which the position rule covers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

#: A secret shorter than this is not masked in free text: it would mask ordinary words ("ab" in every
#: message). In a URL (userinfo, query values) short secrets are masked by position all the same.
MIN_LEN = 3
#: Names whose values are taken for secrets: header and config keys; such a query key can never be public.
SECRET_KEY = re.compile(r"pass|pwd|psw|secret|token|key|auth|sig|cred", re.I)
#: camwatch's own query parameters (read and removed by camwatch, never sent to a camera): these values
#: are settings, shown as they are.
OWN_QUERY: dict[str, frozenset[str]] = {"transport": frozenset({"tcp", "udp", "udp_multicast", "http"})}
MASK = "***"

_SECRETS: set[str] = set()
_PUBLIC_QUERY: set[str] = set()
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
#: A URL in free text: scheme://authority/path, then its ?query and #fragment (each up to a space or quote).
_URL_TAIL = re.compile(r"(?P<base>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>?#]*)"
                       r"(?P<query>\?[^\s'\"<>#]*)?(?P<fragment>#[^\s'\"<>]*)?")
#: A query without a scheme before it: a request line's path (urllib3 logs ``GET /snap?psw=x``), a
#: relative URL. Recognised by its ``=``: a sentence's "?" is followed by a space, not ``k=v``.
_BARE_QUERY = re.compile(r"(?P<lead>[^\s'\"<>?#]*)\?(?P<query>[^\s'\"<>#?]*=[^\s'\"<>#]*)(?P<fragment>#[^\s'\"<>]*)?")
#: Punctuation that ends a sentence rather than a URL: "(rtsp://cam/s?a=1)." keeps its ")."
_TRAILING = ").,;:!]}"


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` masks it wherever it would be shown."""
    if value and len(value) >= MIN_LEN:
        _SECRETS.add(value)


def register_public_query(names: Iterable[str]) -> None:
    """Query keys the config marks public: :func:`scrub` shows their values in URLs of free text.

    One set for the process (the union of every camera's ``public_query``): free
    text does not say which camera a URL belongs to.
    """
    _PUBLIC_QUERY.update(n for n in names if n and not SECRET_KEY.search(n))


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ***, longest first (so no tail of one is left)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) >= MIN_LEN and s in text:
            text = text.replace(s, MASK)
    return text


def is_public_query(name: str, value: str, public: Collection[str]) -> bool:
    """Whether a query value may be shown: its key is listed public (and not named like a credential),
    or it is camwatch's own setting (``transport=udp``)."""
    if name in OWN_QUERY:
        return unquote_plus(value).lower() in OWN_QUERY[name]
    return name in public and not SECRET_KEY.search(name)


def redact_query(query: str, public: Collection[str] = ()) -> str:
    """``a=1&psw=x`` as ``a=***&psw=***``: every value masked unless its key is public; keys as written.

    A piece with no ``=`` (``?s3cr3t``) is a value with no name: masked whole
    unless it is itself a public name. An empty value (``key=``) hides nothing.
    """
    out = []
    for piece in query.split("&"):
        key, sep, value = piece.partition("=")
        name = unquote_plus(key)
        if not sep:
            out.append(piece if not piece or is_public_query(name, "", public) else MASK)
        elif value and not is_public_query(name, value, public):
            out.append(f"{key}={MASK}")
        else:
            out.append(piece)
    return "&".join(out)


def _scrub_url(m: re.Match[str]) -> str:
    """One URL of free text with its query values masked and its fragment dropped (sentence punctuation kept)."""
    query, fragment, tail = m.group("query") or "", m.group("fragment") or "", ""
    last = fragment or query
    stripped = last.rstrip(_TRAILING)
    tail = last[len(stripped):]
    if fragment:
        fragment = ""
    else:
        query = stripped
    if query:
        query = "?" + redact_query(query[1:], _PUBLIC_QUERY)
    return m.group("base") + query + tail


def _scrub_bare(m: re.Match[str]) -> str:
    """A query with no scheme before it, masked like a URL's; a demo scene's settings are left alone."""
    if m.group("lead").lower().startswith("demo:"):
        return m.group(0)
    query, fragment = m.group("query"), m.group("fragment") or ""
    last = fragment or query
    tail = last[len(last.rstrip(_TRAILING)):]
    if not fragment:
        query = query[: len(query) - len(tail)]
    return f"{m.group('lead')}?{redact_query(query, _PUBLIC_QUERY)}{tail}"


def scrub(text: str) -> str:
    """Mask every registered secret, any user:password@ part, query value and fragment of a URL.

    Registered secrets first: one may be a whole URL (a webhook's), which would no
    longer match once its query had been masked, leaving its path token in clear.
    """
    text = mask(text, _SECRETS)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    if "://" in text:
        text = _URL_TAIL.sub(_scrub_url, text)
    if "?" in text:
        text = _BARE_QUERY.sub(_scrub_bare, text)
    return text


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


def drop_fragment(url: str) -> tuple[str, str]:
    """(the URL without its ``#fragment``, the fragment): a fragment is never sent, so never kept.

    Only for URLs with an authority (``scheme://``): in a plain file path '#' is
    part of the name.
    """
    if "://" not in url or "#" not in url:
        return url, ""
    head, _, fragment = url.partition("#")
    return head, fragment


def redact_url(url: str, secrets: Iterable[str] = (), public: Collection[str] = ()) -> str:
    """The form to log: password as ***, every query value as *** unless its key is in ``public``, no fragment.

    ``rtsp://admin:pw@cam/s?channel=1&psw=x#f`` with ``public=["channel"]`` is
    ``rtsp://admin:***@cam/s?channel=1&psw=***``. URLs without ``//`` (``demo:lobby?seed=3``)
    carry no credentials: their query is a description and is kept. Any known
    secret left (a token in the path) is masked too.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = netloc.rsplit("@", 1)[1]
            netloc = f"{parts.username}:{MASK}@{host}" if parts.username else f"{MASK}@{host}"
        query = redact_query(parts.query, public) if "://" in url else parts.query
        text = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        text = scrub(url)
    return mask(text, secrets)


def url_secrets(url: str, webhook: bool = False, public: Collection[str] = ()) -> set[str]:
    """The secrets a URL carries: its password, every query value (but public keys'), its fragment.

    Each as written and unquoted, since either form can be shown. A webhook URL
    is itself often the credential (Slack's /services/T0/B0/XXXX), so for one
    every long or mixed letters-and-digits path segment counts as well. URLs
    without ``//`` (demo scenes) carry none.
    """
    out: set[str] = set()
    if "://" not in url:
        return out
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out.update({parts.password, unquote(parts.password)})
    for piece in parts.query.split("&") if parts.query else ():
        key, sep, value = piece.partition("=")
        if not sep:
            key, value = "", piece
        if value and (webhook or not is_public_query(unquote_plus(key), value, public)):
            out.update({value, unquote_plus(value), quote(unquote_plus(value), safe="")})
    if parts.fragment:
        out.update({parts.fragment, unquote(parts.fragment)})
    if webhook:
        for seg in parts.path.split("/"):
            if len(seg) >= 16 or (len(seg) >= 8 and re.search(r"\d", seg) and re.search(r"[A-Za-z]", seg)):
                out.add(seg)
    return {s for s in out if s}
