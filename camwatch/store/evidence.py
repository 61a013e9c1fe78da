"""Evidence images: what the camera should show, what it shows, and where they differ.

A drift alert is only useful if a person can judge it in a second, so each
drift_started event gets one JPEG: the reference | the current view | a heat
map of their difference, side by side, each with a small caption (camera id,
similarity, kind) and the full time of what it shows, in UTC and in the
host's local time: a person comparing it with a recording or a guard's log
must not have to guess a date or a zone (``captions``). Captions never hold a
URL or a secret, and the JPEG is encoded by OpenCV from pixels only, so it
carries no EXIF or comment.

Files live under ``<state_dir>/evidence/``; only the newest ``keep`` are kept
(``settings.evidence.keep``) so a flapping camera cannot fill the disk.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from camwatch.core.errors import StoreError

log = logging.getLogger(__name__)

PANEL_HEIGHT = 360
#: Each caption has up to CAPTION_LINES lines (what, UTC time, local time) of CAPTION_LINE pixels.
CAPTION_LINES = 3
CAPTION_LINE = 16
CAPTION_HEIGHT = CAPTION_LINES * CAPTION_LINE + 8
JPEG_QUALITY = 85
# Difference (0..255, after a light blur) that maps to the hottest colour: a fixed
# scale, so that a tiny difference stays dark instead of being stretched to red.
DIFF_FULL_SCALE = 96.0
_NAME = re.compile(r"^[a-z0-9_-]+_\d{8}T\d{6}Z_[0-9a-f]{8}\.jpg$")


def evidence_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "evidence"


def _panel(image: np.ndarray, height: int) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def difference_map(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """A colour heat map (BGR, the reference's size) of where two views differ.

    Grey, lightly blurred (so sensor noise and JPEG blocks stay dark),
    absolute difference on a fixed scale, INFERNO colour map.
    """
    ref = reference if reference.ndim == 2 else cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY)
    cur = current if current.ndim == 2 else cv2.cvtColor(current, cv2.COLOR_BGR2GRAY)
    cur = cv2.resize(cur, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    k = max(3, (min(ref.shape[:2]) // 60) | 1)
    a = cv2.GaussianBlur(ref, (k, k), 0).astype(np.float32)
    b = cv2.GaussianBlur(cur, (k, k), 0).astype(np.float32)
    diff = np.clip(np.abs(a - b) * (255.0 / DIFF_FULL_SCALE), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(diff, cv2.COLORMAP_INFERNO)


def times(t: float) -> tuple[str, str]:
    """A moment as two caption lines: UTC, and the host's local time with its zone and offset."""
    utc = datetime.fromtimestamp(t, timezone.utc)
    local = utc.astimezone()
    zone = "".join(c for c in (local.tzname() or "") if c.isascii() and c.isprintable())
    return (utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "local " + local.strftime("%Y-%m-%d %H:%M:%S") + (f" {zone}" if zone else "")
            + local.strftime(" (UTC%z)"))


def captions(camera_id: str, when: float, similarity: float | None = None, threshold: float | None = None,
             kind: str | None = None, reference_time: float | None = None
             ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The lines of each panel's caption (reference, current view, difference), as drawn.

    Every panel states its time in full, UTC and local: the reference when it
    was enrolled, the current view and the difference when the view was seen.
    """
    reference = (f"{camera_id} reference, enrolled",
                 *(times(reference_time) if reference_time else ("at an unknown time",)))
    current = (f"{camera_id} now", *times(when))
    what = "difference"
    if similarity is not None:
        what += f"  sim {similarity:.3f}"
        if threshold is not None:
            what += f" < {threshold:.3f}" if similarity < threshold else f" / {threshold:.3f}"
    if kind:
        what += f"  {kind}"
    return reference, current, (what, *times(when))


def caption_band(lines: tuple[str, ...], width: int) -> np.ndarray:
    """The caption drawn above a panel ``width`` pixels wide: each line shrunk until it fits."""
    band = np.full((CAPTION_HEIGHT, width, 3), 32, np.uint8)
    for i, text in enumerate(lines[:CAPTION_LINES]):
        scale = 0.45
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        while tw > width - 10 and scale > 0.25:
            scale -= 0.05
            (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.putText(band, text, (5, 4 + (i + 1) * CAPTION_LINE - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return band


def compose(reference: np.ndarray, current: np.ndarray, camera_id: str, when: float,
            similarity: float | None = None, threshold: float | None = None,
            kind: str | None = None, reference_time: float | None = None) -> np.ndarray:
    """The evidence picture as a BGR array (three captioned panels side by side)."""
    ref = _panel(reference, PANEL_HEIGHT)
    cur = _panel(current, PANEL_HEIGHT)
    diff = difference_map(ref, cur)
    texts = captions(camera_id, when, similarity, threshold, kind, reference_time)
    gap = np.full((PANEL_HEIGHT + CAPTION_HEIGHT, 4, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for panel, lines in zip((ref, cur, diff), texts):
        if parts:
            parts.append(gap)
        parts.append(np.vstack([caption_band(lines, panel.shape[1]), panel]))
    return np.hstack(parts)


def write_evidence(state_dir: str | os.PathLike[str], camera_id: str, reference: np.ndarray,
                   current: np.ndarray, similarity: float | None = None,
                   threshold: float | None = None, kind: str | None = None,
                   when: float | None = None, keep: int = 500,
                   reference_time: float | None = None) -> Path:
    """Write one evidence JPEG and apply retention; return its path.

    ``reference`` and ``current`` are BGR images (the reference as stored,
    i.e. with the camera's ROI/mask applied; pass the current view with the
    same regions so the difference map compares like with like). Written to a
    temporary name and renamed, so a crash never leaves half a JPEG. Raises
    StoreError naming the directory when it cannot be written; the caller
    records the event without evidence rather than losing it.
    """
    when = time.time() if when is None else when
    out_dir = evidence_dir(state_dir)
    image = compose(reference, current, camera_id, when, similarity, threshold, kind, reference_time)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise StoreError(f"camera {camera_id}: cannot encode the evidence image")
    stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{camera_id}_{stamp}_{uuid.uuid4().hex[:8]}.jpg"
    tmp = out_dir / f".{path.name}.tmp"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(buf.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise StoreError(f"evidence dir {out_dir}: cannot write for camera {camera_id}: "
                         f"{exc.strerror or exc}") from None
    prune(out_dir, keep)
    return path


def prune(out_dir: str | os.PathLike[str], keep: int) -> int:
    """Delete all but the newest ``keep`` evidence files; return how many were deleted.

    Only files named as camwatch names them are touched; the order is by
    the UTC time in the name, then modification time.
    """
    out_dir = Path(out_dir)
    try:
        entries = [p for p in out_dir.iterdir() if _NAME.match(p.name)]
    except FileNotFoundError:
        return 0

    def key(p: Path) -> tuple[str, float]:
        try:
            mtime = p.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (p.name.rsplit("_", 2)[-2], mtime)

    entries.sort(key=key, reverse=True)
    removed = 0
    for p in entries[max(0, keep):]:
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot delete old evidence %s: %s", p, exc.strerror or exc)
    return removed
