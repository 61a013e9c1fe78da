"""load_config: the file read, validated against the schema, given effective values; every problem at once.

Why it is built this way:

* Users judge a daemon first by how it treats a wrong config, so every problem
  is reported at once, each on one line as ``file:line: key.path: value: what
  is wrong``, sorted by line, never as a traceback; an unknown key gets a
  did-you-mean.
* Secrets are found here, once, before anything is validated, so no message
  shows one: every ``${cred:NAME}`` value; every ``${ENV}`` value that lands
  where a credential can be (a URL but its host and port, a username, password
  or header, anything under a webhook or a secret-looking key); URL passwords;
  EVERY query value of a camera, webhook or store URL (``settings.store``) unless
  the camera lists its key in ``public_query``; fragments; ``password:`` fields; webhook URLs and headers.
  ``${ENV}`` values of settings (numbers, durations, switches, paths, ids,
  hosts) are not secrets: nothing there can be a credential, and masking "true"
  or "300" everywhere would mangle every message and JSON document. They end
  up in ``Config.secrets`` and are registered with ``camwatch.core.secrets``
  for scrubbing, so no other layer registers them.
* A URL's ``#fragment`` is dropped here (a client never sends one, so it only
  ever served to show a secret), with a warning naming its line.
* What the schema cannot say key by key is done here: paths relative to the
  config file, credentials given in the URL or beside it (in one place only),
  checks that span keys (auth needs a username), the camera's unset check
  settings taken from ``settings``.
"""

from __future__ import annotations

import difflib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from pydantic import ValidationError

from camwatch.config.reader import URL_KEYS, Builder, Problems, Substitution, compose, read_text
from camwatch.config.schema import INHERITED, TOP_KEYS, CameraConfig, Config, LinePath, Settings, keys_at
from camwatch.config.types import clip, parse_query_names, url_scheme
from camwatch.core.errors import ConfigError
from camwatch.core.secrets import (
    SECRET_KEY,
    drop_fragment,
    is_public_query,
    mask,
    redact_url,
    register_public_query,
    register_secret,
    scrub,
    split_credentials,
    url_secrets,
)

log = logging.getLogger(__name__)

M = TypeVar("M", Settings, CameraConfig)

_PUBLIC_HEADERS = {"content-type", "accept", "user-agent", "accept-language"}
#: Keys whose ${ENV} value is a secret wherever it stands in the file (a URL has its own rule by part).
_CREDENTIAL_KEYS = ("username", "password", "headers", "webhooks")
_TYPE_MESSAGES = {
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list (lines starting with '- ')",
    "tuple_type": "expected a list (lines starting with '- ')",
    "missing": "required key is missing",
}
#: Camera keys where an empty value means "not set": the check settings then come from settings.
_EMPTY_IS_UNSET = (*INHERITED, "name")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, substitute and validate a cameras YAML file; ConfigError lists every problem."""
    path = Path(path)
    file = str(path)
    text = read_text(path)
    lines: dict[LinePath, int] = {(): 1}
    problems = Problems(file, lines)
    node = compose(text, file)
    if node is None:
        raise ConfigError(f"{file}: is empty; expected 'settings:' and 'cameras:' "
                          "(see configs/cameras.example.yaml)")
    builder = Builder(problems)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise ConfigError(f"{file}:{node.start_mark.line + 1}: expected a mapping with 'settings:' and "
                          f"'cameras:', found {kind}")

    secrets = _collect_secrets(data, builder.subs)
    for key in data:
        if key not in TOP_KEYS and not key.startswith("x-"):  # x-...: room for YAML anchors
            problems.add((key,), _unknown_key(key, TOP_KEYS))

    base = path.resolve().parent
    settings = _settings(data, base, problems, secrets)
    cameras = tuple(_camera(c, i, settings, base, problems, secrets) for i, c in _cameras(data, problems, secrets))

    for s in secrets:
        register_secret(s)
    for warning in problems.warning_texts():
        log.warning("%s", warning)
    if problems.items:
        raise ConfigError(problems.texts())
    config = Config(path=path, settings=settings, cameras=cameras, secrets=frozenset(secrets), lines=lines)
    register_public_query(n for c in cameras for n in c.public_query)
    _warn_if_readable(path, text, config.secrets)
    return config


def _resolve(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _settings(data: dict[str, Any], base: Path, problems: Problems, secrets: set[str]) -> Settings:
    """The validated settings with paths resolved against the config's folder (defaults if invalid)."""
    raw = data.get("settings")
    s = _validate(Settings, raw, ("settings",), problems, secrets) if "settings" in data else Settings()
    if s is None:
        return Settings()
    update: dict[str, Any] = {}
    if s.model is not None:
        model = update["model"] = _resolve(base, s.model)
        if not model.is_file():
            written = str(raw["model"]).strip() if isinstance(raw, dict) else str(s.model)
            problems.add(("settings", "model"), f"'{clip(written)}': no such file ({model})")
    tls = {k: getattr(s.console, k) for k in ("tls_cert", "tls_key") if getattr(s.console, k) is not None}
    if len(tls) == 1:
        given = next(iter(tls))
        other = "tls_key" if given == "tls_cert" else "tls_cert"
        problems.add(("settings", "console", other), f"missing: settings.console.{given} is given, HTTPS needs both")
    for key, path in tls.items():
        tls[key] = _resolve(base, path)
        if not tls[key].is_file():
            problems.add(("settings", "console", key), f"'{clip(str(path))}': no such file ({tls[key]})")
    if tls:
        update["console"] = s.console.model_copy(update=tls)
    if s.require_gpu and s.device == "cpu":
        problems.add(("settings", "require_gpu"), "true contradicts device: cpu")
    cluster = s.cluster
    if cluster.replication > cluster.members:
        problems.add(("settings", "cluster", "replication"),
                     f"{cluster.replication}: more than members ({cluster.members}); each camera is checked by "
                     "replication distinct members")
    if cluster.member is not None and cluster.member >= cluster.members:
        problems.add(("settings", "cluster", "member"),
                     f"{cluster.member}: not below members ({cluster.members}); members are numbered "
                     f"0..{cluster.members - 1}")
    if isinstance(raw, dict) and raw.get("state_dir") is not None:
        update["state_dir"] = _resolve(base, s.state_dir)
    hooks = list(s.webhooks)
    for n, hook in enumerate(hooks):
        url, fragment = drop_fragment(hook.url)
        if fragment:  # its text is a secret already (url_secrets)
            problems.warn(("settings", "webhooks", n, "url"), _FRAGMENT_DROPPED)
            hooks[n] = hook.model_copy(update={"url": url})
            update["webhooks"] = tuple(hooks)
    if s.mqtt.ca_file is not None:
        ca = _resolve(base, s.mqtt.ca_file)
        if not ca.is_file():
            problems.add(("settings", "mqtt", "ca_file"), f"'{clip(str(s.mqtt.ca_file))}': no such file ({ca})")
        update["mqtt"] = s.mqtt.model_copy(update={"ca_file": ca})
    if s.mqtt.password is not None and s.mqtt.username is None:
        problems.add(("settings", "mqtt", "password"), "a password needs a username: beside it")
    state_dir = update.get("state_dir", s.state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        problems.add(("settings", "state_dir"), f"{state_dir}: exists and is not a folder")
    return s.model_copy(update=update) if update else s


def _cameras(data: dict[str, Any], problems: Problems, secrets: set[str]) -> list[tuple[int, CameraConfig]]:
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
                problems.add(("cameras", i, "id"), f"'{clip(cid)}': duplicate camera id "
                                                   f"(also at line {first_line[cid]})")
            else:
                first_line[cid] = line
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, dict):
            for key in CameraConfig.DERIVED & item.keys():
                problems.add(("cameras", i, key), _unknown_key(key, CameraConfig.file_keys()))
            item = {k: v for k, v in item.items()
                    if k not in CameraConfig.DERIVED and not (v is None and k in _EMPTY_IS_UNSET)}
        model = _validate(CameraConfig, item, ("cameras", i), problems, secrets)
        if model is not None:
            out.append((i, model))
    return out


def _camera(c: CameraConfig, i: int, s: Settings, base: Path, problems: Problems,
            secrets: set[str]) -> CameraConfig:
    """The camera with effective values: settings' defaults, credentials in one form, a redacted URL."""
    at = ("cameras", i)
    url = c.url
    scheme = url_scheme(url)
    network = scheme in ("rtsp", "rtsps", "http", "https")
    if network:
        url, fragment = drop_fragment(url)
        if fragment:
            problems.warn(at + ("url",), _FRAGMENT_DROPPED)
        query = urlsplit(url).query if "?" in url else ""
        names = {unquote_plus(p.partition("=")[0]) for p in query.split("&")} if query else set()
        for name in c.public_query:
            if name not in names:
                problems.warn(at + ("public_query",), f"'{clip(name, 40)}' is not a query key of this "
                                                      "camera's url (a typo? its value would stay masked)")
    _, url_user, url_password = split_credentials(url) if network else (url, None, None)
    username, password = c.username, c.password
    if url_user is not None and (username is not None or password is not None):
        problems.add(at + ("username" if username is not None else "password",),
                     "the url already has user:password@; give credentials in one place only")
    if password is not None and username is None and not url_user:
        problems.add(at + ("password",), "password without username")
    if c.auth is not None and username is None and not url_user:
        problems.add(at + ("auth",), f"'{c.auth}' needs a username (and password)")
    if c.auth is not None and scheme not in ("http", "https"):
        problems.add(at + ("auth",), f"'{c.auth}': auth applies to http(s) snapshot cameras only "
                                     "(RTSP negotiates it)")
    if url_user is not None and username is None:
        username, password = url_user, url_password
    elif network and username is not None and scheme in ("rtsp", "rtsps"):
        # RTSP carries credentials in the URL; quote them so '@' or ':' in a password is safe
        parts = urlsplit(url)
        userinfo = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
        url = urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))
    if c.mode == "stream" and scheme not in ("rtsp", "rtsps"):
        problems.add(at + ("mode",), "'stream': only rtsp(s) cameras can be kept open; use snapshot")
    if not scheme:
        url = str(_resolve(base, url))
    if password:
        secrets.add(password)
        if network:
            secrets.add(quote(password, safe=""))
    secrets.update(url_secrets(url, public=c.public_query))
    update: dict[str, Any] = {k: getattr(s, k) for k in INHERITED if k not in c.model_fields_set}
    if "name" not in c.model_fields_set:
        update["name"] = c.id
    update.update(url=url, username=username, password=password,
                  redacted_url=redact_url(url, secrets, public=c.public_query))
    return c.model_copy(update=update)


# -- problems as the user reads them --------------------------------------------------------


def _validate(model: type[M], data: Any, prefix: LinePath, problems: Problems, secrets: set[str]) -> M | None:
    """The model, or None with each of pydantic's errors added as one line at its key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = prefix + tuple(err["loc"])
            kind = err["type"]
            if any(loc[:n] in problems.failed for n in range(1, len(loc) + 1)):
                continue  # its ${...} could not be substituted: said once already
            if kind == "extra_forbidden":
                problems.add(loc, _unknown_key(str(loc[-1]), keys_at(loc[:-1])))
                continue
            msg = err["msg"]
            if kind == "value_error":
                msg = msg.removeprefix("Value error, ")
            else:
                msg = _TYPE_MESSAGES.get(kind, msg[:1].lower() + msg[1:])
            shown = "" if kind == "missing" else _show(err.get("input"), loc, secrets)
            problems.add(loc, f"{shown}{msg}")
        return None


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{clip(key, 40)}'; did you mean '{close[0]}'?"
    return f"unknown key '{clip(key, 40)}' (expected one of: {', '.join(known)})"


def _is_secret_path(path: LinePath) -> bool:
    keys = [p for p in path if isinstance(p, str)]
    return bool(keys) and (keys[-1] in ("password", "headers") or "headers" in keys)


def _show(value: Any, path: LinePath, secrets: set[str]) -> str:
    """The value as an error message may show it: scalars only, secrets masked."""
    if isinstance(value, (dict, list)) or value is None:
        return ""
    if _is_secret_path(path):
        return "***: "
    text = mask(scrub(str(value)), secrets)
    return f"{clip(text)!r}: " if isinstance(value, str) else f"{clip(text)}: "


# -- secrets --------------------------------------------------------------------------------


_FRAGMENT_DROPPED = ("the #fragment is dropped: a URL's fragment is never sent, and may only show a "
                     "secret (remove it from the file)")


def _public_query_raw(data: dict[str, Any], path: LinePath) -> tuple[str, ...]:
    """The public_query of the camera at ``path`` as written, before validation; () if none or invalid.

    For ``settings.store`` every query key but a credential's (``password``, ``sslpassword``: SECRET_KEY)
    is public: libpq's parameters (``sslmode=require``, ``connect_timeout=5``) are settings, and
    masking "require" would mask it in every message.
    """
    if tuple(path) == ("settings", "store"):
        raw = data.get("settings", {}).get("store") if isinstance(data.get("settings"), dict) else None
        query = urlsplit(raw).query if isinstance(raw, str) and "?" in raw else ""
        return tuple(unquote_plus(p.partition("=")[0]) for p in query.split("&") if p)
    if len(path) < 2 or path[0] != "cameras" or not isinstance(path[1], int):
        return ()
    cams = data.get("cameras")
    cam = cams[path[1]] if isinstance(cams, list) and path[1] < len(cams) else None
    try:
        return parse_query_names(cam.get("public_query")) if isinstance(cam, dict) else ()
    except ValueError:
        return ()  # reported by validation; meanwhile every value stays secret


def _sub_is_secret(sub: Substitution, data: dict[str, Any]) -> bool:
    """Whether a ${...} value is a secret: see the module docstring for the rule and why."""
    keys = [p for p in sub.path if isinstance(p, str)]
    last = keys[-1] if keys else ""
    if sub.secret or any(k in _CREDENTIAL_KEYS for k in keys):
        return True
    if last in URL_KEYS:
        if sub.part in ("start", "host"):  # a whole URL is taken apart below; a host names the camera
            return False
        if sub.part == "query" and sub.query_key is not None:
            return not is_public_query(sub.query_key, sub.value, _public_query_raw(data, sub.path))
        return True  # userinfo, path, fragment, a query key's name
    return bool(SECRET_KEY.search(last)) and last not in ("auth", "auto_enroll")


def _collect_secrets(data: dict[str, Any], subs: list[Substitution]) -> set[str]:
    """Every secret the file holds or pulls in, known before validation so no message shows one."""
    secrets: set[str] = set()
    for sub in subs:
        if _sub_is_secret(sub, data):
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
            elif last in URL_KEYS and isinstance(obj, str):
                secrets.update(url_secrets(obj, webhook="webhooks" in keys, public=_public_query_raw(data, path)))

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
                    "(${cred:NAME}); a URL's query values count, unless the camera lists their keys "
                    "in public_query", path, path)
