"""``camwatch enroll`` and ``camwatch references``: enrolment and the reference store, from a shell.

The work itself is ``camwatch.service.enrol`` (and ``store.references``);
this module picks cameras from the arguments, reports each camera on one
line and turns the outcome into an exit code.

Ctrl-C during ``enroll`` stops waiting for cameras that have not answered,
still enrols the views already captured, says which cameras were and were
not enrolled, and exits 130 (a second Ctrl-C leaves at once). Text from the
store is printed escaped: a label or id holding a newline or an ANSI escape
(written before labels were checked, or by hand) cannot forge a row or
colour the terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from camwatch.config import CameraConfig, Config, load_config
from camwatch.core.errors import CamwatchError, ConfigError, EnrolmentError, SourceError, StoreError
from camwatch.core.secrets import scrub
from camwatch.core.types import Frame
from camwatch.service.enrol import enrol_frame, fetch_frames, read_image_file
from camwatch.store.references import Reference, ReferenceStore, check_label
from camwatch.vision.embedder import Embedder, load_embedder

log = logging.getLogger(__name__)


def _pick_cameras(config: Config, args: argparse.Namespace) -> list[CameraConfig]:
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


def _open_store(config: Config) -> ReferenceStore:
    return ReferenceStore(config.settings.state_dir, url=config.settings.store)


def _load_embedder(config: Config) -> Embedder:
    s = config.settings
    return load_embedder(str(s.model) if s.model else None, device=s.device,
                         require_gpu=s.require_gpu)


def _failure_line(camera: CameraConfig, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason is None:
        reason = "error" if isinstance(exc, CamwatchError) else f"unexpected {type(exc).__name__}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # A source's error already starts with the camera's (redacted) URL: name the camera once.
    where = camera.id if isinstance(exc, SourceError) else f"{camera.id} ({camera.redacted_url})"
    return scrub(f"{where}: {reason}: {text}")


@contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """While inside, the first Ctrl-C (SIGINT) sets the event instead of raising; a second raises.

    The handler only sets the event: nothing in the main thread ever holds its lock.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop      # signals go to the main thread only; nothing to install
        return

    def on_int(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_int)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _label(raw: str | None) -> str:
    try:
        return check_label((raw or "").strip())
    except StoreError as exc:
        raise EnrolmentError(f"enroll --label: {exc}") from None


def cli_enroll(args: argparse.Namespace) -> int:
    """``camwatch enroll CAMERA... | --all [--label L] [--image FILE]``.

    Exit 0 when every camera was enrolled, 2 when any failed (each failure
    is one line naming the camera; the others are still enrolled), 130 when
    interrupted (what was captured is enrolled; a line names who was and was not).
    """
    config = load_config(args.config)  # registers the file's secrets
    cameras = _pick_cameras(config, args)
    label = _label(args.label)
    image = None
    if args.image:
        if len(cameras) != 1:
            raise EnrolmentError(f"enroll --image {args.image}: one image is for one camera; "
                                 f"name exactly one camera (got {len(cameras)})")
        image = read_image_file(args.image)

    enrolled: list[str] = []
    failed = 0
    with _interruptible() as stop:
        store = _open_store(config)
        try:
            embedder = _load_embedder(config)
            frames: dict[str, Frame | BaseException] = (
                {cameras[0].id: Frame(image, time.time())} if image is not None
                else {} if stop.is_set() else fetch_frames(cameras, stop))
            for cam in cameras:
                got = frames.get(cam.id)
                if got is None:
                    continue        # interrupted before its frame came
                try:
                    if isinstance(got, BaseException):
                        raise got
                    done = enrol_frame(store, embedder, cam, got.image, label)
                except Exception as exc:
                    failed += 1
                    log.debug("enrolling %s failed", cam.id, exc_info=exc)
                    print(f"camwatch: {_failure_line(cam, exc)}", file=sys.stderr)
                    continue
                enrolled.append(cam.id)
                line = f"{cam.id}: label {label}: reference {done.reference.id}"
                if done.replaced:
                    line += (" (replaced reference " + ", ".join(map(str, done.replaced))
                             + f" with label {label})")
                print(line, flush=True)
        except KeyboardInterrupt:
            stop.set()              # a second Ctrl-C: what is enrolled stays enrolled; say so
        finally:
            store.close()
    if stop.is_set():
        left = [c.id for c in cameras if c.id not in enrolled]
        print(f"camwatch: interrupted: enrolled {', '.join(enrolled) or 'none'}"
              + (f"; not {', '.join(left)}" if left else ""), file=sys.stderr, flush=True)
        return 130
    if failed:
        print(f"camwatch: enrolled {len(cameras) - failed} of {len(cameras)} cameras", file=sys.stderr)
        return 2
    return 0


def _shown(text: str) -> str:
    """Text from the store as printed: anything unprintable (newline, ESC, bidi controls) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _known_camera(config: Config, store: ReferenceStore, camera_id: str) -> None:
    """Accept a camera in the config or in the store (removed from the config), else did-you-mean."""
    if camera_id in store.camera_ids():
        return
    config.camera(camera_id)  # raises ConfigError naming it, with did-you-mean


def _table(refs: Sequence[Reference]) -> str:
    rows = [("ID", "CAMERA", "LABEL", "CREATED", "MODEL", "DIMS")]
    rows += [(str(r.id), _shown(r.camera_id), _shown(r.label), _fmt_time(r.created_at),
              _shown(r.model_id[:12]), str(r.dim)) for r in refs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def cli_references(args: argparse.Namespace) -> int:
    """``camwatch references list [--camera C] [--json]`` / ``references remove ID... | --camera C``."""
    config = load_config(args.config)  # registers the file's secrets
    store = _open_store(config)
    try:
        if args.action == "list":
            return _list(config, store, args)
        return _remove(config, store, args)
    finally:
        store.close()


def _list(config: Config, store: ReferenceStore, args: argparse.Namespace) -> int:
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
        who = f"camera {_shown(args.camera)}" if args.camera else "any camera"
        print(f"no references for {who} in {store.where}; enrol with: camwatch enroll CAMERA")
        return 0
    print(_table(refs))
    return 0


def _remove(config: Config, store: ReferenceStore, args: argparse.Namespace) -> int:
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
            print(f"{_shown(args.camera)}: no references to remove")
        else:
            print(f"{_shown(args.camera)}: removed {len(removed)} reference(s): "
                  + ", ".join(map(str, removed)))
        return 0
    before = {r.id: r for r in store.list()}
    for rid in store.remove(ids):
        r = before.get(rid)
        print(f"removed reference {rid}" + (f" ({_shown(r.camera_id)}, label {_shown(r.label)})" if r else ""))
    return 0
