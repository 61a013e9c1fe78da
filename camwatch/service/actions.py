"""What an operator does to a camera: accept or add its current view as a reference, remove a
reference, silence its alerts for a while, disable or enable its checks.

Why one module below every door: the console's forms, its JSON API, the CLI
(and MQTT commands later) all act through these functions, so an action is
checked, carried out and written down the same way whoever asks. Each one
changes the store (``store.controls`` or the references) and returns the
``Event`` that records it, naming who (``details["by"]``); the caller records
the event (the daemon through its dispatcher, the CLI into events.db) and the
daemon carries the new settings out (``Daemon.apply_controls``: at once for
the console, within ``CONTROLS_EVERY_S`` for the CLI).

Making a reference needs a view and the model: the console asks the pipeline
to do it at the camera's next check (``CameraRuntime.accept``), on the frame
the daemon itself fetched; ``accept_view`` is what the pipeline then calls.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone

import numpy as np

from camwatch.config import CameraConfig
from camwatch.config.types import clip, parse_duration
from camwatch.core.errors import ActionError, CamwatchError, StoreError
from camwatch.core.secrets import scrub
from camwatch.service.enrol import enrol_frame
from camwatch.store import controls
from camwatch.store.events import Event
from camwatch.store.references import ReferenceStore, check_label
from camwatch.vision.embedder import Embedder

log = logging.getLogger(__name__)

#: The longest silence: a forgotten one must not hide a real tampering for ever.
MAX_SILENCE_S = 30 * 86400
#: What an actor's name may be (it goes into events, logs and pages).
ACTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,39}")   # ':' for MQTT's "mqtt:dana"
#: How a new reference is made from the current view: ``accept`` replaces the label's reference,
#: ``add`` refuses a label the camera already has.
MODES = ("accept", "add")


def check_actor(who: str) -> str:
    """An actor's name as events keep it, or an ActionError."""
    who = (who or "").strip()
    if not ACTOR.fullmatch(who):
        raise ActionError("who: 1 to 40 letters, digits, spaces, '.', '_', '@', ':' or '-' (it goes into the "
                          "events log)")
    return who


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def silence_period(text: str) -> float:
    """Seconds from an operator's period ("2h", "30m", "1d"), at most MAX_SILENCE_S, or an ActionError."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ActionError(f"period '{clip(str(text), 20)}': {exc}") from None
    if seconds > MAX_SILENCE_S:
        raise ActionError(f"period '{clip(str(text), 20)}': at most {MAX_SILENCE_S // 86400} days")
    return seconds


def _event(camera: CameraConfig, kind: str, who: str, message: str, **details: float | str) -> Event:
    log.info("camera %s: %s", camera.id, message, extra={"camera": camera.id, "event": kind})
    return Event(camera_id=camera.id, type=kind, message=message, details={"by": who, **details})


def silence(store: ReferenceStore, camera: CameraConfig, seconds: float, who: str,
            now: float | None = None) -> Event:
    """Silence ``camera``'s alerts for ``seconds`` (still checked; events recorded, not delivered)."""
    who = check_actor(who)
    if not 0 < seconds <= MAX_SILENCE_S:
        raise ActionError(f"period: more than 0 s and at most {MAX_SILENCE_S // 86400} days")
    until = (time.time() if now is None else now) + seconds
    controls.set_silenced(store, camera.id, until, who)
    return _event(camera, "camera_silenced", who, f"{who} silenced its alerts until {iso(until)}",
                  until=round(until, 3), seconds=float(seconds))


def unsilence(store: ReferenceStore, camera: CameraConfig, who: str, now: float | None = None) -> Event:
    """Deliver ``camera``'s alerts again before its silence runs out."""
    who = check_actor(who)
    if not controls.get(store, camera.id).silenced_at(time.time() if now is None else now):
        raise ActionError(f"camera {camera.id} is not silenced", 409)
    controls.set_silenced(store, camera.id, None, None)
    return _event(camera, "camera_unsilenced", who, f"{who} lifted the silence of its alerts")


def set_enabled(store: ReferenceStore, camera: CameraConfig, enabled: bool, who: str) -> Event:
    """Disable ``camera``'s checks (kept across restarts) or enable them again.

    A camera the config disables stays disabled: the config's ``enabled: false``
    is the owner's word, which the console does not overrule.
    """
    who = check_actor(who)
    if not camera.enabled:
        raise ActionError(f"camera {camera.id} is disabled in the config (enabled: false); "
                          "enable it there", 409)
    disabled = controls.get(store, camera.id).disabled_by is not None
    if disabled != enabled:
        raise ActionError(f"camera {camera.id} is already {'enabled' if enabled else 'disabled'}", 409)
    controls.set_disabled(store, camera.id, None if enabled else who)
    if enabled:
        return _event(camera, "camera_enabled", who, f"{who} enabled its checks")
    return _event(camera, "camera_disabled", who, f"{who} disabled its checks")


def remove_reference(store: ReferenceStore, camera: CameraConfig, reference_id: int, who: str) -> Event:
    """Remove one of ``camera``'s references; never its last (``store.controls.remove_reference``)."""
    who = check_actor(who)
    try:
        label = controls.remove_reference(store, camera.id, int(reference_id))
    except StoreError as exc:
        raise ActionError(str(exc), 404 if "has no reference" in str(exc) else 409) from None
    return _event(camera, "reference_removed", who, f"{who} removed reference {reference_id} ('{label}')",
                  reference=str(reference_id), label=label)


def new_reference_label(store: ReferenceStore, camera: CameraConfig, label: str, mode: str) -> str:
    """The label a reference made from the current view gets, checked before the next check makes it."""
    if mode not in MODES:
        raise ActionError(f"mode '{clip(mode, 20)}': one of {', '.join(MODES)}")
    try:
        label = check_label(label or "")
    except StoreError as exc:
        raise ActionError(f"label: {exc}") from None
    if mode == "add" and any(r.label == label for r in store.for_camera(camera.id, images=False)):
        raise ActionError(f"camera {camera.id} already has a reference labelled '{label}'; pick another label, "
                          "or accept the view to replace it", 409)
    return label


def accept_view(store: ReferenceStore, embedder: Embedder, camera: CameraConfig, image_bgr: np.ndarray,
                label: str, who: str, mode: str = "accept") -> Event | None:
    """Enrol ``image_bgr`` as ``camera``'s reference ``label`` for ``who``; the event to record, or None
    (logged) when the view is refused (too dark, flat ...) or, to ``add``, the label was taken meanwhile."""
    try:
        if mode == "add":
            new_reference_label(store, camera, label, mode)
        done = enrol_frame(store, embedder, camera, image_bgr, label)
    except CamwatchError as exc:
        log.warning("camera %s: %s's %s of the current view was refused: %s", camera.id, who, mode,
                    scrub(str(exc)), extra={"camera": camera.id})
        return None
    if mode == "add":
        return _event(camera, "reference_added", who,
                      f"{who} added the current view as reference {done.reference.id} ('{label}')",
                      reference=str(done.reference.id), label=label)
    replaced = ", ".join(str(r) for r in done.replaced) or "none"
    log.info("camera %s: %s accepted the current view as reference %d ('%s'; replaced: %s)", camera.id, who,
             done.reference.id, label, replaced, extra={"camera": camera.id})
    return Event(camera_id=camera.id, type="reference_accepted",
                 message=f"{who} accepted the current view as reference '{label}'",
                 details={"by": who, "reference": str(done.reference.id), "label": label})
