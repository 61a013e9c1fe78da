"""What an operator does from the console, carried out where the daemon's own work is done.

Accepting the current view as the reference is asked for by the console and
carried out by the pipeline's inference thread at the camera's next check: on
the frame the daemon itself fetched (the console keeps no full frame), with
the model used from its one thread, through ``enrol_frame`` like every other
reference. The result is an event naming who asked and when.
"""

from __future__ import annotations

import logging

import numpy as np

from camwatch.config import CameraConfig
from camwatch.core.errors import CamwatchError
from camwatch.core.secrets import scrub
from camwatch.service.enrol import enrol_frame
from camwatch.store.events import Event
from camwatch.store.references import ReferenceStore
from camwatch.vision.embedder import Embedder

log = logging.getLogger(__name__)


def accept_view(store: ReferenceStore, embedder: Embedder, camera: CameraConfig, image_bgr: np.ndarray,
                label: str, who: str) -> Event | None:
    """Enrol ``image_bgr`` as ``camera``'s reference ``label`` for ``who``; the event to record, or None
    (logged) when the view is refused (too dark, flat ...)."""
    try:
        done = enrol_frame(store, embedder, camera, image_bgr, label)
    except CamwatchError as exc:
        log.warning("camera %s: %s's accept of the current view was refused: %s", camera.id, who, scrub(str(exc)),
                    extra={"camera": camera.id})
        return None
    replaced = ", ".join(str(r) for r in done.replaced) or "none"
    log.info("camera %s: %s accepted the current view as reference %d ('%s'; replaced: %s)", camera.id, who,
             done.reference.id, label, replaced, extra={"camera": camera.id})
    return Event(camera_id=camera.id, type="reference_accepted",
                 message=f"{who} accepted the current view as reference '{label}'",
                 details={"by": who, "reference": str(done.reference.id), "label": label})
