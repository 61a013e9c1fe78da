"""Carrying out what operators set in the store (``store.controls``): each camera's silence and
whether it is checked, told to its monitor; the scheduler follows.

Why its own module: the daemon wires it (at start, after a reload, with its
10-s status line, and at once after the console's or MQTT's action), but the
work is the same everywhere, and it keeps what it last saw so that an idle
daemon pays one version query a look (``PRAGMA data_version`` on SQLite) rather than a read of every
camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from camwatch.core.errors import CamwatchError
from camwatch.core.monitor import Monitor
from camwatch.core.secrets import scrub
from camwatch.service.pipeline import CameraRuntime, Pipeline
from camwatch.service.scheduler import Scheduler
from camwatch.store import controls
from camwatch.store.references import ReferenceStore

log = logging.getLogger(__name__)


def rows(store: ReferenceStore | None) -> dict[str, controls.Control]:
    """Every camera's settings, or none when the store cannot be read (the checks go on as they were)."""
    try:
        return controls.read(store) if store is not None else {}
    except CamwatchError as exc:
        log.warning("operators' settings: %s", scrub(str(exc)))
        return {}


class Applier:
    """``apply`` carries the store's settings out; it remembers what it saw (the store's version, the
    runtimes) and when the next silence runs out, and does nothing while neither changed."""

    def __init__(self) -> None:
        self._seen: tuple[object, frozenset[tuple[str, int]]] | None = None
        self._due = 0.0

    def apply(self, store: ReferenceStore, runtimes: Mapping[str, CameraRuntime], pipeline: Pipeline,
              scheduler: Scheduler, lock: threading.RLock) -> None:
        """Each camera's monitor is told its silence and whether it is enabled; a camera disabled by an
        operator leaves the schedule (its state: disabled) and returns to it when enabled. A silence
        that ran out is said once by the monitor, then cleared from the store."""
        now = time.time()
        try:
            # The runtimes themselves: a reload's fresh monitor must be told again.
            seen = (controls.version(store), frozenset((cid, id(rt)) for cid, rt in runtimes.items()))
        except CamwatchError:
            seen = None
        if seen is not None and seen == self._seen and now < self._due:
            return
        found = rows(store)
        self._seen = seen
        self._due = min((c.silenced_until for c in found.values() if c.silenced_until is not None),
                        default=float("inf"))
        with lock:
            for cid, rt in list(runtimes.items()):
                c = found.get(cid) or controls.Control(cid)
                was = rt.enabled
                rt.disabled_by = c.disabled_by
                pipeline.carry_out(rt, rt.observe(Monitor.controls, now, c.silenced_until, rt.enabled))
                if c.silenced_until is not None and c.silenced_until <= now:
                    try:
                        controls.set_silenced(store, cid, None, None)
                    except CamwatchError as exc:
                        log.warning("camera %s: %s", cid, scrub(str(exc)))
                if rt.enabled and not was:
                    rt.expected_at = scheduler.add_camera(rt.camera, rt.generation)
                elif was and not rt.enabled:
                    scheduler.remove_camera(cid)
                    rt.close_source()
