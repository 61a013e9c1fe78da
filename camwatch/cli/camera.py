"""``camwatch camera ACTION CAMERA ...``: an operator's actions from a shell, beside a running daemon.

``silence CAMERA 2h`` | ``unsilence CAMERA`` | ``disable CAMERA`` | ``enable CAMERA`` |
``add-reference CAMERA LABEL`` | ``remove-reference CAMERA ID``, each ``[--by NAME]``
(default: the login name).

The work is ``service.actions``, as in the console. The settings go into the
store and the event into events.db, the way ``camwatch enroll`` writes
references; a running daemon carries them out within 10 s
(``Daemon.apply_controls``) and delivers the event to the configured sinks.
``add-reference`` fetches one frame from the camera itself (the daemon's
latest view is in the daemon's memory only), like ``enroll``.
"""

from __future__ import annotations

import argparse
import getpass
import threading
from pathlib import Path

from camwatch.config import CameraConfig, load_config
from camwatch.core.errors import ActionError
from camwatch.service import actions
from camwatch.service.enrol import fetch_frames
from camwatch.service.sinks import build_sinks
from camwatch.store.events import Event, EventStore
from camwatch.store.references import ReferenceStore
from camwatch.vision.embedder import load_embedder

#: The actions, and the argument each takes after the camera (None: none).
ARGUMENTS = {"silence": "PERIOD", "unsilence": None, "disable": None, "enable": None,
             "add-reference": "LABEL", "remove-reference": "ID"}


def _who(given: str | None) -> str:
    if given:
        return actions.check_actor(given)
    try:
        return actions.check_actor(getpass.getuser())
    except (ActionError, OSError, KeyError):
        return "cli"


def cli_camera(args: argparse.Namespace) -> int:
    config = load_config(args.config)   # registers the file's secrets
    cam = config.camera(args.camera)    # did-you-mean for a typo
    need = ARGUMENTS[args.action]
    if need and not args.argument:
        raise ActionError(f"camera {args.action}: give the {need} after the camera (camwatch camera "
                          f"{args.action} {cam.id} {need})")
    if not need and args.argument:
        raise ActionError(f"camera {args.action}: takes no argument after the camera (got '{args.argument}')")
    who = _who(args.by)
    store = ReferenceStore(config.settings.state_dir, url=config.settings.store)
    try:
        event = _do(config.settings.model, config.settings.device, store, cam, args.action, args.argument, who)
    finally:
        store.close()
    if event is None:
        raise ActionError(f"camera {cam.id}: the view was refused (see the line above); nothing was added")
    events = EventStore(config.settings.state_dir, url=config.settings.store)
    try:
        events.record(event, [s.name for s in build_sinks(config.settings.webhooks)])
    finally:
        events.close()
    print(f"{cam.id}: {event.message}")
    return 0


def _do(model: Path | None, device: str, store: ReferenceStore, cam: CameraConfig, action: str, arg: str | None,
        who: str) -> Event | None:
    if action == "silence":
        return actions.silence(store, cam, actions.silence_period(arg or ""), who)
    if action == "unsilence":
        return actions.unsilence(store, cam, who)
    if action in ("disable", "enable"):
        return actions.set_enabled(store, cam, action == "enable", who)
    if action == "remove-reference":
        try:
            ref = int(arg or "")
        except ValueError:
            raise ActionError(f"camera remove-reference: '{arg}' is not a reference id "
                              "(see: camwatch references list)") from None
        return actions.remove_reference(store, cam, ref, who)
    label = actions.new_reference_label(store, cam, arg or "", "add")
    got = fetch_frames([cam], threading.Event()).get(cam.id)
    if isinstance(got, BaseException) or got is None:
        raise got if isinstance(got, BaseException) else ActionError(f"camera {cam.id}: no frame")
    embedder = load_embedder(str(model) if model else None, device=device)
    return actions.accept_view(store, embedder, cam, got.image, label, who, "add")
