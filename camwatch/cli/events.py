"""``camwatch events``: the event history and each event's delivery state, for a person or a script."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

from camwatch.config import load_config, parse_duration
from camwatch.core.errors import CamwatchError
from camwatch.core.secrets import scrub
from camwatch.store.events import DB_NAME, Event, EventStore


def parse_since(text: str, now: float | None = None) -> float:
    """``2h``/``30m``/``3d``/``1h30m`` (ago) or an ISO time (naive = local time) -> unix seconds.

    A bare number is not taken for seconds: ``20240501`` is a date.
    """
    now = time.time() if now is None else now
    if not text.strip().replace(".", "", 1).isdigit():
        try:
            return now - parse_duration(text)
        except ValueError:
            pass  # not a duration: perhaps a time
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CamwatchError(f"--since {text!r}: expected a duration such as 30m, 2h, 3d "
                            f"or an ISO time such as 2024-05-01T08:00") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.timestamp()


def _json_doc(event: Event, store: EventStore | None) -> dict[str, object]:
    doc = event.payload()
    doc.pop("idempotency_key", None)
    doc["deliveries"] = {d.sink: ({"delivered": True} if d.delivered_at else
                                  {"delivered": False, "attempts": d.attempts, "last_error": d.last_error})
                         for d in (store.deliveries(event.id) if store else [])}
    return doc


def _line(event: Event, store: EventStore | None) -> str:
    local = datetime.fromtimestamp(event.time).astimezone().isoformat(timespec="seconds")
    sim = (f"  similarity {event.similarity:.3f}/{event.threshold:.3f}"
           if event.similarity is not None and event.threshold is not None else "")
    pending = [d.sink for d in store.deliveries(event.id) if d.delivered_at is None] if store else []
    extra = f"  (pending: {', '.join(pending)})" if pending else ""
    kind = f" {event.kind}" if event.kind else ""
    message = f"  {event.message}" if event.message else ""
    return scrub(f"{local}  {event.camera_id:<16} {event.type}{kind}{sim}{message}{extra}")


def _print(store: EventStore | None, events: list[Event], camera: str | None, since: float | None,
           as_json: bool) -> None:
    if as_json:
        print(json.dumps({"events": [_json_doc(e, store) for e in events]}, indent=2))
    elif not events:
        print("no events" + (f" for camera {camera}" if camera else "")
              + (" in that period" if since is not None else ""))
    else:
        for e in events:
            print(_line(e, store))


def cli_events(args: argparse.Namespace) -> int:
    """``camwatch events [--camera C] [--since 2h|ISO] [--json] [--limit N]``."""
    config = load_config(args.config)
    since = parse_since(args.since) if getattr(args, "since", None) else None
    camera = getattr(args, "camera", None)
    path = Path(config.settings.state_dir) / DB_NAME
    if not config.settings.store and not path.exists():
        if camera:
            config.camera(camera)  # an unknown id is an error even with no events yet
        _print(None, [], camera, since, getattr(args, "json", False))
        return 0
    store = EventStore(config.settings.state_dir, url=config.settings.store, create=False)
    try:
        events = store.list(camera, since, getattr(args, "limit", 200))
        if camera and not events:
            config.camera(camera)  # unknown and never seen: error with did-you-mean
        _print(store, events, camera, since, getattr(args, "json", False))
    finally:
        store.close()
    return 0
