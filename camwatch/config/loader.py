"""Configuration: YAML loading, secret substitution, validation, effective values.

Why it is built this way:

* Users judge a daemon first by how it treats a wrong config, so every problem
  is reported at once, each on one line as ``file:line: key.path: value: what
  is wrong`` and never as a traceback. To name lines we compose the YAML into
  nodes ourselves and remember the line of every key and list item.
* Values are checked by pydantic models with ``extra="forbid"`` (unknown keys
  get a did-you-mean) but every value type is parsed by our own small parser so
  the message says what was expected in the user's terms (``30s``, ``06:00-22:00``).
* Secrets come from ``${ENV}`` or ``${cred:NAME}`` (systemd ``LoadCredential=``)
  and are collected in ``Config.secrets`` and registered for log scrubbing; no
  message this module makes ever contains one.
* Consumers get frozen dataclasses with *effective* values (settings' defaults
  already applied per camera), so no other module re-implements defaulting.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from camwatch.core.errors import ConfigError, ModelError
from camwatch.core.secrets import SECRET_KEY as _SECRET_KEY
from camwatch.core.secrets import redact_url, register_secret, scrub
from camwatch.core.secrets import url_secrets as _url_secrets

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/camwatch"
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
MODES = ("snapshot", "stream")
AUTHS = ("basic", "digest")
WEBHOOK_FORMATS = ("json", "slack")
URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "file", "demo")
CAMERA_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_ID_LEN = 64

Point = tuple[float, float]
Polygon = tuple[Point, ...]
LinePath = tuple[Any, ...]  # ("cameras", 2, "interval")


# -- the objects every module consumes (docs/DESIGN.md "Config objects") ----------


@dataclass(frozen=True)
class MetricsSettings:
    address: str = "127.0.0.1"
    port: int = 9808
    enabled: bool = True


@dataclass(frozen=True)
class CalibrationSettings:
    checks: int = 8


@dataclass(frozen=True)
class EvidenceSettings:
    keep: int = 500
    enabled: bool = True


@dataclass(frozen=True)
class EventsSettings:
    #: Days a delivered event is kept (``camwatch events`` history); 0 = forever.
    keep_days: int = 90


@dataclass(frozen=True)
class WebhookSettings:
    """One webhook sink. ``url`` and ``headers`` may hold tokens: never logged (repr hides them)."""

    url: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False, hash=False)
    timeout: float = 10.0
    verify_tls: bool = True
    format: str = "json"

    @property
    def redacted_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.hostname or "", "/***" if parts.path not in ("", "/") else parts.path,
                           "", ""))


@dataclass(frozen=True)
class Settings:
    model: Path | None = None
    device: str = "auto"
    require_gpu: bool = False
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    interval: float = 60.0
    timeout: float = 10.0
    threshold: float | None = None
    confirm: int = 3
    recover: int = 2
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    workers: int = 8
    webhooks: tuple[WebhookSettings, ...] = ()
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    events: EventsSettings = field(default_factory=EventsSettings)


@dataclass(frozen=True)
class CameraConfig:
    """One camera with effective values. ``url`` may hold a password: log ``redacted_url`` only."""

    id: str
    url: str = field(repr=False)
    name: str = ""
    mode: str = "snapshot"
    interval: float = 60.0
    timeout: float = 10.0
    threshold: float | None = None
    confirm: int = 3
    recover: int = 2
    roi: tuple[Polygon, ...] = ()
    mask: tuple[Polygon, ...] = ()
    active_hours: tuple[tuple[int, int], ...] | None = None
    enabled: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth: str | None = None
    auto_enroll: bool = False
    redacted_url: str = ""

    def active_at(self, t: datetime) -> bool:
        """Whether checks run at local time ``t``; a range may wrap midnight (22:00-06:00)."""
        if not self.active_hours:
            return True
        minute = t.hour * 60 + t.minute
        for start, end in self.active_hours:
            if start < end:
                if start <= minute < end:
                    return True
            elif minute >= start or minute < end:
                return True
        return False


@dataclass(frozen=True)
class Config:
    path: Path
    settings: Settings
    cameras: tuple[CameraConfig, ...]
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)
    # line of every key / list item, for later checks (validate) that want to name a line
    lines: dict[LinePath, int] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera with this id, or a ConfigError naming it (with a did-you-mean)."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        ids = [c.id for c in self.cameras]
        close = difflib.get_close_matches(camera_id, ids, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(ids) if len(ids) <= 12 else ", ".join(ids[:12]) + ", ..."
        raise ConfigError(f"{self.path}: unknown camera '{_clip(camera_id)}'{hint} (cameras: {known or 'none'})")

    @property
    def enabled_cameras(self) -> tuple[CameraConfig, ...]:
        return tuple(c for c in self.cameras if c.enabled)


# -- YAML with line numbers -----------------------------------------------------------

_SUBST = re.compile(r"\$(\$)?\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CRED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
_MAX_NODES = 200_000


class _Problems:
    """Problems as (line, text), reported sorted by line."""

    def __init__(self, file: str, lines: dict[LinePath, int]):
        self.file = file
        self.lines = lines
        self.items: list[tuple[int, str]] = []
        self.failed: set[LinePath] = set()  # values whose substitution failed: already reported

    def line_of(self, path: LinePath) -> int:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def add(self, path: LinePath, message: str, line: int | None = None) -> None:
        line = self.line_of(path) if line is None else line
        where = f" {_path_str(path)}:" if path else ""
        self.items.append((line, f"{self.file}:{line}:{where} {message}"))

    def texts(self) -> list[str]:
        return [t for _, t in sorted(self.items, key=lambda it: it[0])]


def _path_str(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


@dataclass
class _Substitution:
    path: LinePath
    value: str
    secret: bool  # from a credential, or a URL password


class _Builder:
    """Turns composed YAML nodes into plain data, noting lines, duplicate keys and substitutions."""

    def __init__(self, problems: _Problems):
        self.loader = yaml.SafeLoader("")
        self.problems = problems
        self.lines = problems.lines
        self.subs: list[_Substitution] = []
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node, path: LinePath) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise ConfigError(f"{self.problems.file}: too large (more than {_MAX_NODES} values; "
                              "aliases expanding without end?)")
        if id(node) in self.active:
            self.problems.add(path, "recursive YAML alias", node.start_mark.line + 1)
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                out = []
                for i, item in enumerate(node.value):
                    self.lines.setdefault(path + (i,), item.start_mark.line + 1)
                    out.append(self.build(item, path + (i,)))
                return out
            return self._scalar(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: LinePath) -> dict[str, Any]:
        explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        except yaml.MarkedYAMLError as exc:
            self.problems.add(path, scrub(str(exc.problem)), node.start_mark.line + 1)
            return {}
        out: dict[str, Any] = {}
        from_merge: set[str] = set()
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                self.problems.add(path, "a key must be a plain name, not a list or mapping", line)
                continue
            key = str(knode.value)  # raw text: "on"/"yes" stay names, not booleans
            if key in out and id(knode) not in explicit:
                continue  # a merged key the mapping already has
            if key in out and key in from_merge:
                from_merge.discard(key)  # the mapping's own key overrides the merged one
            elif key in out:
                first = self.lines.get(path + (key,), "?")
                self.problems.add(path + (key,), f"duplicate key (first at line {first})", line)
                continue
            if id(knode) not in explicit:
                from_merge.add(key)
            self.lines[path + (key,)] = line
            out[key] = self.build(vnode, path + (key,))
        return out

    def _scalar(self, node: yaml.Node, path: LinePath) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.problems.add(path, f"cannot read value: {scrub(str(exc.problem))}", node.start_mark.line + 1)
            return None
        if isinstance(value, str) and "$" in value:
            return self._substitute(value, path)
        return value

    def _substitute(self, text: str, path: LinePath) -> str | None:
        failed = False

        def one(m: re.Match[str]) -> str:
            nonlocal failed
            if m.group(1):  # $${X} is a literal ${X}
                return "${" + m.group(2) + "}"
            ref = m.group(2).strip()
            if ref.startswith("cred:"):
                value = self._credential(ref[5:].strip(), path)
                if value is None:
                    failed = True
                    return ""
                self.subs.append(_Substitution(path, value, True))
                return quote(value, safe="") if _in_userinfo(path, text, m) else value
            name, sep, default = ref.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                self.problems.add(path, f"${{{_clip(ref, 40)}}}: expected ${{ENV_VAR}}, ${{ENV_VAR:-default}} "
                                        "or ${cred:NAME} (write $${ for a literal ${)")
                failed = True
                return ""
            value = os.environ.get(name)
            if value is None or (value == "" and sep):
                if sep:
                    return default
                self.problems.add(path, f"environment variable {name} is not set (used as ${{{name}}})")
                failed = True
                return ""
            if _in_userinfo(path, text, m):
                # a password such as p@ss:w/rd would break the URL: percent-encode it, and
                # count it a secret whatever the URL looks like afterwards
                self.subs.append(_Substitution(path, value, True))
                return quote(value, safe="")
            self.subs.append(_Substitution(path, value, False))
            return value

        out = _SUBST.sub(one, text)
        if failed:
            self.problems.failed.add(path)
            return None
        return out

    def _credential(self, name: str, path: LinePath) -> str | None:
        if not _CRED_NAME.fullmatch(name):
            self.problems.add(path, f"${{cred:{_clip(name, 40)}}}: a credential name is letters, digits, "
                                    "'_', '.', '-', '@'")
            return None
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            self.problems.add(path, f"${{cred:{name}}}: CREDENTIALS_DIRECTORY is not set (systemd sets it "
                                    f"for LoadCredential={name}:/path/to/secret; outside systemd set it yourself)")
            return None
        file = Path(directory) / name
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            self.problems.add(path, f"${{cred:{name}}}: credential file {file} does not exist "
                                    f"(add LoadCredential={name}:... to the unit)")
            return None
        except OSError as exc:
            self.problems.add(path, f"${{cred:{name}}}: cannot read credential file {file}: "
                                    f"{exc.strerror or type(exc).__name__}")
            return None
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.add(path, f"${{cred:{name}}}: credential file {file} is not UTF-8 text")
            return None
        if value.endswith("\n"):  # `echo secret > file` adds one
            value = value[:-1].rstrip("\r")
        if not value:
            self.problems.add(path, f"${{cred:{name}}}: credential file {file} is empty")
            return None
        return value


def _in_userinfo(path: LinePath, text: str, m: re.Match[str]) -> bool:
    """Whether a ${...} in a url value stands in the user:password@ part."""
    if not path or path[-1] != "url":
        return False
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*", text[: m.start()])
                and re.match(r"[^/?#]*@", text[m.end():]))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None


# libyaml's parser when PyYAML was built with it: 10x faster on big files, same nodes and marks
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = str(exc.problem or exc.context or "invalid YAML")
        if exc.context and exc.problem:
            what = f"{exc.context}: {exc.problem}"
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        start = exc.context_mark
        if mark and start and start.line != mark.line:
            what += f" (in what starts at line {start.line + 1}:{start.column + 1})"
        raise ConfigError(f"{where}: invalid YAML: {scrub(what)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {scrub(str(exc))}") from None


# -- value parsers (each raises ValueError with the user-facing message) -------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)\s*(?:ms|s|m|h|d)\s*)+")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_DURATION_HELP = "expected seconds (a number or a duration such as 30s, 5m)"


def _number(v: Any) -> float | None:
    """A real number from YAML or from a substituted string; None when it is not one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        return float(v.strip())
    return None


def parse_duration(v: Any) -> float:
    """Seconds from 30, 2.5, "30s", "5m", "1h30m", "500ms"; must be more than 0."""
    seconds = _number(v)
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


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else parse(v)


def _int_in(low: int, high: int | None, what: str) -> Callable[[Any], int]:
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


def parse_threshold(v: Any) -> float:
    x = _number(v)
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


def _text(v: Any) -> str:
    if isinstance(v, bool) or v is None or not isinstance(v, (str, int, float)):
        raise ValueError("expected a string")
    return str(v)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v.strip().lower() not in options:
            close = difflib.get_close_matches(str(v).lower(), options, n=1) if isinstance(v, str) else []
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"expected one of {', '.join(options)}{hint}")
        return v.strip().lower()
    return parse


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


def _scheme(url: str) -> str:
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    return m.group(1).lower() if m and len(m.group(1)) > 1 else ""


def parse_camera_url(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a URL: rtsp://, rtsps://, http(s)://, file://, demo:NAME or a file path")
    url = v.strip()
    scheme = _scheme(url)
    if scheme and scheme not in URL_SCHEMES:
        raise ValueError(f"unsupported scheme '{_clip(scheme, 20)}': expected rtsp, rtsps, http, https, "
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


def _check_host(url: str) -> None:
    parts = urlsplit(url)
    if "://" not in url or not parts.hostname:
        raise ValueError(f"no host: expected {parts.scheme}://host[:port]/path")
    try:
        parts.port
    except ValueError:
        raise ValueError("the port is not a number in 1..65535") from None


def parse_webhook_url(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected an http:// or https:// URL")
    url = v.strip()
    if _scheme(url) not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    _check_host(url)
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
            raise ValueError(f"header name '{_clip(str(k), 40)}' is not a valid HTTP header name")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ValueError(f"header {k}: expected a string value")
        if any(c in str(val) for c in "\r\n"):
            raise ValueError(f"header {k}: the value contains a line break")
        out[str(k)] = str(val)
    return out


def _hhmm(text: str, end: bool) -> int:
    h, m = (int(x) for x in text.split(":"))
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        raise ValueError(f"'{text}' is not a time of day (00:00-23:59, or 24:00 as an end)")
    return h * 60 + m


def parse_active_hours(v: Any) -> tuple[tuple[int, int], ...] | None:
    """'HH:MM-HH:MM' or a list of them; a range may wrap midnight (22:00-06:00)."""
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    if not items:
        raise ValueError("an empty list would never check; leave active_hours out to check all day")
    out = []
    for item in items:
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


def parse_polygons(v: Any) -> tuple[Polygon, ...]:
    """A list of polygons (or one polygon), each at least 3 [x, y] points in 0..1 view coordinates."""
    if v is None:
        return ()
    if not isinstance(v, list):
        raise ValueError("expected a list of polygons, each a list of [x, y] points in 0..1")
    if v and _is_point(v[0]):
        v = [v]  # one polygon given without the outer list
    out = []
    for i, poly in enumerate(v, 1):
        if not isinstance(poly, list):
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


def _is_point(p: Any) -> bool:
    return (isinstance(p, list) and len(p) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in p))


def parse_path(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a file or folder path")
    return v.strip()


def _none_to_list(v: Any) -> Any:
    return [] if v is None else v


def _T(parse: Callable[[Any], Any]) -> Any:
    return Annotated[Any, BeforeValidator(parse)]


Duration = _T(parse_duration)
OptDuration = _T(_optional(parse_duration))
Threshold = _T(_optional(parse_threshold))
Bool = _T(parse_bool)
OptBool = _T(_optional(parse_bool))
AtLeastOne = _T(_int_in(1, None, "a whole number, 1 or more"))
OptAtLeastOne = _T(_optional(_int_in(1, None, "a whole number, 1 or more")))
NonNegative = _T(_int_in(0, None, "a whole number, 0 or more"))


# -- pydantic models of the file (raw shape) -----------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data  # "metrics:" with nothing under it


class _Metrics(_Model):
    address: _T(parse_address) = "127.0.0.1"
    port: _T(_int_in(0, 65535, "a port number in 1..65535 (0 = any free port)")) = 9808
    enabled: Bool = True


class _Calibration(_Model):
    checks: NonNegative = 8


class _Evidence(_Model):
    keep: NonNegative = 500
    enabled: Bool = True


class _Events(_Model):
    keep_days: NonNegative = 90


class _Webhook(_Model):
    url: _T(parse_webhook_url)
    headers: _T(parse_headers) = {}
    timeout: Duration = 10.0
    verify_tls: Bool = True
    format: _T(_choice(WEBHOOK_FORMATS)) = "json"


class _Settings(_Model):
    model: _T(_optional(parse_path)) = None
    device: _T(_choice(DEVICES)) = "auto"
    require_gpu: Bool = False
    state_dir: _T(_optional(parse_path)) = None
    metrics: _Metrics = _Metrics()
    interval: Duration = 60.0
    timeout: Duration = 10.0
    threshold: Threshold = None
    confirm: AtLeastOne = 3
    recover: AtLeastOne = 2
    calibration: _Calibration = _Calibration()
    workers: _T(_int_in(1, 256, "a whole number of workers in 1..256")) = 8
    webhooks: Annotated[list[_Webhook], BeforeValidator(_none_to_list)] = []
    evidence: _Evidence = _Evidence()
    events: _Events = _Events()


class _Camera(_Model):
    id: _T(parse_camera_id)
    name: _T(_optional(_text)) = None
    url: _T(parse_camera_url)
    mode: _T(_choice(MODES)) = "snapshot"
    interval: OptDuration = None
    timeout: OptDuration = None
    threshold: Threshold = None
    confirm: OptAtLeastOne = None
    recover: OptAtLeastOne = None
    roi: _T(parse_polygons) = ()
    mask: _T(parse_polygons) = ()
    active_hours: _T(parse_active_hours) = None
    enabled: Bool = True
    username: _T(_optional(_text)) = None
    password: _T(_optional(_text)) = None
    auth: _T(_optional(_choice(AUTHS))) = None
    auto_enroll: Bool = False


_TOP_KEYS = ("settings", "cameras")

# key sets by shape path (list indexes as int), for did-you-mean on unknown keys
_SHAPES: dict[LinePath, type[BaseModel]] = {
    ("settings",): _Settings, ("settings", "metrics"): _Metrics,
    ("settings", "calibration"): _Calibration, ("settings", "evidence"): _Evidence,
    ("settings", "events"): _Events,
    ("settings", "webhooks", int): _Webhook, ("cameras", int): _Camera,
}

_PUBLIC_HEADERS = {"content-type", "accept", "user-agent", "accept-language"}
_TYPE_MESSAGES = {
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list (lines starting with '- ')",
    "missing": "required key is missing",
}


def _is_secret_path(path: LinePath) -> bool:
    keys = [p for p in path if isinstance(p, str)]
    return bool(keys) and (keys[-1] in ("password", "headers") or "headers" in keys)


def _show(value: Any, path: LinePath, secrets: set[str]) -> str:
    """The value as an error message may show it: scalars only, secrets masked."""
    if isinstance(value, (dict, list)) or value is None:
        return ""
    if _is_secret_path(path):
        return "***: "
    text = scrub(str(value))
    for s in sorted(secrets, key=len, reverse=True):
        if s and s in text:
            text = text.replace(s, "***")
    return f"{_clip(text)!r}: " if isinstance(value, str) else f"{_clip(text)}: "


def _validate(model: type[BaseModel], data: Any, prefix: LinePath, problems: _Problems,
              secrets: set[str]) -> BaseModel | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = prefix + tuple(err["loc"])
            kind = err["type"]
            if any(loc[:n] in problems.failed for n in range(1, len(loc) + 1)):
                continue  # its ${...} could not be substituted: said once already
            if kind == "extra_forbidden":
                problems.add(loc, _unknown_key(str(loc[-1]), _fields_for(loc[:-1])))
                continue
            msg = err["msg"]
            if kind == "value_error":
                msg = msg.removeprefix("Value error, ")
            else:
                msg = _TYPE_MESSAGES.get(kind, msg[:1].lower() + msg[1:])
            shown = "" if kind == "missing" else _show(err.get("input"), loc, secrets)
            problems.add(loc, f"{shown}{msg}")
        return None


def _fields_for(path: LinePath) -> tuple[str, ...]:
    shape = tuple(int if isinstance(p, int) else p for p in path)
    if not shape:
        return _TOP_KEYS
    model = _SHAPES.get(shape)
    return tuple(model.model_fields) if model else ()


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{_clip(key, 40)}'; did you mean '{close[0]}'?"
    return f"unknown key '{_clip(key, 40)}' (expected one of: {', '.join(known)})"


# -- secrets ----------------------------------------------------------------------------


redact = redact_url


# -- load ---------------------------------------------------------------------------------


def _state_dir_default() -> str:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several)
    env = os.environ.get("STATE_DIRECTORY", "")
    return env.split(":")[0] if env else DEFAULT_STATE_DIR


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, substitute and validate a cameras YAML file; ConfigError lists every problem."""
    path = Path(path)
    file = str(path)
    text = _read_text(path)
    lines: dict[LinePath, int] = {(): 1}
    problems = _Problems(file, lines)
    node = _compose(text, file)
    if node is None:
        raise ConfigError(f"{file}: is empty; expected 'settings:' and 'cameras:' "
                          "(see configs/cameras.example.yaml)")
    builder = _Builder(problems)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise ConfigError(f"{file}:{node.start_mark.line + 1}: expected a mapping with 'settings:' and "
                          f"'cameras:', found {kind}")

    secrets = _collect_secrets(data, builder.subs)
    for key in data:
        if key not in _TOP_KEYS and not key.startswith("x-"):  # x-...: room for YAML anchors
            problems.add((key,), _unknown_key(key, _TOP_KEYS))

    settings_raw = _Settings.model_validate({}) if "settings" not in data else \
        _validate(_Settings, data["settings"], ("settings",), problems, secrets)
    cams_raw = _cameras(data, problems, secrets)

    base = path.resolve().parent
    settings = _settings(settings_raw, base, problems) if settings_raw is not None else Settings()
    cameras = tuple(_camera(c, i, settings, base, problems, secrets) for i, c in cams_raw)

    if problems.items:
        raise ConfigError(problems.texts())
    config = Config(path=path, settings=settings, cameras=cameras, secrets=frozenset(secrets), lines=lines)
    for s in config.secrets:
        register_secret(s)
    _warn_if_readable(path, text, config.secrets)
    return config


def _cameras(data: dict[str, Any], problems: _Problems, secrets: set[str]) -> list[tuple[int, _Camera]]:
    if "cameras" not in data:
        problems.add((), "'cameras:' is missing: list at least one camera (see configs/cameras.example.yaml)")
        return []
    raw = data["cameras"]
    if raw is None or raw == []:
        problems.add(("cameras",), "no cameras: list at least one (- id: ..., url: ...)")
        return []
    if not isinstance(raw, list):
        problems.add(("cameras",), "expected a list of cameras (lines starting with '- id: ...')")
        return []
    first_line: dict[str, int] = {}
    for i, item in enumerate(raw):
        if isinstance(item, dict) and isinstance(item.get("id"), (str, int)) and not isinstance(item["id"], bool):
            cid = str(item["id"])
            line = problems.line_of(("cameras", i, "id"))
            if cid in first_line:
                problems.add(("cameras", i, "id"), f"'{_clip(cid)}': duplicate camera id "
                                                   f"(also at line {first_line[cid]})")
            else:
                first_line[cid] = line
    out = []
    for i, item in enumerate(raw):
        model = _validate(_Camera, item, ("cameras", i), problems, secrets)
        if model is not None:
            out.append((i, model))
    return out


def _settings(s: _Settings, base: Path, problems: _Problems) -> Settings:
    model = _resolve(base, s.model) if s.model else None
    if model is not None and not model.is_file():
        problems.add(("settings", "model"), f"'{_clip(s.model)}': no such file ({model})")
    if s.require_gpu and s.device == "cpu":
        problems.add(("settings", "require_gpu"), "true contradicts device: cpu")
    state_dir = _resolve(base, s.state_dir) if s.state_dir else Path(_state_dir_default())
    if state_dir.exists() and not state_dir.is_dir():
        problems.add(("settings", "state_dir"), f"{state_dir}: exists and is not a folder")
    return Settings(
        model=model, device=s.device, require_gpu=s.require_gpu, state_dir=state_dir,
        metrics=MetricsSettings(s.metrics.address, s.metrics.port, s.metrics.enabled),
        interval=s.interval, timeout=s.timeout, threshold=s.threshold, confirm=s.confirm,
        recover=s.recover, calibration=CalibrationSettings(s.calibration.checks), workers=s.workers,
        webhooks=tuple(WebhookSettings(w.url, dict(w.headers), w.timeout, w.verify_tls, w.format)
                       for w in s.webhooks),
        evidence=EvidenceSettings(s.evidence.keep, s.evidence.enabled),
        events=EventsSettings(s.events.keep_days),
    )


def _camera(c: _Camera, i: int, s: Settings, base: Path, problems: _Problems,
            secrets: set[str]) -> CameraConfig:
    at = ("cameras", i)
    url = c.url
    scheme = _scheme(url)
    parts = urlsplit(url) if scheme in ("rtsp", "rtsps", "http", "https") else None
    username, password = c.username, c.password
    if parts is not None and parts.username is not None and (username is not None or password is not None):
        problems.add(at + ("username" if username is not None else "password",),
                     "the url already has user:password@; give credentials in one place only")
    if password is not None and username is None and not (parts and parts.username):
        problems.add(at + ("password",), "password without username")
    if c.auth is not None and username is None and not (parts and parts.username):
        problems.add(at + ("auth",), f"'{c.auth}' needs a username (and password)")
    if c.auth is not None and scheme not in ("http", "https"):
        problems.add(at + ("auth",), f"'{c.auth}': auth applies to http(s) snapshot cameras only "
                                     "(RTSP negotiates it)")
    if parts is not None and parts.username is not None and username is None:
        username = unquote(parts.username)
        password = unquote(parts.password) if parts.password is not None else None
    elif parts is not None and username is not None and scheme in ("rtsp", "rtsps"):
        # RTSP carries credentials in the URL; quote them so '@' or ':' in a password is safe
        userinfo = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
        url = urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))
    if c.mode == "stream" and scheme not in ("rtsp", "rtsps"):
        problems.add(at + ("mode",), "'stream': only rtsp(s) cameras can be kept open; use snapshot")
    if not scheme:
        url = str(_resolve(base, url))
    if password:
        secrets.add(password)
        if parts is not None:
            secrets.add(quote(password, safe=""))
    secrets.update(_url_secrets(url))
    timeout = c.timeout if c.timeout is not None else s.timeout
    interval = c.interval if c.interval is not None else s.interval
    return CameraConfig(
        id=c.id, url=url, name=c.name if c.name is not None else c.id, mode=c.mode,
        interval=interval, timeout=timeout,
        threshold=c.threshold if c.threshold is not None else s.threshold,
        confirm=c.confirm if c.confirm is not None else s.confirm,
        recover=c.recover if c.recover is not None else s.recover,
        roi=c.roi, mask=c.mask, active_hours=c.active_hours, enabled=c.enabled,
        username=username, password=password, auth=c.auth, auto_enroll=c.auto_enroll,
        redacted_url=redact_url(url, secrets),
    )


def _collect_secrets(data: dict[str, Any], subs: list[_Substitution]) -> set[str]:
    """Every secret the file holds or pulls in, known before validation so no message shows one."""
    secrets: set[str] = set()
    for sub in subs:
        keys = [p for p in sub.path if isinstance(p, str)]
        if sub.secret or "webhooks" in keys or "password" in keys or "headers" in keys \
                or (keys and _SECRET_KEY.search(keys[-1]) and keys[-1] not in ("auth", "auto_enroll")):
            secrets.update({sub.value, quote(sub.value, safe="")})

    def walk(obj: Any, path: LinePath) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, path + (k,))
        elif isinstance(obj, list):
            for n, v in enumerate(obj):
                walk(v, path + (n,))
        elif isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
            keys = [p for p in path if isinstance(p, str)]
            last = keys[-1] if keys else ""
            if last == "password":
                secrets.add(str(obj))
            elif "headers" in keys and keys[-1].lower() not in _PUBLIC_HEADERS:
                secrets.add(str(obj))
                if str(obj).lower().startswith(("bearer ", "basic ", "token ")):
                    secrets.add(str(obj).split(None, 1)[1])
            elif last == "url" and isinstance(obj, str):
                secrets.update(_url_secrets(obj, webhook="webhooks" in keys))

    walk(data, ())
    return {s for s in secrets if len(s) >= 3}


def _warn_if_readable(path: Path, text: str, secrets: Iterable[str]) -> None:
    """A secret written in clear in a file others can read deserves a warning (not an error)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return
    if any(s in text for s in secrets):
        log.warning("%s holds passwords or tokens in clear and other users can read it: run "
                    "'chmod 600 %s', or move them to ${ENV} variables or systemd LoadCredential= "
                    "(${cred:NAME})", path, path)


# -- camwatch validate ---------------------------------------------------------------------


def _deep_problems(config: Config) -> list[str]:
    """Checks beyond the file itself: the model loads, the state folder can be written."""
    problems: list[str] = []
    s = config.settings

    def where(*key: str) -> str:
        line = config.lines.get(tuple(key)) or config.lines.get((key[0],)) or 1
        return f"{config.path}:{line}: {'.'.join(key)}"

    try:
        from camwatch.vision.embedder import load_embedder
    except ImportError:
        load_embedder = None  # type: ignore[assignment]
    if load_embedder is not None:
        try:
            load_embedder(str(s.model) if s.model else None, device=s.device, require_gpu=s.require_gpu)
        except ModelError as exc:
            problems.append(f"{where('settings', 'model')}: {scrub(str(exc))}")
    try:
        import importlib.util
        has_store = importlib.util.find_spec("camwatch.store.references") is not None
    except (ImportError, ValueError):
        has_store = False
    if has_store:
        msg = _state_dir_problem(s.state_dir)
        if msg:
            problems.append(f"{where('settings', 'state_dir')}: {msg}")
    return problems


def _state_dir_problem(state_dir: Path) -> str | None:
    """Why the state folder could not be created or written, without creating anything."""
    probe = state_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{state_dir}: {probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == state_dir else f"cannot be created ({probe} is not writable)"
        return f"{state_dir}: {what} by this user (systemd: StateDirectory=camwatch)"
    return None


def cli_validate(args: argparse.Namespace) -> int:
    """``camwatch validate --config FILE``: OK with counts, or every problem and exit 2."""
    config = load_config(args.config)
    problems = _deep_problems(config)
    if problems:
        raise ConfigError(problems)
    enabled = sum(1 for c in config.cameras if c.enabled)
    n = len(config.cameras)
    print(f"{args.config}: OK ({n} camera{'s' if n != 1 else ''}, {enabled} enabled)")
    return 0
