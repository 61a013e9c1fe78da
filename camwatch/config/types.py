"""The value types of the config file: one parser each, used as ``Annotated`` pydantic types.

Why our own parsers rather than pydantic's: a user who writes ``interval: abc``
should read what to write instead, in their terms (``30s``, ``06:00-22:00``),
not "Input should be a valid number". Each parser raises ValueError with that
message; ``load.py`` puts the file, line and key in front of it.

Each parser also accepts the value it produces (a tuple of polygons, a Path),
so a model built in code (tests, tools) goes through the same checks.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import PlainValidator

from camwatch.core.cluster import member_from_hostname
from camwatch.core.secrets import SECRET_KEY

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
MODES = ("snapshot", "stream")
AUTHS = ("basic", "digest")
WEBHOOK_FORMATS = ("json", "slack")
URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "file", "demo")
CAMERA_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_ID_LEN = 64

Point = tuple[float, float]
Polygon = tuple[Point, ...]
#: (start, end) in minutes after midnight; end < start wraps midnight.
HourRange = tuple[int, int]


def clip(text: str, n: int = 80) -> str:
    """Text shortened to ``n`` characters for a one-line message."""
    return text if len(text) <= n else text[: n - 3] + "..."


# -- numbers and durations ------------------------------------------------------------

_UNIT = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
         "w": 604800.0}
_UNITS = "ms|min|sec|s|m|h|d|w"  # longer names first: "5min" is not "5m" then "in"
_DURATION_PART = re.compile(rf"(\d+(?:\.\d+)?|\.\d+)\s*({_UNITS})")
_DURATION = re.compile(rf"(?:(?:\d+(?:\.\d+)?|\.\d+)\s*(?:{_UNITS})\s*)+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_DURATION_HELP = "expected seconds (a number or a duration such as 30s, 5m)"


def number(v: Any) -> float | None:
    """A real number from YAML or from a substituted string; None when it is not one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        return float(v.strip())
    return None


def parse_duration(v: Any) -> float:
    """Seconds from 30, 2.5, "30s", "5m", "1h30m", "500ms", "3d", "2w"; must be more than 0.

    The one duration parser: config intervals and ``camwatch events --since 2h`` alike.
    """
    seconds = number(v)
    if seconds is None and isinstance(v, str):
        s = v.strip().lower()
        if _DURATION.fullmatch(s):
            seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(s))
        elif s.startswith("-") and _DURATION.fullmatch(s[1:].strip()):
            raise ValueError("must be more than 0 seconds")
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(_DURATION_HELP)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def optional(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """The parser, letting an empty value (``key:`` or ``null``) through as None."""
    return lambda v: None if v is None else parse(v)


def int_in(low: int, high: int | None, what: str) -> Callable[[Any], int]:
    """A whole-number parser for low..high (no upper bound with None); ``what`` names it in the message."""
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError(f"expected {what}")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, str) and _INT.fullmatch(v.strip()):
            v = int(v.strip())
        if not isinstance(v, int):
            raise ValueError(f"expected {what}")
        if v < low or (high is not None and v > high):
            raise ValueError(f"expected {what}")
        return v
    return parse


#: The most members a fleet may have (rendezvous hashing costs members weights per camera).
MAX_MEMBERS = 1000


def parse_member(v: Any) -> int | None:
    """A member number, or a StatefulSet pod's name (``camwatch-2``: 2); ``auto`` or empty: None (the host name's).

    A pod name is accepted so ``member: ${POD_NAME}`` works where the host name is not the pod's.
    """
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "auto")):
        return None
    what = ("a member number 0, 1, ..., auto (the -N ending of the host name, as a StatefulSet gives "
            "its pods: camwatch-2 is member 2) or a pod name ending in -N")
    if isinstance(v, str) and not _INT.fullmatch(v.strip()):
        ordinal = member_from_hostname(v)
        if ordinal is None:
            raise ValueError(f"expected {what}")
        return ordinal
    return int_in(0, MAX_MEMBERS - 1, what)(v)


def parse_threshold(v: Any) -> float:
    x = number(v)
    if x is None or not math.isfinite(x):
        raise ValueError("expected a cosine similarity: a number in (-1, 1]")
    if not -1.0 < x <= 1.0:
        raise ValueError("out of range: a cosine similarity threshold is in (-1, 1]")
    return x


def parse_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):  # from ${ENV}
        return v.strip().lower() == "true"
    raise ValueError("expected true or false")


def parse_text(v: Any) -> str:
    if isinstance(v, bool) or v is None or not isinstance(v, (str, int, float)):
        raise ValueError("expected a string")
    return str(v)


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    """A parser for one of ``options`` (any case), with a did-you-mean."""
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v.strip().lower() not in options:
            close = difflib.get_close_matches(str(v).lower(), options, n=1) if isinstance(v, str) else []
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"expected one of {', '.join(options)}{hint}")
        return v.strip().lower()
    return parse


def parse_path(v: Any) -> Path:
    if isinstance(v, Path):
        return v
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a file or folder path")
    return Path(v.strip())


# -- names and addresses ------------------------------------------------------------------


def parse_camera_id(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError("expected a camera id such as front-door")
    s = str(v)
    if len(s) > MAX_ID_LEN:
        raise ValueError(f"too long: at most {MAX_ID_LEN} characters (it is a metrics label)")
    if not CAMERA_ID.fullmatch(s):
        fixed = re.sub(r"[^a-z0-9_-]+", "-", s.strip().lower()).strip("-_")
        hint = f"; did you mean '{fixed}'?" if fixed and CAMERA_ID.fullmatch(fixed) else ""
        raise ValueError("expected lower-case letters, digits, '-' and '_', starting with a letter "
                         f"or digit (it is the metrics label){hint}")
    return s


def url_scheme(url: str) -> str:
    """The URL's scheme in lower case; "" for a plain path (a one-letter "scheme" is a drive: C:)."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    return m.group(1).lower() if m and len(m.group(1)) > 1 else ""


def _check_host(url: str) -> None:
    parts = urlsplit(url)
    if "://" not in url or not parts.hostname:
        raise ValueError(f"no host: expected {parts.scheme}://host[:port]/path")
    try:
        _ = parts.port  # reading it is the check
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None


def parse_camera_url(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a URL: rtsp://, rtsps://, http(s)://, file://, demo:NAME or a file path")
    url = v.strip()
    scheme = url_scheme(url)
    if scheme and scheme not in URL_SCHEMES:
        raise ValueError(f"unsupported scheme '{clip(scheme, 20)}': expected rtsp, rtsps, http, https, "
                         "file or demo (or a plain file path)")
    if scheme in ("rtsp", "rtsps", "http", "https"):
        _check_host(url)
    elif scheme == "demo" and not url[5:].split("?", 1)[0].strip():
        raise ValueError("a demo URL names a scene: demo:street, demo:shop or demo:lobby")
    elif scheme == "file" and not urlsplit(url).path:
        raise ValueError("a file URL needs a path: file:///path/to/clip.mp4")
    if any(c in url for c in "\r\n\t"):
        raise ValueError("contains a line break or tab")
    return url


def parse_webhook_url(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected an http:// or https:// URL")
    url = v.strip()
    if url_scheme(url) not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    _check_host(url)
    return url


def parse_mqtt_url(v: Any) -> str:
    """mqtt://host[:port] or mqtts://host[:port]: no path, no query, no credentials (they have keys of their own)."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
    url = v.strip()
    if url_scheme(url) not in ("mqtt", "mqtts"):
        raise ValueError("expected mqtt://host[:port] or mqtts://host[:port] (mqtts: TLS)")
    _check_host(url)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("no user:password in the URL: give them as username: and password: under mqtt")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("expected mqtt://host[:port] only (no path, query or fragment)")
    return url


def optional_mqtt_url(v: Any) -> str | None:
    return None if v is None else parse_mqtt_url(v)


def parse_topic_prefix(v: Any) -> str:
    """A topic's first level(s): no wildcard (+ #), no empty level, no leading or trailing '/'."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a topic prefix such as camwatch")
    s = v.strip()
    if any(c in s for c in "+#\0") or s.startswith("/") or s.endswith("/") or "//" in s or len(s) > 100:
        raise ValueError("expected a topic prefix such as camwatch or site/camwatch: no '+', '#', "
                         "empty level or leading/trailing '/'")
    return s


def parse_store_url(v: Any) -> str:
    """``settings.store``: a PostgreSQL URL (``postgresql://user@host:port/database``); the SQLite files
    under state_dir when the key is left out."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected postgresql://user@host:port/database (leave store out for the "
                         "SQLite files under state_dir)")
    url = v.strip()
    if url_scheme(url) not in ("postgresql", "postgres") or "://" not in url:
        raise ValueError(f"unsupported store '{clip(url_scheme(url) or url, 20)}': expected "
                         "postgresql://user@host:port/database (leave store out for the SQLite files under state_dir)")
    if any(c in url for c in "\r\n\t"):
        raise ValueError("contains a line break or tab")
    try:
        _ = urlsplit(url).port  # reading it is the check
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None
    return url


def parse_address(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected an IP address or host name such as 127.0.0.1, 0.0.0.0 or ::")
    s = v.strip()
    bare = s[1:-1] if s.startswith("[") and s.endswith("]") else s
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if len(s) <= 253 and re.fullmatch(rf"{label}(\.{label})*", s):
        return s
    raise ValueError("expected an IP address or host name such as 127.0.0.1, 0.0.0.0 or ::")


def parse_headers(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("expected a mapping of header names to values")
    out: dict[str, str] = {}
    for k, val in v.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", str(k)):
            raise ValueError(f"header name '{clip(str(k), 40)}' is not a valid HTTP header name")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ValueError(f"header {k}: expected a string value")
        if any(c in str(val) for c in "\r\n"):
            raise ValueError(f"header {k}: the value contains a line break")
        out[str(k)] = str(val)
    return out


def parse_query_names(v: Any) -> tuple[str, ...]:
    """Query keys whose values are not secrets (``[channel, subtype]``); one name alone is a list of one.

    A name that looks like a credential (pass, pwd, psw, token, key, auth, sig...) is
    refused: marking it public would print a password in every log line.
    """
    if v is None:
        return ()
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)):
        raise ValueError("expected a list of query parameter names, e.g. [channel, subtype]")
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
            raise ValueError("expected a list of query parameter names, e.g. [channel, subtype]")
        name = str(item).strip()
        if any(c in name for c in "&=?#/ \t\r\n"):
            raise ValueError(f"'{clip(name, 40)}': a query parameter name, without '&', '=', '?', '#' or spaces")
        if SECRET_KEY.search(name):
            raise ValueError(f"'{clip(name, 40)}' is named like a credential: its value stays masked "
                             "(remove it from public_query)")
        if name not in out:
            out.append(name)
    return tuple(out)


# -- time of day and view geometry --------------------------------------------------------


def _hhmm(text: str, end: bool) -> int:
    h, m = (int(x) for x in text.split(":"))
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        raise ValueError(f"'{text}' is not a time of day (00:00-23:59, or 24:00 as an end)")
    return h * 60 + m


def _is_range(item: Any) -> bool:
    return (isinstance(item, tuple) and len(item) == 2 and all(type(x) is int for x in item)
            and 0 <= item[0] < 1440 and 0 <= item[1] < 1440 and item[0] != item[1])


def parse_active_hours(v: Any) -> tuple[HourRange, ...] | None:
    """'HH:MM-HH:MM' or a list of them; a range may wrap midnight (22:00-06:00)."""
    if v is None:
        return None
    items = v if isinstance(v, (list, tuple)) and not _is_range(v) else [v]
    if not items:
        raise ValueError("an empty list would never check; leave active_hours out to check all day")
    out = []
    for item in items:
        if _is_range(item):  # already parsed
            out.append(item)
            continue
        m = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", item) if isinstance(item, str) else None
        if not m:
            hint = " (quote it: YAML reads 22:00 as a number)" if isinstance(item, int) else ""
            raise ValueError(f"expected \"HH:MM-HH:MM\" such as \"06:00-22:00\" (or a list of them){hint}")
        start, end = _hhmm(m.group(1), False), _hhmm(m.group(2), True)
        if start == end or (start == 0 and end == 1440):
            raise ValueError(f"'{item.strip()}' covers no time or all of it; leave active_hours out "
                             "to check all day")
        out.append((start, end % 1440))
    return tuple(out)


def _is_point(p: Any) -> bool:
    return (isinstance(p, (list, tuple)) and len(p) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in p))


def parse_polygons(v: Any) -> tuple[Polygon, ...]:
    """A list of polygons (or one polygon), each at least 3 [x, y] points in 0..1 view coordinates."""
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)):
        raise ValueError("expected a list of polygons, each a list of [x, y] points in 0..1")
    if v and _is_point(v[0]):
        v = [v]  # one polygon given without the outer list
    out = []
    for i, poly in enumerate(v, 1):
        if not isinstance(poly, (list, tuple)):
            raise ValueError(f"polygon {i}: expected a list of [x, y] points")
        points = []
        for j, pt in enumerate(poly, 1):
            if not _is_point(pt):
                raise ValueError(f"polygon {i} point {j}: expected [x, y], two numbers in 0..1")
            x, y = float(pt[0]), float(pt[1])
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"polygon {i} point {j}: [{pt[0]}, {pt[1]}] is outside 0..1 "
                                 "(coordinates are fractions of the view's width and height)")
            points.append((x, y))
        if len(points) < 3:
            raise ValueError(f"polygon {i}: has {len(points)} point(s), needs at least 3")
        area = sum(points[k - 1][0] * points[k][1] - points[k][0] * points[k - 1][1]
                   for k in range(len(points))) / 2
        if abs(area) < 1e-9:
            raise ValueError(f"polygon {i}: has no area (its points are on one line)")
        out.append(tuple(points))
    return tuple(out)


# -- the Annotated types the schema is written in ----------------------------------------
# PlainValidator: our parser is the whole check, so its message is the one the user reads.

Duration = Annotated[float, PlainValidator(parse_duration)]
OptionalDuration = Annotated[float | None, PlainValidator(optional(parse_duration))]
Threshold = Annotated[float | None, PlainValidator(optional(parse_threshold))]
Flag = Annotated[bool, PlainValidator(parse_bool)]
AtLeastOne = Annotated[int, PlainValidator(int_in(1, None, "a whole number, 1 or more"))]
NonNegative = Annotated[int, PlainValidator(int_in(0, None, "a whole number, 0 or more"))]
Port = Annotated[int, PlainValidator(int_in(0, 65535, "a port number in 1..65535 (0 = any free port)"))]
Workers = Annotated[int, PlainValidator(int_in(1, 256, "a whole number of workers in 1..256"))]
Address = Annotated[str, PlainValidator(parse_address)]
OptionalText = Annotated[str | None, PlainValidator(optional(parse_text))]
OptionalPath = Annotated[Path | None, PlainValidator(optional(parse_path))]
CameraId = Annotated[str, PlainValidator(parse_camera_id)]
CameraUrl = Annotated[str, PlainValidator(parse_camera_url)]
WebhookUrl = Annotated[str, PlainValidator(parse_webhook_url)]
StoreUrl = Annotated[str | None, PlainValidator(optional(parse_store_url))]
Headers = Annotated[dict[str, str], PlainValidator(parse_headers)]
ActiveHours = Annotated[tuple[HourRange, ...] | None, PlainValidator(parse_active_hours)]
Polygons = Annotated[tuple[Polygon, ...], PlainValidator(parse_polygons)]
QueryNames = Annotated[tuple[str, ...], PlainValidator(parse_query_names)]
Device = Annotated[str, PlainValidator(choice(DEVICES))]
Mode = Annotated[str, PlainValidator(choice(MODES))]
Auth = Annotated[str | None, PlainValidator(optional(choice(AUTHS)))]
WebhookFormat = Annotated[str, PlainValidator(choice(WEBHOOK_FORMATS))]
Member = Annotated[int | None, PlainValidator(parse_member)]
Members = Annotated[int, PlainValidator(int_in(1, MAX_MEMBERS, f"a whole number of members in 1..{MAX_MEMBERS}"))]
MqttUrl = Annotated[str, PlainValidator(parse_mqtt_url)]
TopicPrefix = Annotated[str, PlainValidator(parse_topic_prefix)]
