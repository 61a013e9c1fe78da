"""Reading the cameras file: YAML with the line of every key, ${ENV} and ${cred:NAME} substitution.

Why we compose YAML nodes ourselves instead of ``yaml.safe_load``: errors must
name the line of the key that is wrong, and safe_load forgets lines. Walking
the nodes also lets us refuse duplicate keys (safe_load keeps the last one
silently), keep "on"/"yes" as names, bound alias expansion ("billion laughs")
and substitute ``${...}`` per value, so a missing variable is reported at the
key that uses it. No message made here ever shows a secret: a substituted
value is only recorded (``Builder.subs``) for ``load.py`` to classify.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import yaml

from camwatch.config.schema import LinePath
from camwatch.config.types import clip
from camwatch.core.errors import ConfigError
from camwatch.core.secrets import scrub

_SUBST = re.compile(r"\$(\$)?\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CRED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
_MAX_NODES = 200_000


class Problems:
    """Problems as (line, text), reported sorted by line."""

    def __init__(self, file: str, lines: dict[LinePath, int]):
        self.file = file
        self.lines = lines
        self.items: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []  # the file works, but should be changed
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
        where = f" {path_str(path)}:" if path else ""
        self.items.append((line, f"{self.file}:{line}:{where} {message}"))

    def warn(self, path: LinePath, message: str) -> None:
        line = self.line_of(path)
        where = f" {path_str(path)}:" if path else ""
        self.warnings.append((line, f"{self.file}:{line}:{where} {message}"))

    def texts(self) -> list[str]:
        return [t for _, t in sorted(self.items, key=lambda it: it[0])]

    def warning_texts(self) -> list[str]:
        return [t for _, t in sorted(self.warnings, key=lambda it: it[0])]


def path_str(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


#: Keys whose value is a URL, taken apart by part for ${...} (a camera's or webhook's url, settings.store).
URL_KEYS = ("url", "store")


@dataclass
class Substitution:
    path: LinePath
    value: str
    secret: bool  # from a credential, or a URL password
    #: Where in a URL it stood: "start" (it holds the scheme), "userinfo", "host" (or port), "path",
    #: "query", "fragment"; "" outside a url. ``load.py`` decides from this which values are secrets.
    part: str = ""
    #: For part "query": the key whose value it is (None when it stands in a key's name).
    query_key: str | None = None


class Builder:
    """Turns composed YAML nodes into plain data, noting lines, duplicate keys and substitutions."""

    def __init__(self, problems: Problems):
        self.loader = yaml.SafeLoader("")
        self.problems = problems
        self.lines = problems.lines
        self.subs: list[Substitution] = []
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
                self.subs.append(Substitution(path, value, True))
                return quote(value, safe="") if _in_userinfo(path, text, m) else value
            name, sep, default = ref.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                self.problems.add(path, f"${{{clip(ref, 40)}}}: expected ${{ENV_VAR}}, ${{ENV_VAR:-default}} "
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
                self.subs.append(Substitution(path, value, True, "userinfo"))
                return quote(value, safe="")
            part, key = _url_part(path, text, m, value)
            self.subs.append(Substitution(path, value, False, part, key))
            return value

        out = _SUBST.sub(one, text)
        if failed:
            self.problems.failed.add(path)
            return None
        return out

    def _credential(self, name: str, path: LinePath) -> str | None:
        if not _CRED_NAME.fullmatch(name):
            self.problems.add(path, f"${{cred:{clip(name, 40)}}}: a credential name is letters, digits, "
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
    if not path or path[-1] not in URL_KEYS:
        return False
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*", text[: m.start()])
                and re.match(r"[^/?#]*@", text[m.end():]))


def _url_part(path: LinePath, text: str, m: re.Match[str], value: str) -> tuple[str, str | None]:
    """Which part of a url value a ${...} stands in, and for a query value its key (see Substitution)."""
    if not path or path[-1] not in URL_KEYS:
        return "", None
    before = text[: m.start()]
    if not before and re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
        return "start", None
    if "#" in before:
        return "fragment", None
    if "?" in before:
        piece = before.split("?", 1)[1].rsplit("&", 1)[-1]
        key, sep, _ = piece.partition("=")
        return "query", (unquote_plus(key) if sep else None)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", before):
        return ("userinfo" if re.match(r"[^/?#]*@", text[m.end():]) else "host"), None
    return "path", None


def read_text(path: Path) -> str:
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


def compose(text: str, file: str) -> yaml.Node | None:
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

