"""Enrolment: taking a camera's view as its reference, and re-embedding references for a new model.

A reference is the baseline every later check is judged against, so it is
only ever taken on purpose (``camwatch enroll``, or ``auto_enroll`` for a
camera that has none), never implicitly replaced. Enrolment treats the view
exactly as a check does (the camera's ROI/mask applied), and embeds the JPEG
it stores, so that re-embedding the stored image after a model change gives
the same vector as the day it was enrolled (``reembed``). The commands that
drive this are ``camwatch.cli.enroll``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from camwatch.config import CameraConfig
from camwatch.core.errors import EnrolmentError, SourceError, StoreError
from camwatch.core.types import Frame
from camwatch.sources import open_source
from camwatch.store.references import Reference, ReferenceStore, Refresh, route_of
from camwatch.vision.embedder import Embedder
from camwatch.vision.images import ImageFileError
from camwatch.vision.images import read_image_file as _decode_image_file
from camwatch.vision.prepare import MODEL_INPUT_ROUTE
from camwatch.vision.regions import apply_regions
from camwatch.vision.stats import STATS_ROUTE, view_stats

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
# A view this flat (grey standard deviation, 0..255) is a covered, dark or
# blinded camera: a reference of it would make every later check meaningless.
MIN_CONTRAST = 2.0
MIN_SIDE = 16
# Extra time given to a source beyond its own timeout before the camera is
# reported as hung; the source is supposed to bound itself, this is the backstop.
FETCH_GRACE_S = 5.0
#: How soon fetch_frames notices its stop event.
STOP_POLL_S = 0.1


@dataclass(frozen=True)
class Enrolled:
    """What one enrolment did: the new reference and those it replaced (same label)."""

    camera_id: str
    reference: Reference
    replaced: tuple[int, ...]


def encode_view(view_bgr: np.ndarray, where: str) -> tuple[bytes, np.ndarray]:
    """JPEG-encode a view and decode it back: the decoded image is what gets embedded."""
    ok, buf = cv2.imencode(".jpg", view_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EnrolmentError(f"{where}: the view cannot be encoded as JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise EnrolmentError(f"{where}: the view's JPEG cannot be decoded back")
    return buf.tobytes(), decoded


def check_view(image_bgr: np.ndarray, where: str) -> None:
    """Refuse an image that cannot serve as a reference (wrong shape, tiny, flat)."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
            or image_bgr.dtype != np.uint8:
        shape = getattr(image_bgr, "shape", None)
        raise EnrolmentError(f"{where}: expected a BGR colour image, got shape {shape}")
    h, w = image_bgr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise EnrolmentError(f"{where}: image is {w}x{h} pixels, too small to be a reference")


def _check_contrast(view_bgr: np.ndarray, where: str) -> None:
    """Refuse a flat view (covered, dark, blinded), judged on the view as embedded.

    ``apply_regions`` fills hidden pixels with the visible pixels' mean grey,
    so a mask adds no contrast of its own: a flat visible part stays flat
    however much detail lies under the mask.
    """
    grey = view_bgr.mean(axis=2)
    if float(grey.std()) < MIN_CONTRAST:
        raise EnrolmentError(
            f"{where}: the view is almost uniform (mean level {grey.mean():.0f}, no detail): covered, "
            f"dark or blinded? Not enrolled; fix the view or the ROI and enrol again")


def enrol_frame(store: ReferenceStore, embedder: Embedder, camera: CameraConfig, image_bgr: np.ndarray,
                label: str = "default") -> Enrolled:
    """Apply the camera's regions to a frame, embed it and store it as the label's reference.

    The daemon's ``auto_enroll`` uses this too, so a reference is made the same
    way whoever makes it. Replaces the camera's reference with the same label.
    """
    where = f"camera {camera.id}"
    check_view(image_bgr, where)
    view = apply_regions(image_bgr, camera.roi, camera.mask)
    _check_contrast(view, where)
    jpeg, decoded = encode_view(view, where)
    vectors = np.asarray(embedder.embed([decoded]), dtype=np.float32)
    stats = view_stats(decoded)
    ref, replaced = store.add_replacing(camera.id, label, jpeg, vectors[0],
                                        embedder.spec.identity, stats)
    return Enrolled(camera.id, ref, tuple(replaced))


# -- frames ---------------------------------------------------------------------


def read_image_file(path: str) -> np.ndarray:
    """An image file as BGR, or an EnrolmentError naming the file."""
    try:
        return _decode_image_file(path)
    except ImageFileError as exc:
        raise EnrolmentError(f"image {path}: {exc}") from None


def _fetch(camera: CameraConfig, slot: dict[str, Frame | BaseException]) -> None:
    source = None
    try:
        source = open_source(camera)
        slot["frame"] = source.read()
    except BaseException as exc:  # reported per camera by the caller
        slot["error"] = exc
    finally:
        if source is not None:
            try:
                source.close()
            except Exception:  # closing a dead camera must not lose the frame we have
                log.debug("closing %s failed", camera.id, exc_info=True)


def fetch_frames(cameras: Sequence[CameraConfig],
                 stop: threading.Event | None = None) -> dict[str, Frame | BaseException]:
    """One live frame per camera, fetched in parallel; camera id -> Frame or exception.

    Each fetch runs in its own daemon thread and is waited for at most the
    camera's timeout plus a grace, so one hung camera delays no other and
    cannot keep the command from exiting. Once ``stop`` is set (Ctrl-C) the
    waiting ends: the cameras whose fetch had not finished are left out of
    the answer, so the caller can still enrol what was captured.
    """
    slots: dict[str, dict[str, Frame | BaseException]] = {}
    threads: list[tuple[CameraConfig, threading.Thread]] = []
    for cam in cameras:
        slots[cam.id] = {}
        t = threading.Thread(target=_fetch, args=(cam, slots[cam.id]), daemon=True,
                             name=f"enrol-{cam.id}")
        t.start()
        threads.append((cam, t))
    start = time.monotonic()
    results: dict[str, Frame | BaseException] = {}
    for cam, t in threads:
        limit = float(cam.timeout or 10.0) + FETCH_GRACE_S
        deadline = start + limit
        # Short joins, so a set ``stop`` is seen within STOP_POLL_S (a signal does not end a join).
        while t.is_alive() and not (stop is not None and stop.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            t.join(min(STOP_POLL_S, left))
        slot = slots[cam.id]
        if "frame" in slot:
            results[cam.id] = slot["frame"]
        elif not t.is_alive():
            results[cam.id] = slot.get("error") or SourceError("ended", "no frame")
        elif stop is None or not stop.is_set():
            results[cam.id] = SourceError("timeout", f"no frame within {limit:.0f} s")
    return results


# -- model change -----------------------------------------------------------------


def reembed(store: ReferenceStore, embedder: Embedder, batch: int = 32) -> int:
    """Re-embed, from their stored images, references made with another model or model input route.

    Their view statistics are measured again too, as are those of references
    whose statistics came from another ``vision.stats.STATS_ROUTE``: decision
    compares a view's statistics with its reference's, so both must be measured
    alike. Everything is computed first and written in one transaction
    (``ReferenceStore.refresh``): a crash or a failing model half-way leaves every
    reference as it was. The images and labels stay; only embeddings, dims, model
    ids and statistics change (never a new baseline). Returns how many were refreshed.
    """
    model_id = embedder.spec.identity
    stale = store.stale(model_id, STATS_ROUTE)
    if not stale:
        return 0
    images = []
    for ref in stale:
        img = cv2.imdecode(np.frombuffer(ref.image_jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise StoreError(f"database {store.where}: reference {ref.id} (camera {ref.camera_id}, "
                             f"label {ref.label}) has an undecodable image; remove it and enrol the "
                             f"camera again")
        images.append(img)
    other_model = [i for i, ref in enumerate(stale)
                   if ref.model_id != model_id or route_of(ref.stats) < MODEL_INPUT_ROUTE]
    vectors: dict[int, np.ndarray] = {}
    for start in range(0, len(other_model), batch):
        chunk = other_model[start:start + batch]
        out = np.asarray(embedder.embed([images[j] for j in chunk]), dtype=np.float32)
        vectors.update(zip(chunk, out))
    store.refresh(model_id, [Refresh(ref.id, view_stats(img), vectors.get(i))
                             for i, (ref, img) in enumerate(zip(stale, images))])
    return len(stale)
