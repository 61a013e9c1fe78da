"""Enrolment: taking a camera's view as its reference, and the ``references`` command.

A reference is the baseline every later check is judged against, so it is
only ever taken on purpose (``camwatch enroll``, or ``auto_enroll`` for a
camera that has none), never implicitly replaced. Enrolment treats the view
exactly as a check does (the camera's ROI/mask applied), and embeds the JPEG
it stores, so that re-embedding the stored image after a model change gives
the same vector as the day it was enrolled.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from camwatch.core.errors import CamwatchError, ConfigError, EnrolmentError, SourceError
from camwatch.core.secrets import register_secret, scrub
from camwatch.store.references import Reference, ReferenceStore

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
# A view this flat (grey standard deviation, 0..255) is a covered, dark or
# blinded camera: a reference of it would make every later check meaningless.
MIN_CONTRAST = 2.0
MIN_SIDE = 16
# Extra time given to a source beyond its own timeout before the camera is
# reported as hung; the source is supposed to bound itself, this is the backstop.
FETCH_GRACE_S = 5.0


@dataclass(frozen=True)
class Enrolled:
    """What one enrolment did: the new reference and those it replaced (same label)."""

    camera_id: str
    reference: Reference
    replaced: tuple[int, ...]


def encode_view(view_bgr: np.ndarray, where: str) -> tuple[bytes, np.ndarray]:
    """JPEG-encode a view and decode it back: the decoded image is what gets embedded."""
    import cv2

    ok, buf = cv2.imencode(".jpg", view_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EnrolmentError(f"{where}: the view cannot be encoded as JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
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


def enrol_frame(store: ReferenceStore, embedder: Any, camera: Any, image_bgr: np.ndarray,
                label: str = "default") -> Enrolled:
    """Apply the camera's regions to a frame, embed it and store it as the label's reference.

    The daemon's ``auto_enroll`` uses this too, so a reference is made the same
    way whoever makes it. Replaces the camera's reference with the same label.
    """
    from camwatch.vision.preprocess import apply_regions, view_stats

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
    from camwatch.vision.preprocess import ImageFileError
    from camwatch.vision.preprocess import read_image_file as decode

    try:
        return decode(path)
    except ImageFileError as exc:
        raise EnrolmentError(f"image {path}: {exc}") from None


def _fetch(camera: Any, slot: dict) -> None:
    from camwatch.sources.base import open_source

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


def fetch_frames(cameras: Sequence[Any]) -> dict[str, Any]:
    """One live frame per camera, fetched in parallel; camera id -> Frame or exception.

    Each fetch runs in its own daemon thread and is waited for at most the
    camera's timeout plus a grace, so one hung camera delays no other and
    cannot keep the command from exiting.
    """
    slots: dict[str, dict] = {}
    threads: list[tuple[Any, threading.Thread]] = []
    for cam in cameras:
        slots[cam.id] = {}
        t = threading.Thread(target=_fetch, args=(cam, slots[cam.id]), daemon=True,
                             name=f"enrol-{cam.id}")
        t.start()
        threads.append((cam, t))
    start = time.monotonic()
    results: dict[str, Any] = {}
    for cam, t in threads:
        limit = float(getattr(cam, "timeout", 10.0) or 10.0) + FETCH_GRACE_S
        t.join(max(0.0, start + limit - time.monotonic()))
        slot = slots[cam.id]
        if t.is_alive():
            results[cam.id] = SourceError("timeout", f"no frame within {limit:.0f} s")
        elif "frame" in slot:
            results[cam.id] = slot["frame"]
        else:
            results[cam.id] = slot.get("error") or SourceError("ended", "no frame")
    return results


# -- CLI ------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Any:
    from camwatch.config import load_config

    config = load_config(args.config)
    for secret in getattr(config, "secrets", ()) or ():
        register_secret(secret)
    return config


def _pick_cameras(config: Any, args: argparse.Namespace) -> list[Any]:
    ids = list(args.cameras or [])
    if args.all and ids:
        raise EnrolmentError("enroll: give camera ids or --all, not both")
    if args.all:
        cams = [c for c in config.cameras if c.enabled]
        if not cams:
            raise EnrolmentError(f"enroll --all: {config.path}: no enabled camera")
        return cams
    if not ids:
        raise EnrolmentError("enroll: name the cameras to enrol (camwatch enroll CAMERA...) or use --all")
    problems: list[str] = []
    cams = []
    for cid in dict.fromkeys(ids):  # each once, in the order given
        try:
            cams.append(config.camera(cid))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return cams


def _open_store(config: Any) -> ReferenceStore:
    return ReferenceStore(config.settings.state_dir)


def _load_embedder(config: Any) -> Any:
    from camwatch.vision.embedder import load_embedder

    s = config.settings
    return load_embedder(str(s.model) if s.model else None, device=s.device,
                         require_gpu=s.require_gpu)


def _failure_line(camera: Any, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason is None:
        reason = "error" if isinstance(exc, CamwatchError) else f"unexpected {type(exc).__name__}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return scrub(f"{camera.id} ({camera.redacted_url}): {reason}: {text}")


def cli_enroll(args: argparse.Namespace) -> int:
    """``camwatch enroll CAMERA... | --all [--label L] [--image FILE]``.

    Exit 0 when every camera was enrolled, 2 when any failed (each failure
    is one line naming the camera; the others are still enrolled).
    """
    config = _load(args)
    cameras = _pick_cameras(config, args)
    label = (args.label or "").strip()
    if not label:
        raise EnrolmentError("enroll --label: a label cannot be empty")
    image = None
    if args.image:
        if len(cameras) != 1:
            raise EnrolmentError(f"enroll --image {args.image}: one image is for one camera; "
                                 f"name exactly one camera (got {len(cameras)})")
        image = read_image_file(args.image)

    store = _open_store(config)
    try:
        embedder = _load_embedder(config)
        if image is not None:
            frames: dict[str, Any] = {cameras[0].id: image}
        else:
            frames = fetch_frames(cameras)
        failed = 0
        for cam in cameras:
            got = frames[cam.id]
            try:
                if isinstance(got, BaseException):
                    raise got
                img = got if isinstance(got, np.ndarray) else got.image
                done = enrol_frame(store, embedder, cam, img, label)
            except Exception as exc:
                failed += 1
                log.debug("enrolling %s failed", cam.id, exc_info=exc)
                print(f"camwatch: {_failure_line(cam, exc)}", file=sys.stderr)
                continue
            line = f"{cam.id}: label {label}: reference {done.reference.id}"
            if done.replaced:
                line += (" (replaced reference " + ", ".join(map(str, done.replaced))
                         + f" with label {label})")
            print(line, flush=True)
    finally:
        store.close()
    if failed:
        print(f"camwatch: enrolled {len(cameras) - failed} of {len(cameras)} cameras", file=sys.stderr)
        return 2
    return 0


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _known_camera(config: Any, store: ReferenceStore, camera_id: str) -> None:
    """Accept a camera in the config or in the store (removed from the config), else did-you-mean."""
    if camera_id in store.camera_ids():
        return
    config.camera(camera_id)  # raises ConfigError naming it, with did-you-mean


def _table(refs: Sequence[Reference]) -> str:
    rows = [("ID", "CAMERA", "LABEL", "CREATED", "MODEL", "DIMS")]
    rows += [(str(r.id), r.camera_id, r.label, _fmt_time(r.created_at), r.model_id[:12], str(r.dim))
             for r in refs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def cli_references(args: argparse.Namespace) -> int:
    """``camwatch references list [--camera C] [--json]`` / ``references remove ID... | --camera C``."""
    config = _load(args)
    store = _open_store(config)
    try:
        if args.action == "list":
            return _list(config, store, args)
        return _remove(config, store, args)
    finally:
        store.close()


def _list(config: Any, store: ReferenceStore, args: argparse.Namespace) -> int:
    if args.camera:
        _known_camera(config, store, args.camera)
    refs = store.list(args.camera)
    if args.json:
        doc = [{"id": r.id, "camera": r.camera_id, "label": r.label,
                "created_at": _iso_utc(r.created_at), "created_at_unix": r.created_at,
                "model_id": r.model_id, "dims": r.dim, "stats": r.stats} for r in refs]
        print(json.dumps(doc, indent=2))
        return 0
    if not refs:
        who = f"camera {args.camera}" if args.camera else "any camera"
        print(f"no references for {who} in {store.path}; enrol with: camwatch enroll CAMERA")
        return 0
    print(_table(refs))
    return 0


def _remove(config: Any, store: ReferenceStore, args: argparse.Namespace) -> int:
    ids = list(args.ids or [])
    if ids and args.camera:
        raise EnrolmentError("references remove: give reference ids or --camera, not both")
    if not ids and not args.camera:
        raise EnrolmentError("references remove: give reference ids (see: camwatch references list) "
                             "or --camera CAMERA")
    if args.camera:
        _known_camera(config, store, args.camera)
        removed = store.remove_camera(args.camera)
        if not removed:
            print(f"{args.camera}: no references to remove")
        else:
            print(f"{args.camera}: removed {len(removed)} reference(s): "
                  + ", ".join(map(str, removed)))
        return 0
    before = {r.id: r for r in store.list()}
    for rid in store.remove(ids):
        r = before.get(rid)
        print(f"removed reference {rid}" + (f" ({r.camera_id}, label {r.label})" if r else ""))
    return 0
