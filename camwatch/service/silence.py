"""Silencing a camera's alerts for a while: an operator's action, recorded as an event with who did it.

Why it only holds notifications back: while a camera is silenced (a ladder in
front of it during works), its alert events are still recorded, logged, counted
and shown in its state, metrics and state topics; they are not sent to the
webhooks and the MQTT event topic. The ``camera_silenced`` event is both the
audit trail and the record: a restarted daemon reads the latest one per camera
back (``Silences.restore``), so a silence outlives a restart. A duration of 0
ends a silence early (recorded the same way). The MQTT command uses it; a
console action can call ``silence`` the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone

from camwatch.core.errors import CamwatchError
from camwatch.store.events import Event

#: The longest silence one action may ask for: a forgotten one must end on its own.
MAX_SILENCE_S = 7 * 86400.0
#: Events that notify someone, held back from the sinks (but the log) while their camera is silenced.
ALERT_EVENTS = frozenset({"drift_started", "drift_cleared", "camera_down", "camera_up"})
#: The key an event held back carries in its details (the outbox dispatcher looks for it).
SILENCED_KEY = "silenced_until"


class Silences:
    """Each camera's silence, until a unix time; thread-safe (commands, the pipeline, the console)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def until(self, camera_id: str, now: float | None = None) -> float | None:
        """When ``camera_id``'s silence ends, or None when it is not silenced."""
        now = time.time() if now is None else now
        with self._lock:
            end = self._until.get(camera_id)
        return end if end is not None and end > now else None

    def set(self, camera_id: str, until: float) -> None:
        with self._lock:
            self._until[camera_id] = until

    def restore(self, events: Iterable[Event]) -> None:
        """Take each camera's latest ``camera_silenced`` event (oldest first) as its silence."""
        for e in events:
            if e.type == "camera_silenced":
                until = e.details.get("until")
                if isinstance(until, (int, float)):
                    self.set(e.camera_id, float(until))

    def mark(self, event: Event) -> Event:
        """``event`` with ``silenced_until`` in its details when it is an alert of a silenced camera."""
        end = self.until(event.camera_id, event.time)
        if end is not None and event.type in ALERT_EVENTS:
            event.details[SILENCED_KEY] = _iso(end)
        return event


def silence(silences: Silences, camera_id: str, seconds: float, who: str, now: float | None = None) -> Event:
    """Silence ``camera_id`` for ``seconds`` (0 ends a silence) for ``who``; the event to record."""
    if not 0 <= seconds <= MAX_SILENCE_S:
        raise CamwatchError(f"camera {camera_id}: a silence lasts 0 s to {MAX_SILENCE_S / 86400:.0f} days, "
                            f"not {seconds:g} s")
    now = time.time() if now is None else now
    until = now + seconds
    silences.set(camera_id, until)
    message = (f"{who} silenced the camera's alerts until {_iso(until)}" if seconds
               else f"{who} ended the camera's silence")
    return Event(camera_id=camera_id, type="camera_silenced", message=message, time=now,
                 details={"by": who, "until": until, "seconds": float(seconds)})


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
