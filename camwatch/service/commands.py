"""Operator commands that arrive over MQTT: silence a camera's alerts, enrol its current view.

Off unless ``settings.mqtt.commands`` is true. Who may send them is the
broker's to decide (its ACL: grant publish on ``<prefix>/+/set/#`` to the
operators' accounts only); camwatch carries them out with the same code as
the console and records each as an event naming who asked (``mqtt``, or
``mqtt:<by>`` when the payload names one), so the audit trail is the same.
A command camwatch cannot carry out is logged as one warning line and
otherwise ignored.

Payloads: ``set/silence``: a duration (``30m``, ``2h``; ``0`` ends it) or
``{"duration": "2h", "by": "dana"}``; ``set/enroll``: a reference label
(empty: ``default``) or ``{"label": "day", "by": "dana"}``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from camwatch.config.types import parse_duration
from camwatch.core.errors import CamwatchError
from camwatch.core.secrets import scrub
from camwatch.service import actions
from camwatch.service.pipeline import CameraRuntime
from camwatch.store.events import Event
from camwatch.store.references import ReferenceStore, check_label

log = logging.getLogger(__name__)

_BY = re.compile(r"[A-Za-z0-9_.@-]{1,40}")


@dataclass(frozen=True)
class Command:
    camera_id: str
    name: str              # silence | enroll
    who: str               # mqtt or mqtt:<by>
    seconds: float = 0.0   # silence
    label: str = "default"  # enroll


def parse_command(camera_id: str, name: str, payload: bytes) -> Command:
    """The command a message asks for; CamwatchError with a one-line reason when it cannot be read."""
    text = payload.decode("utf-8", "replace").strip()
    doc: dict[str, Any] = {}
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError:
            raise CamwatchError("the payload is not valid JSON") from None
        if not isinstance(loaded, dict):
            raise CamwatchError("expected a JSON object")
        doc = loaded
    by = doc.get("by")
    if by is not None and (not isinstance(by, str) or not _BY.fullmatch(by)):
        raise CamwatchError("'by': expected a name of letters, digits, '_', '.', '@', '-' (at most 40)")
    who = f"mqtt:{by}" if by else "mqtt"
    if name == "silence":
        value = doc.get("duration", "0") if doc else (text or "0")
        if str(value).strip() in ("0", "off"):
            return Command(camera_id, name, who, seconds=0.0)
        try:
            return Command(camera_id, name, who, seconds=parse_duration(value))
        except ValueError as exc:
            raise CamwatchError(f"duration {scrub(str(value))[:40]!r}: {exc}") from None
    if name == "enroll":
        label = doc.get("label", "default") if doc else (text or "default")
        return Command(camera_id, name, who, label=check_label(str(label)))
    raise CamwatchError(f"unknown command '{_shown(name)}' (expected silence or enroll)")


def carry_out(cmd: Command, runtimes: Mapping[str, CameraRuntime], store: ReferenceStore | None,
              act: Callable[[Event], object]) -> None:
    """Do what ``cmd`` asks through ``service.actions``, as the console does: a silence at once (``act``
    records its event and applies it), an enrolment at the next check."""
    rt = runtimes.get(cmd.camera_id)
    if rt is None:
        raise CamwatchError(f"unknown camera '{_shown(cmd.camera_id)}'")
    if cmd.name == "silence":
        if store is None:
            raise CamwatchError("the reference store is not open")
        act(actions.silence(store, rt.camera, cmd.seconds, cmd.who) if cmd.seconds
            else actions.unsilence(store, rt.camera, cmd.who))
    elif cmd.name == "enroll":
        if not rt.enabled:
            raise CamwatchError(f"camera {cmd.camera_id} is disabled: it has no current view")
        rt.accept = (cmd.label, cmd.who, "accept")   # the pipeline enrols its next view, as for the console
        log.info("camera %s: %s asked to accept its next view as reference '%s'", cmd.camera_id, cmd.who,
                 cmd.label, extra={"camera": cmd.camera_id})


def _shown(text: str) -> str:
    """A name from a topic as a log line may show it: short, printable ASCII (a topic may hold a newline)."""
    return text[:60] if re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", text[:60]) else ascii(text[:40])


def handle(camera_id: str, name: str, payload: bytes, runtimes: Mapping[str, CameraRuntime],
           store: ReferenceStore | None, act: Callable[[Event], object]) -> bool:
    """Parse and carry out one message; a refusal is one warning line. True when carried out."""
    try:
        carry_out(parse_command(camera_id, name, payload), runtimes, store, act)
    except CamwatchError as exc:
        log.warning("MQTT command %s for camera %s refused: %s", _shown(name), _shown(camera_id), scrub(str(exc)))
        return False
    return True
