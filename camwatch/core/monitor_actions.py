"""What a camera's monitor (core/monitor.py) asks the service to do: plain values, carried out by service/pipeline.

Why a module of its own: the state machine and the vocabulary it speaks are
read by different people (the rules, and whoever carries them out); together
they passed 500 lines. ``core.monitor`` re-exports every name here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from camwatch.core.types import CameraState, EventType


@dataclass(frozen=True)
class SetState:
    """The camera's state changed (metrics label, systemd status line). ``drift_open``: a
    drift alert is open (sent, not cleared), whatever the state: camwatch_camera_drifted."""

    state: CameraState
    drift_open: bool = False


@dataclass(frozen=True)
class CountCheck:
    """One scheduled check's result (core.types.RESULTS), and what it measured. ``threshold``
    is the camera's own, the same from check to check."""

    result: str
    similarity: float | None = None
    threshold: float | None = None
    at: float | None = None


@dataclass(frozen=True)
class Emit:
    """An event to record durably, and the line an operator reads about it.

    ``alert``: the kind counted as an alert (None for a clearing event);
    ``evidence_reference``: the reference to put beside the view in an evidence
    picture (its path then goes into ``line`` through ``with_evidence``);
    ``threshold``: the camera's own; ``details``: the cues behind the verdict
    (the event JSON's ``details``); ``line``/``level``: the log line.
    """

    type: EventType
    message: str = ""
    kind: str | None = None
    similarity: float | None = None
    threshold: float | None = None
    alert: str | None = None
    evidence_reference: int | None = None
    details: Mapping[str, float | str] = field(default_factory=dict)
    line: str = ""
    level: int = logging.INFO
    #: Unix time the camera's alerts are silenced until: recorded, not delivered (None: delivered).
    silenced_until: float | None = None


@dataclass(frozen=True)
class RecordCalibration:
    """An early view's similarity, structure distance and statistics, for the camera's calibration.

    ``doubtful``: judged drifted on its similarity alone (``calibration.consensus`` decides later).
    """

    similarity: float
    structure: float | None
    stats: object = None
    reference_id: int | None = None
    doubtful: bool = False


@dataclass(frozen=True)
class ReferencesChanged:
    """The camera's references are not the ones last judged against (refresh their metrics)."""


@dataclass(frozen=True)
class Reconnected:
    """The camera answered again after failed fetches."""


@dataclass(frozen=True)
class Silenced:
    """The camera's alerts are silenced until ``until`` (unix time), or no longer (None): the metric."""

    until: float | None


@dataclass(frozen=True)
class Note:
    """A log line about the camera; ``extra`` holds the structured fields of JSON logs."""

    level: int
    text: str
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """A check completed at ``at`` (the clock passed in): the systemd watchdog is fed only while
    checks complete."""

    at: float


Action = (SetState | CountCheck | Emit | RecordCalibration | ReferencesChanged | Reconnected | Note | Progress
          | Silenced)
