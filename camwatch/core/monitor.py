"""One camera between two checks: a pure state machine, the clock passed in.

Why a module of its own, and why pure: what a camera *is* (ok, drifted,
unavailable...) and which alerts it owes are the daemon's most consequential
decisions, and they used to be spread over the scheduler, the inference
thread and twenty mutable fields, testable only through a running daemon on
the wall clock. Here each observation of a check (a fetch that failed, a
frame, no reference, a verdict) goes in with ``now``, and what the service must
do comes out as plain ``Action`` values: events to record, the state to show,
checks to count, lines to log. Nothing here touches a socket, a file, a
metric or the clock, so tests/test_monitor.py drives it with a fake clock in
milliseconds.

The rules, in one place:

* ``confirm`` drifted verdicts in a row raise drift_started, ``recover`` good
  ones in a row clear it (``Hysteresis``): one odd frame neither alerts nor clears.
* ``down_after`` failed fetches in a row send camera_down; the next frame sends
  camera_up. A failing camera is retried after a growing delay (``Backoff``,
  full jitter), never given up on.
* A drift stays open while the camera is unavailable (and across a restart,
  see ``open_alerts``): its clearing event is still owed, and no second alert.
* New references (a deliberate re-enrolment) start the hysteresis afresh:
  the camera is judged as ok again until ``confirm`` verdicts say otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from camwatch.core.backoff import Backoff
from camwatch.core.types import CameraState, EventType

#: Consecutive failed fetches before a camera_down event (one failure is a hiccup).
DOWN_AFTER_FAILURES = 2
#: Backoff of a failing camera: first retry after up to this many seconds...
BACKOFF_BASE_S = 1.0
#: ...growing to at most this many check intervals (and never less than the floor).
BACKOFF_CAP_INTERVALS = 4
BACKOFF_CAP_FLOOR_S = 10.0



@dataclass
class Hysteresis:
    """Confirm/recover state machine for one camera.

    ``confirm`` drifted checks in a row raise the alert; ``recover`` good
    checks in a row clear it. A single odd frame (a bird on the lens, a
    dropped I-frame) neither alerts nor clears. ``update`` returns the
    confirmed state: True while the camera counts as drifted.
    """

    confirm: int = 3
    recover: int = 2
    drifted: bool = False
    _run: int = dataclasses.field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.confirm = max(1, int(self.confirm))
        self.recover = max(1, int(self.recover))

    def update(self, drifted: bool) -> bool:
        """Feed one check's verdict; returns whether the camera is (still) in the drifted state."""
        if bool(drifted) == self.drifted:
            self._run = 0          # agrees with the state: any run towards a change is broken
            return self.drifted
        self._run += 1
        if self._run >= (self.recover if self.drifted else self.confirm):
            self.drifted = not self.drifted
            self._run = 0
        return self.drifted

    def reset(self) -> None:
        """Forget everything (new references: the camera starts as ok)."""
        self.drifted = False
        self._run = 0


# -- what goes in ---------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A camera's settings that the state machine follows (from its CameraConfig)."""

    confirm: int = 3
    recover: int = 2
    #: Seconds between checks: a dead camera is retried at most every few of them.
    interval: float = 60.0
    down_after: int = DOWN_AFTER_FAILURES


class VerdictFields(Protocol):
    """What the monitor reads of a check's verdict (core.decision.Verdict has these)."""

    @property
    def similarity(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def drifted(self) -> bool: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def reference_id(self) -> int | None: ...
    @property
    def structure(self) -> float | None: ...


@dataclass(frozen=True)
class Assessed:
    """A check that judged a view against the camera's references.

    ``camera_threshold`` is the camera's threshold before the structure cue
    moved it (``verdict.threshold`` is the one the view was held to);
    ``calibrating``: the camera is still collecting its early benign samples.
    """

    verdict: VerdictFields
    reference_ids: frozenset[int]
    at: float                                  # unix time the frame was captured
    camera_threshold: float
    threshold_source: str = "model"
    calibrating: bool = False
    structure_scale: float | None = None


# -- what comes out -------------------------------------------------------------------


@dataclass(frozen=True)
class SetState:
    """The camera's state changed (metrics label, systemd status line)."""

    state: CameraState


@dataclass(frozen=True)
class CountCheck:
    """One scheduled check's result (core.types.RESULTS), and what it measured."""

    result: str
    similarity: float | None = None
    threshold: float | None = None
    at: float | None = None


@dataclass(frozen=True)
class Emit:
    """An event to record durably. ``alert``: the kind counted as an alert (None for a clearing
    event); ``evidence_reference``: the reference to put beside the view in an evidence picture."""

    type: EventType
    message: str = ""
    kind: str | None = None
    similarity: float | None = None
    threshold: float | None = None
    alert: str | None = None
    evidence_reference: int | None = None


@dataclass(frozen=True)
class RecordCalibration:
    """A benign early view's similarity and structure distance, for the camera's calibration."""

    similarity: float
    structure: float | None


@dataclass(frozen=True)
class ReferencesChanged:
    """The camera's references are not the ones last judged against (refresh their metrics)."""


@dataclass(frozen=True)
class Reconnected:
    """The camera answered again after failed fetches."""


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


Action = SetState | CountCheck | Emit | RecordCalibration | ReferencesChanged | Reconnected | Note | Progress


@dataclass(frozen=True)
class OpenAlerts:
    """Alerts a camera still owes a clearing event for."""

    drift: bool = False
    down: bool = False


def open_alerts(event_types: Iterable[str]) -> OpenAlerts:
    """What a camera's recorded events (oldest first) leave open.

    The monitor lives in memory only; without this a restart after a drift
    (or a kill -9) would never send drift_cleared, and would alert the same
    drift twice.
    """
    drift = down = False
    for t in event_types:
        if t in ("drift_started", "drift_cleared"):
            drift = t == "drift_started"
        elif t in ("camera_down", "camera_up"):
            down = t == "camera_down"
    return OpenAlerts(drift, down)


def _backoff(policy: Policy) -> Backoff:
    """A dead camera is retried less often (at most every few intervals), never given up on."""
    return Backoff(base=BACKOFF_BASE_S, cap=max(BACKOFF_CAP_FLOOR_S, BACKOFF_CAP_INTERVALS * policy.interval))


def _structure_note(a: Assessed) -> str:
    """Why a view's threshold differs from the camera's, for the alert line; "" when it does not."""
    v, base = a.verdict, a.camera_threshold
    if v.structure is None or a.structure_scale is None or abs(v.threshold - base) < 1e-3:
        return ""
    way = "raised" if v.threshold > base else "lowered"
    return (f" (the camera's {base:.3f}, {way} by the view's structure: distance {v.structure:.3f} "
            f"against its scale {a.structure_scale:.3f})")


# -- the state machine ---------------------------------------------------------------------


@dataclass
class Monitor:
    """One camera's state and the alerts it owes; each observation returns the actions to carry out.

    ``state`` is None until the first check (``pending`` in the status line).
    Not thread-safe: the service lets one check of a camera run at a time.
    """

    camera_id: str
    policy: Policy = field(default_factory=Policy)
    enabled: bool = True
    opened: OpenAlerts = field(default_factory=OpenAlerts)
    state: CameraState | None = None
    failures: int = 0                     # consecutive failed fetches
    retry_at: float = 0.0                 # checks are skipped until then (the clock passed in)
    hint_logged: bool = False             # "no reference; enrol it with" said once per episode
    reference_ids: frozenset[int] = frozenset()
    hysteresis: Hysteresis = field(init=False)
    drift_open: bool = field(init=False)  # drift_started sent, drift_cleared not yet
    down: bool = field(init=False)        # camera_down sent, camera_up not yet
    backoff: Backoff = field(init=False)  # a test may swap it for one without jitter

    def __post_init__(self) -> None:
        self.drift_open, self.down = self.opened.drift, self.opened.down
        self.hysteresis = Hysteresis(self.policy.confirm, self.policy.recover, drifted=self.drift_open)
        self.backoff = _backoff(self.policy)
        if not self.enabled:
            self.state = CameraState.DISABLED

    def carried_over(self, policy: Policy, enabled: bool = True) -> Monitor:
        """A fresh monitor for this camera's changed settings, still owing what this one owes."""
        return Monitor(self.camera_id, policy, enabled, OpenAlerts(self.drift_open, self.down))

    def due(self, now: float) -> bool:
        """False while a failing camera waits for its next retry."""
        return now >= self.retry_at

    # ---- observations ------------------------------------------------------------
    def outside_hours(self, now: float) -> list[Action]:
        """A check fell outside the camera's active hours: counted, nothing fetched."""
        return [CountCheck("skipped"), Progress(now)]

    def fetch_failed(self, now: float, reason: str, message: str) -> list[Action]:
        """No frame (``message``: already scrubbed of secrets)."""
        self.failures += 1
        delay = self.backoff.next_delay()
        self.retry_at = now + delay
        out: list[Action] = [CountCheck("error")]
        if self.state != CameraState.UNAVAILABLE:
            out.append(Note(logging.WARNING, f"camera {self.camera_id} unavailable: {message} "
                                             f"(retrying in {delay:.1f} s)", {"reason": reason}))
        else:
            out.append(Note(logging.DEBUG, f"camera {self.camera_id} still unavailable: {message}"))
        out += self._become(CameraState.UNAVAILABLE)
        if self.failures >= self.policy.down_after and not self.down:
            self.down = True
            out.append(Emit("camera_down", f"{self.failures} failed fetches: {message}", alert="unavailable"))
        out.append(Progress(now))
        return out

    def fetched(self, now: float) -> list[Action]:
        """A frame arrived (it is judged next: ``no_reference`` or ``assessed``)."""
        self.backoff.reset()
        self.retry_at = 0.0
        out: list[Action] = []
        if self.failures:
            out += [Note(logging.INFO, f"camera {self.camera_id} reachable again after "
                                       f"{self.failures} failed fetch(es)"), Reconnected()]
        self.failures = 0
        if self.down:
            self.down = False
            out.append(Emit("camera_up"))
        return out

    def no_reference(self, now: float, at: float | None, enrol_refused: bool = False) -> list[Action]:
        """The camera has no reference to judge by. ``enrol_refused``: auto_enroll turned the
        frame down (the service logged why; no hint, and the check does not count as progress)."""
        if enrol_refused:
            return [CountCheck("no_reference", at=at), *self._become(CameraState.NO_REFERENCE)]
        out: list[Action] = [CountCheck("no_reference", at=at)]
        if not self.hint_logged:
            out.append(Note(logging.WARNING, f"camera {self.camera_id} has no reference; enrol it with: "
                                             f"camwatch enroll {self.camera_id}"))
            self.hint_logged = True
        return out + self._become(CameraState.NO_REFERENCE) + [Progress(now)]

    def assessed(self, now: float, a: Assessed) -> list[Action]:
        """A verdict: hysteresis, then the state change's events."""
        v = a.verdict
        cid = self.camera_id
        self.hint_logged = False
        out: list[Action] = []
        if self.reference_ids and a.reference_ids != self.reference_ids:
            # Enrolled anew (e.g. after a deliberate move): judge afresh from this check.
            out += [Note(logging.INFO, f"camera {cid}: references changed; hysteresis starts afresh"),
                    ReferencesChanged()]
            self.hysteresis.reset()
        self.reference_ids = a.reference_ids
        if a.calibrating and not v.drifted:
            out.append(RecordCalibration(v.similarity, v.structure))
        confirmed = self.hysteresis.update(bool(v.drifted))
        out.append(CountCheck("drifted" if v.drifted else "ok", v.similarity, v.threshold, a.at))
        extra = {"similarity": round(float(v.similarity), 4), "threshold": round(v.threshold, 4),
                 "kind": v.kind, "structure": None if v.structure is None else round(float(v.structure), 4)}
        out.append(Note(logging.DEBUG, f"camera {cid}: similarity {v.similarity:.3f} threshold {v.threshold:.3f} "
                                       f"({a.threshold_source})" + (f" looks {v.kind}" if v.drifted else ""), extra))
        new_state = CameraState.DRIFTED if confirmed else CameraState.OK
        if confirmed and not self.drift_open:
            self.drift_open = True
            out += [Note(logging.WARNING, f"camera {cid} DRIFTED ({v.kind}): similarity {v.similarity:.3f} "
                                          f"below threshold {v.threshold:.3f}{_structure_note(a)}", extra),
                    Emit("drift_started", f"reference {v.reference_id}", kind=v.kind, similarity=v.similarity,
                         threshold=v.threshold, alert=v.kind, evidence_reference=v.reference_id)]
        elif not confirmed and self.drift_open:
            self.drift_open = False
            out += [Note(logging.INFO, f"camera {cid} back to its enrolled view: similarity {v.similarity:.3f} "
                                       f"(threshold {v.threshold:.3f})", extra),
                    Emit("drift_cleared", similarity=v.similarity, threshold=v.threshold)]
        elif self.state in (None, CameraState.UNAVAILABLE, CameraState.NO_REFERENCE) and new_state == CameraState.OK:
            out.append(Note(logging.INFO, f"camera {cid} ok: similarity {v.similarity:.3f} "
                                          f"(threshold {v.threshold:.3f})", extra))
        return out + self._become(new_state) + [Progress(now)]

    def _become(self, state: CameraState) -> list[Action]:
        if self.state == state:
            return []
        self.state = state
        return [SetState(state)]
