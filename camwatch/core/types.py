"""The values every layer passes around: a frame, a camera's state, the kinds of drift.

Each is written once here; metrics labels, events, logs and the decision take
their vocabularies from these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

import numpy as np


@dataclass
class Frame:
    """One picture from a camera; ``captured_at`` is ``time.time()`` at arrival."""

    image: np.ndarray  # BGR uint8, HxWx3
    captured_at: float


class CameraState(str, Enum):
    """What a camera is, as the daemon last knew it (the ``state`` label in metrics)."""

    OK = "ok"
    DRIFTED = "drifted"
    UNAVAILABLE = "unavailable"
    NO_REFERENCE = "no_reference"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


#: Every state's value, in the order metrics list them.
STATES: tuple[str, ...] = tuple(s.value for s in CameraState)

#: Kinds a drifted view is named with.
KINDS: tuple[str, ...] = ("moved", "covered", "blinded", "defocused")

#: Kinds an alert can carry: a drift's kind, ``unknown`` when none was named,
#: ``unavailable`` for a camera that went down.
ALERT_KINDS: tuple[str, ...] = (*KINDS, "unknown", "unavailable")

#: Results of one scheduled check.
RESULTS: tuple[str, ...] = ("ok", "drifted", "error", "no_reference", "skipped")

#: What an event says happened (events.db, webhooks, the monitor's Emit actions).
EventType = Literal["drift_started", "drift_cleared", "camera_down", "camera_up", "reference_accepted",
                    "camera_silenced"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
