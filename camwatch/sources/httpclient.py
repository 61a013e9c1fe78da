"""One HTTP client for everything camwatch asks of a web server: camera snapshots and webhook deliveries.

Both need the same four things done right, and two clients had drifted apart
(urllib with a socket-cutting timer for webhooks, requests in a worker for
cameras):

- auth, basic or digest (requests': hand-written digest is a classic source of
  bugs), with credentials given or taken from the URL's userinfo, which
  ``core.secrets.split_credentials`` takes apart, and sent only with the scheme
  the caller names, or digest when the server's challenge offers it: a server
  that asks for Basic over plain HTTP gets no password unless Basic was named
  (anyone on the path could read it);
- redirects followed only within the URL's own scheme and host by default: an
  answer that points elsewhere (a link-local metadata address) is refused, not
  fetched on the camera's behalf, and credentials never follow to another host;
- TLS verified unless the caller turns it off;
- a byte cap: a body is read in chunks and never held past its cap;
- a hard overall deadline. Socket timeouts bound each operation, so a server
  that sends a byte a second would hold a request for as long as it liked: the
  body read checks a deadline, and the whole request runs in a bounded worker
  (``sources.bounded``) that the caller stops waiting for at the deadline,
  whatever the library is stuck in (a DNS lookup, a handshake, dripped headers).

Every failure is one ``HttpError`` with a bounded ``reason``, and its message
holds neither the URL nor a secret: it goes to logs and events as it is.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.auth import AuthBase, HTTPBasicAuth, HTTPDigestAuth

from camwatch.core.errors import CamwatchError
from camwatch.core.secrets import split_credentials
from camwatch.sources.bounded import DEADLINE_SLACK_S, Bounded

#: The reasons an HttpError can carry (bounded: they become metrics labels via sources).
REASONS = ("connect", "timeout", "tls", "auth", "redirect")
#: Redirect policies: none, within the URL's scheme and host (the default), or anywhere.
REDIRECTS = ("none", "same-host", "any")
#: Redirects followed in one request at most.
MAX_REDIRECTS = 5

_CHUNK = 65536
#: An auth scheme in a WWW-Authenticate value: a token followed by a parameter, or alone.
_SCHEME = re.compile(r"(?:^|,)\s*([A-Za-z][A-Za-z0-9_-]*)(?=\s+[A-Za-z0-9_-]+\s*=|\s*(?:,|$))")

T = TypeVar("T")


class HttpError(CamwatchError):
    """A request that got no answer in time, or none at all; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class HttpResponse:
    """An answer, read whole or up to its cap: ``complete`` is False when the body was cut
    there (or not read at all, its announced length being over the cap)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    complete: bool

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters ("" if none was sent)."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    @property
    def announced_length(self) -> int | None:
        length = self.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None


def is_text(content_type: str) -> bool:
    """Whether a media type is a page or a document rather than an image."""
    return content_type.startswith("text/") or content_type in ("application/json", "application/xml")


class _SharedState:
    """A plain attribute holder standing in for threading.local()."""


_warn_lock = threading.Lock()
_insecure_quieted = False


def _quiet_insecure_warnings() -> None:
    """urllib3 warns at every unverified HTTPS request, on stderr past the log scrubber; the
    user who set verify off has chosen it. Done once, when the first such client is made."""
    global _insecure_quieted
    with _warn_lock:
        if not _insecure_quieted:
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            _insecure_quieted = True


class HttpClient:
    """Requests to one URL over a keep-alive session, each within ``timeout`` seconds.

    Credentials: ``username``/``password`` if given, else the URL's userinfo.
    ``auth`` is basic, digest, or None to follow the server's challenge (digest
    when offered; Basic only over HTTPS) and remember what worked. A request
    that carries its own Authorization header is sent without the client's.
    ``redirects`` is one of REDIRECTS. At most one request is in flight; one
    given up on (hung in a library) refuses the next until it has ended.
    """

    def __init__(self, url: str, timeout: float, *, username: str | None = None, password: str | None = None,
                 auth: str | None = None, verify: bool = True, name: str = "http", redirects: str = "same-host"):
        self.url, url_user, url_password = split_credentials(url)
        if username:
            self._user: str | None = username
            self._password = password or ""
        else:
            self._user, self._password = url_user, url_password or ""
        self.auth_kind = auth
        self.timeout = float(timeout)
        self.verify = verify
        if redirects not in REDIRECTS:
            raise ValueError(f"redirects must be one of {', '.join(REDIRECTS)}, not {redirects!r}")
        self.redirects = redirects
        if not verify:
            _quiet_insecure_warnings()
        self._session: requests.Session | None = None
        self._auths: dict[str, AuthBase] = {}
        self._bounded = Bounded(name, HttpError)

    def request(self, method: str = "GET", *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                max_bytes: int, text_max_bytes: int | None = None, follow_redirects: bool = True) -> HttpResponse:
        """Send one request and read its answer, all of it within ``timeout`` (+ a little slack
        for the worker to report); HttpError otherwise.

        ``max_bytes`` caps the body; ``text_max_bytes`` caps a text/JSON/XML body lower
        (enough to tell an error page from an image without downloading a large one).
        ``follow_redirects=False`` returns a redirect as it is, whatever the client's policy.
        """
        return self.request_then(_answer, method, body=body, headers=headers, max_bytes=max_bytes,
                                 text_max_bytes=text_max_bytes, follow_redirects=follow_redirects)

    def request_then(self, then: Callable[[HttpResponse], T], method: str = "GET", *, body: bytes | None = None,
                     headers: Mapping[str, str] | None = None, max_bytes: int, text_max_bytes: int | None = None,
                     follow_redirects: bool = True) -> T:
        """``request``, then ``then(answer)`` in the same bounded worker, within the same deadline.

        For work on the answer that must not outlive the deadline either (decoding a
        snapshot): if the caller stops waiting, what ``then`` made is dropped with the
        worker, never kept alive behind a timed-out call.
        """
        def exchange() -> T:
            answer, deadline = self._exchange(method, body, dict(headers or {}), max_bytes, text_max_bytes,
                                              follow_redirects)
            if time.monotonic() > deadline:
                raise HttpError("timeout", f"no complete answer within {self.timeout:g} s")
            return then(answer)

        return self._bounded.call(exchange, self.timeout + DEADLINE_SLACK_S,
                                  late=f"no complete answer within {self.timeout:g} s")

    @property
    def busy(self) -> bool:
        """Whether a request given up on is still running."""
        return self._bounded.busy

    def close(self) -> None:
        """Drop the session (its pooled connections), unless a hung request still uses it."""
        session, self._session = self._session, None
        if session is not None and not self.busy:
            session.close()

    # -- in the worker ----------------------------------------------------------

    def _auth(self, kind: str | None) -> AuthBase | None:
        if not self._user or kind is None:
            return None
        if kind not in self._auths:  # kept: digest then reuses its nonce, saving a 401 per request
            if kind == "digest":
                digest = HTTPDigestAuth(self._user, self._password)
                # requests keeps digest state per thread, and every request here runs on a
                # fresh worker thread (one at a time): share the state so the nonce is reused.
                digest._thread_local = _SharedState()  # type: ignore[attr-defined]  # a private attribute of requests
                self._auths[kind] = digest
            else:
                self._auths[kind] = HTTPBasicAuth(self._user, self._password)
        return self._auths[kind]

    def _answer_to(self, challenge: str, url: str) -> str | None:
        """The auth kind to answer a 401 challenge with when none was configured.

        Digest whenever it is offered; Basic only over HTTPS (over plain HTTP it is
        the password in clear: HttpError, unless the config names ``auth: basic``);
        None for a scheme we do not speak (the 401 stands).
        """
        offered = {m.lower() for m in _SCHEME.findall(challenge)}
        if "digest" in offered:
            return "digest"
        if "basic" in offered:
            if urlsplit(url).scheme == "https":
                return "basic"
            raise HttpError("auth", "HTTP 401: the server asks for Basic auth over plain HTTP; the password "
                                    "was not sent (set auth: basic to send it anyway)")
        return None

    def _redirect_to(self, status: int, current: str, location: str) -> str:
        """The absolute URL a redirect leads to, or HttpError("redirect") if the policy forbids it.

        The refusal names only the target's scheme and host: its path or query may
        hold anything, and the message goes to logs and events.
        """
        target = urljoin(current, location)
        parts, home = urlsplit(target), urlsplit(self.url)
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        shown = f"{parts.scheme}://{parts.hostname or ''}{port}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError("redirect", f"HTTP {status} redirect to a non-HTTP URL ({parts.scheme or 'none'}:) "
                                        "not followed")
        if self.redirects == "none":
            raise HttpError("redirect", f"HTTP {status} redirect to {shown} not followed (redirects: none)")
        if self.redirects == "same-host":
            other = ("another scheme" if parts.scheme != home.scheme
                     else "another host" if parts.hostname != home.hostname else None)
            if other:
                raise HttpError("redirect", f"HTTP {status} redirect to {shown} not followed: {other} "
                                            "(redirects: same-host; set redirects: any to follow it)")
        return target

    def _exchange(self, method: str, body: bytes | None, headers: dict[str, str], max_bytes: int,
                  text_max_bytes: int | None, follow_redirects: bool) -> tuple[HttpResponse, float]:
        deadline = time.monotonic() + self.timeout
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # no proxies or .netrc from the environment
            self._session.headers.update({"User-Agent": "camwatch",
                                          "Accept-Encoding": "identity"})  # raw bytes are read
        session = self._session
        own_auth = not any(k.lower() == "authorization" for k in headers)
        kind = self.auth_kind if own_auth else None
        home = urlsplit(self.url).hostname
        url = self.url

        def send(kind: str | None) -> requests.Response:
            # Credentials (ours or the caller's header) go to the URL's own host only.
            here = urlsplit(url).hostname == home
            sent = headers if here else {k: v for k, v in headers.items() if k.lower() != "authorization"}
            return session.request(method, url, data=body, headers=sent, auth=self._auth(kind) if here else None,
                                   stream=True, verify=self.verify, timeout=(self.timeout, self.timeout),
                                   allow_redirects=False)

        try:
            for _ in range(MAX_REDIRECTS + 1):
                resp = send(kind)
                if resp.status_code == 401 and own_auth and self._user and kind is None:
                    try:
                        answer_kind = self._answer_to(resp.headers.get("WWW-Authenticate", ""), url)
                    except HttpError:
                        resp.close()
                        raise
                    if answer_kind is not None:  # else the 401 is the answer
                        resp.close()
                        kind = answer_kind
                        resp = send(kind)
                        if resp.status_code != 401:
                            self.auth_kind = kind  # remember what worked
                if follow_redirects and resp.is_redirect:
                    status, location = resp.status_code, resp.headers.get("Location", "")
                    resp.close()
                    url = self._redirect_to(status, url, location)
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    continue
                with resp:
                    return self._read(resp, deadline, max_bytes, text_max_bytes), deadline
            raise HttpError("redirect", f"more than {MAX_REDIRECTS} redirects; not followed further")
        except requests.exceptions.SSLError as exc:
            raise HttpError("tls", _tls_failure(exc)) from None
        except requests.exceptions.ConnectTimeout:
            raise HttpError("timeout", f"no connection within {self.timeout:g} s") from None
        except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
            raise HttpError("timeout", f"no answer within {self.timeout:g} s") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, urllib3.exceptions.LocationParseError):
            raise HttpError("connect", "the URL is not valid") from None
        except requests.exceptions.ConnectionError as exc:
            raise HttpError("connect", f"cannot connect ({_short(exc)})") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # The body is read from urllib3 directly, whose errors requests does not wrap.
            raise HttpError("connect", f"request failed ({_short(exc)})") from None

    def _read(self, resp: requests.Response, deadline: float, max_bytes: int,
              text_max_bytes: int | None) -> HttpResponse:
        """The body in chunks against the deadline, cut at its cap."""
        answer = HttpResponse(resp.status_code, resp.headers, b"", True)
        length = answer.announced_length
        if length is not None and length > max_bytes:
            return HttpResponse(resp.status_code, resp.headers, b"", False)
        cap = max_bytes
        if text_max_bytes is not None and is_text(answer.content_type):
            cap = min(cap, text_max_bytes)
        chunks: list[bytes] = []
        size = 0
        raw = resp.raw
        while True:
            if time.monotonic() > deadline:
                raise HttpError("timeout", f"body not complete within {self.timeout:g} s ({size} bytes so far)")
            chunk = raw.read1(_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                return HttpResponse(resp.status_code, resp.headers, b"".join(chunks)[:cap], False)
        return HttpResponse(resp.status_code, resp.headers, b"".join(chunks), True)


def _answer(response: HttpResponse) -> HttpResponse:
    return response


def _tls_failure(exc: BaseException) -> str:
    """What went wrong in TLS, in OpenSSL's words but without the URL requests puts around them."""
    found = re.search(r"certificate verify failed: ([^()'\"]{1,80})", str(exc))
    if found:
        return f"TLS certificate verify failed: {found.group(1).strip()}"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "TLS certificate verify failed"
    return "TLS handshake failed"


def _short(exc: BaseException) -> str:
    """A one-line, URL- and password-free cause from a requests/urllib3 error chain."""
    text = str(exc)
    for key in ("Connection refused", "Name or service not known", "No route to host",
                "Connection reset", "timed out", "Temporary failure in name resolution",
                "Network is unreachable", "RemoteDisconnected", "Connection aborted"):
        if key in text:
            return key.lower()
    return type(exc).__name__
