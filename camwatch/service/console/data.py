"""What the console shows, read from the daemon's runtimes and stores: plain dicts ready for JSON or HTML.

Why a separate module: the pages and the API show the same facts, so they are
gathered once, here, and every value that leaves the daemon passes through
this module, where secrets are kept out: a camera's URL only ever as
``CameraConfig.redacted_url``, messages through ``scrub``, evidence files by
name only (never a machine path).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from camwatch.config import CameraConfig, Config
from camwatch.core.errors import CamwatchError
from camwatch.core.secrets import scrub
from camwatch.core.types import ACTION_EVENTS, STATES, CameraState
from camwatch.service.checks import learned_scenes
from camwatch.service.console.snapshot import BUCKET_S, thumbnail
from camwatch.service.pipeline import CameraRuntime
from camwatch.store import controls
from camwatch.store.events import SILENCED_UNTIL, Event, EventStore
from camwatch.store.evidence import evidence_dir
from camwatch.store.references import ReferenceStore

#: Order of the fleet: what needs a person first.
STATE_ORDER = ("drifted", "unavailable", "no_reference", "pending", "ok", "disabled")
#: Events shown on a camera's page (and operators' actions in its audit trail).
EVENTS_SHOWN = 20
#: Past events searched for the audit trail's operators' actions.
AUDIT_SEARCH = 500
#: Past events searched for an evidence picture asked for by event id.
EVIDENCE_SEARCH = 1000
#: Largest evidence file served (a side-by-side JPEG is ~100-300 KB).
MAX_EVIDENCE_BYTES = 8 << 20
#: Reference thumbnails kept decoded-and-shrunk (one per camera is what the fleet shows).
REF_CACHE = 2048


@dataclass
class Sources:
    """Where the console reads from: callables, since a reload replaces the daemon's config.

    ``clock`` is unix time (ages are shown against it); ``publish`` records an
    operator's event (the daemon's dispatcher); ``apply`` carries out the
    operators' settings just written to the store (``Daemon.apply_controls``).
    """

    config: Callable[[], Config | None]
    runtimes: Callable[[], dict[str, CameraRuntime]]
    references: Callable[[], ReferenceStore | None]
    events: Callable[[], EventStore | None]
    clock: Callable[[], float] = time.time
    publish: Callable[[Event], object] = lambda event: None
    apply: Callable[[], object] = lambda: None
    _thumbs: dict[int, bytes] = field(default_factory=dict, repr=False)
    _diffs: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)   # one per camera
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def camera(self, camera_id: str) -> CameraConfig | None:
        """The configured camera with this id, or None: the console never shows anything else."""
        config = self.config()
        if config is None:
            return None
        for cam in config.cameras:
            if cam.id == camera_id:
                return cam
        return None


def _state(rt: CameraRuntime | None, cam: CameraConfig) -> str:
    if not cam.enabled or (rt is not None and not rt.enabled):
        return CameraState.DISABLED.value
    if rt is None or rt.state is None:
        return "pending"
    return rt.state.value


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def camera_summary(src: Sources, cam: CameraConfig, now: float | None = None) -> dict[str, Any]:
    """One camera as the fleet shows it (GET /api/cameras)."""
    now = src.clock() if now is None else now
    rt = src.runtimes().get(cam.id)
    state = _state(rt, cam)
    last = rt.views.last if rt is not None else None
    kind = None
    if state == "drifted" and rt is not None:
        kind = rt.monitor.alert_kind or (last.kind if last else None)
    until = rt.monitor.silenced_until if rt is not None else None
    return {
        "id": cam.id,
        "name": cam.name or cam.id,
        "state": state,
        "kind": kind,
        "similarity": _round(last.similarity) if last else None,
        "threshold": _round(last.threshold) if last else None,
        "last_check_age": _round(max(0.0, now - last.checked_at), 1) if last else None,
        "checked_at": _round(last.checked_at, 3) if last else None,
        "silenced": until is not None and until > now,
        "silenced_until": _round(until, 3) if until is not None and until > now else None,
    }


def fleet(src: Sources) -> dict[str, Any]:
    """Every configured camera, what needs a person first, and the count per state."""
    config = src.config()
    cams = list(config.cameras) if config is not None else []
    now = src.clock()
    rows = [camera_summary(src, c, now) for c in cams]
    rows.sort(key=lambda r: (STATE_ORDER.index(r["state"]) if r["state"] in STATE_ORDER else len(STATE_ORDER),
                             r["id"]))
    counts = {s: 0 for s in (*STATES, "pending", "silenced")}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
        counts["silenced"] += bool(r["silenced"])
    return {"cameras": rows, "counts": counts, "total": len(rows), "time": round(now, 3)}


def camera_detail(src: Sources, cam: CameraConfig) -> dict[str, Any]:
    """One camera with its references and recent events (GET /api/cameras/{id})."""
    out = camera_summary(src, cam)
    out["url"] = cam.redacted_url
    rt = src.runtimes().get(cam.id)
    out["enabled"] = cam.enabled and (rt is None or rt.enabled)
    out["enabled_in_config"] = cam.enabled
    out["interval"] = cam.interval
    store = src.references()
    try:
        ctl = controls.get(store, cam.id) if store is not None else controls.Control(cam.id)
    except CamwatchError:
        ctl = controls.Control(cam.id)
    out["disabled_by"] = ctl.disabled_by
    out["silenced_by"] = ctl.silenced_by if out["silenced"] else None
    now = src.clock()
    refs = store.for_camera(cam.id, images=False) if store is not None else []
    out["references"] = [{"id": r.id, "label": r.label, "created_at": round(r.created_at, 3),
                          "age": round(max(0.0, now - r.created_at), 1), "model": r.model_id[:12]} for r in refs]
    events = src.events()
    try:
        recent = events.list(cam.id, limit=EVENTS_SHOWN) if events is not None else []
    except CamwatchError:
        recent = []
    out["events"] = [{"id": e.id, "type": e.type, "kind": e.kind, "similarity": _round(e.similarity),
                      "threshold": _round(e.threshold), "time": e.iso_time, "message": scrub(e.message),
                      "evidence": os.path.basename(e.evidence) if e.evidence else None,
                      "silenced": SILENCED_UNTIL in e.details}
                     for e in reversed(recent)]
    out["audit"] = audit(src, cam)
    return out


def audit(src: Sources, cam: CameraConfig) -> list[dict[str, Any]]:
    """The camera's operators' actions, newest first: what, who, when (its audit trail)."""
    events = src.events()
    try:
        found = events.list(cam.id, limit=AUDIT_SEARCH) if events is not None else []
    except CamwatchError:
        return []
    done = [e for e in reversed(found) if e.type in ACTION_EVENTS][:EVENTS_SHOWN]
    return [{"id": e.id, "type": e.type, "by": scrub(str(e.details.get("by", "?"))), "time": e.iso_time,
             "message": scrub(e.message)} for e in done]


def current_jpeg(src: Sources, cam: CameraConfig) -> tuple[str, bytes] | None:
    """(a tag for caching, the thumbnail) of the camera's latest assessed view; None before its first check."""
    rt = src.runtimes().get(cam.id)
    last = rt.views.last if rt is not None else None
    return (f"v{last.checked_at:.3f}", last.jpeg) if last is not None else None


def reference_jpeg(src: Sources, cam: CameraConfig) -> tuple[str, bytes] | None:
    """(a tag for caching, a thumbnail) of the camera's newest reference (kept by reference id); None
    when it has none."""
    store = src.references()
    if store is None:
        return None
    refs = store.for_camera(cam.id, images=False)
    if not refs:
        return None
    newest = max(refs, key=lambda r: (r.created_at, r.id))
    with src._lock:
        hit = src._thumbs.get(newest.id)
    if hit is not None:
        return f"r{newest.id}", hit
    full = store.get(newest.id)
    if full is None or not full.image_jpeg:
        return None
    image = cv2.imdecode(np.frombuffer(full.image_jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    jpeg = thumbnail(image)
    with src._lock:
        if len(src._thumbs) >= REF_CACHE:
            src._thumbs.pop(next(iter(src._thumbs)))
        src._thumbs[newest.id] = jpeg
    return f"r{newest.id}", jpeg


def evidence_jpeg(src: Sources, cam: CameraConfig, event_id: str) -> tuple[str, bytes] | None:
    """(a tag, the JPEG) of the evidence picture of one of ``cam``'s events, or None.

    Only a file the events store names for this camera's event, looked up by
    its name inside the state directory's evidence folder (never a path taken
    from the request, never a link), is served.
    """
    events, config = src.events(), src.config()
    if events is None or config is None:
        return None
    try:
        found = next((e for e in events.list(cam.id, limit=EVIDENCE_SEARCH) if e.id == event_id), None)
    except CamwatchError:
        return None
    if found is None or not found.evidence:
        return None
    name = os.path.basename(found.evidence)
    path = evidence_dir(config.settings.state_dir) / name
    if not name.startswith(f"{cam.id}_") or not name.endswith(".jpg") or path.is_symlink() or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            jpeg = f.read(MAX_EVIDENCE_BYTES + 1)
    except OSError:
        return None
    return (f"e{event_id}", jpeg) if len(jpeg) <= MAX_EVIDENCE_BYTES else None


def history(src: Sources, cam: CameraConfig) -> dict[str, Any]:
    """The camera's last 24 h of checks in five-minute points (GET /api/cameras/{id}/history)."""
    rt = src.runtimes().get(cam.id)
    now = src.clock()
    points = rt.views.series(now) if rt is not None else []
    return {"id": cam.id, "bucket_s": BUCKET_S, "time": round(now, 3),
            "points": [{"t": t, "similarity_min": s, "threshold": thr, "checks": n, "drifted": k}
                       for t, s, thr, n, k in points]}


def difference_jpeg(src: Sources, cam: CameraConfig) -> tuple[str, bytes] | None:
    """(a tag, a heat map) of where the latest view differs from the newest reference; None without both.

    Made from the two thumbnails (both the camera's view with its ROI and mask
    applied, as judged), once per new view or reference, one kept per camera.
    """
    ref, cur = reference_jpeg(src, cam), current_jpeg(src, cam)
    if ref is None or cur is None:
        return None
    tag = f"d{ref[0]}{cur[0]}"
    with src._lock:
        hit = src._diffs.get(cam.id)
    if hit is not None and hit[0] == tag:
        return hit
    a = cv2.imdecode(np.frombuffer(ref[1], np.uint8), cv2.IMREAD_GRAYSCALE)
    b = cv2.imdecode(np.frombuffer(cur[1], np.uint8), cv2.IMREAD_GRAYSCALE)
    if a is None or b is None:
        return None
    b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    diff = cv2.GaussianBlur(cv2.absdiff(a, b), (5, 5), 0)
    heat = cv2.applyColorMap(cv2.convertScaleAbs(diff, alpha=2.0), cv2.COLORMAP_INFERNO)
    made = (tag, thumbnail(heat))
    with src._lock:
        src._diffs[cam.id] = made
    return made


def scene(src: Sources, cam: CameraConfig) -> dict[str, Any]:
    """The stable/busy map of the camera's newest reference, as learned from its calibration views
    (core.scene): one letter per layout cell, rows top to bottom: ``s`` stable (textured and steady
    across the views: what a move is told by), ``b`` busy (textured, but traffic or leaves change it:
    not relied on), ``.`` flat. ``cells`` is None until the camera's scene is learned."""
    store = src.references()
    refs = store.for_camera(cam.id, images=False) if store is not None else []
    newest = max(refs, key=lambda r: (r.created_at, r.id)).id if refs else None
    bg = (learned_scenes(cam.id) or {}).get(newest) if newest is not None else None
    if bg is None or bg.textured is None or bg.stable is None:
        return {"id": cam.id, "reference": newest, "columns": None, "rows": None, "cells": None, "views": 0}
    rows = ["".join("s" if st else "b" if tx else "." for tx, st in zip(trow, srow))
            for trow, srow in zip(bg.textured.tolist(), bg.stable.tolist())]
    return {"id": cam.id, "reference": newest, "columns": len(rows[0]) if rows else 0, "rows": len(rows),
            "cells": rows, "views": bg.views}
