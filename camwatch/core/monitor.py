"""One camera between two checks: a pure state machine, the clock passed in.

Why a module of its own, and why pure: what a camera *is* (ok, drifted,
unavailable...) and which alerts it owes are the daemon's most consequential
decisions, and they used to be spread over the scheduler, the inference
thread and twenty mutable fields, testable only through a running daemon on
the wall clock. Here each observation of a check (a fetch that failed, a
frame, no reference, a verdict, a skipped run) goes in with ``now``, and what
the service must do comes out as plain ``Action`` values: events to record,
the state to show, checks to count, lines to log. Nothing here touches a
socket, a file, a metric or the clock, so tests/test_monitor.py drives it with
a fake clock in milliseconds.

The rules, in one place:

* ``confirm`` drifted verdicts in a row raise drift_started, ``recover`` good
  ones in a row clear it (``Hysteresis``): one odd frame neither alerts nor clears.
* ``down_after`` failed fetches in a row send camera_down; the next frame sends
  camera_up. A failing camera is retried after a growing delay (``Backoff``,
  full jitter), never given up on.
* A drift stays open while the camera is unavailable or has no reference (and
  across a restart, see ``open_alerts``): its clearing event is still owed, no
  second alert, and ``SetState.drift_open`` keeps saying so (the
  ``camwatch_camera_drifted`` gauge stays 1 beside ``state="unavailable"``).
  Only ``recover`` good checks clear it: an outage confirms nothing.
* An open alert keeps its kind. The kind it opens with is the one named most
  often over the checks that confirmed it; a different kind named on ``confirm``
  drifted checks in a row is a real change, told as a NEW drift_started with
  the new kind (message ``kind changed from X to Y``), not a flip of the open
  one. Not a drift_cleared + drift_started pair: a clear tells receivers the
  view is back to normal, which it is not; and not a new event type, which
  every receiver would have to learn. One drift_cleared closes the alert
  whatever kinds it went through (``open_alerts`` already reads it so).
* New references (a deliberate re-enrolment) start the hysteresis afresh:
  the camera is judged as ok again until ``confirm`` verdicts say otherwise.
* One threshold per camera is shown to people (log lines, metrics, events):
  the camera's own (``Assessed.camera_threshold``: configured, calibrated or
  the model's). The threshold a view was actually held to moves from check to
  check with the structure cue; it goes to DEBUG lines and the event's details.
* An operator may silence a camera's alerts until a time (maintenance): it is
  still checked and its state still moves, but every event it owes meanwhile
  carries ``Emit.silenced_until`` (recorded, told by the log sink only,
  not counted as an alert). ``controls`` is told the operators' settings; when
  the time has passed it says so once (camera_unsilenced, by ``camwatch``).
  A disabled camera is not checked and shows ``disabled``.
* A skipped run of a camera's check is counted every time; a skip that says
  something is wrong (the previous check still running, inference behind) is
  logged once, and again only after the checks ran on time and it recurs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from camwatch.core.backoff import Backoff
from camwatch.core.lines import (
    VerdictFields,
    cue_details,
    cue_text,
    explanation,
    match,
    plural,
    without_camera,
)
from camwatch.core.monitor_actions import (
    Action,
    CountCheck,
    Emit,
    Note,
    Progress,
    Reconnected,
    RecordCalibration,
    ReferencesChanged,
    SetState,
    Silenced,
)
from camwatch.core.types import CameraState

__all__ = ["Action", "Assessed", "CountCheck", "Emit", "Hysteresis", "Monitor", "Note", "OpenAlerts", "Policy",
           "Progress", "Reconnected", "RecordCalibration", "ReferencesChanged", "SetState", "Silenced",
           "open_alerts"]

#: Consecutive failed fetches before a camera_down event (one failure is a hiccup).
DOWN_AFTER_FAILURES = 2
#: Backoff of a failing camera: first retry after up to this many seconds...
BACKOFF_BASE_S = 1.0
#: ...growing to at most this many check intervals (and never less than the floor).
BACKOFF_CAP_INTERVALS = 4
BACKOFF_CAP_FLOOR_S = 10.0

#: Why a scheduled check did not run (the argument of ``Monitor.skipped``): the previous
#: check of the camera is still running (``busy``), too many frames wait for inference
#: (``overload``), a failing camera waits for its retry (``backoff``).
SKIP_REASONS = ("busy", "overload", "backoff")
#: Skips worth a log line (once per episode): they mean checks come less often than configured.
_SKIPS_SAID = ("busy", "overload")


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
    #: The view's statistics, kept with a calibration sample (the camera's learned scene is made of them).
    stats: object = None


class RecordedEvent(Protocol):
    """What ``open_alerts`` reads of a recorded event (store.events.Event has these)."""

    @property
    def type(self) -> str: ...
    @property
    def kind(self) -> str | None: ...



@dataclass(frozen=True)
class OpenAlerts:
    """Alerts a camera still owes a clearing event for; ``kind``: the open drift's latest kind."""

    drift: bool = False
    down: bool = False
    kind: str | None = None


def open_alerts(events: Iterable[RecordedEvent | str]) -> OpenAlerts:
    """What a camera's recorded events (oldest first; events or their type names) leave open.

    The monitor lives in memory only; without this a restart after a drift
    (or a kill -9) would never send drift_cleared, would alert the same drift
    twice, and would not know the kind the open alert was told with.
    """
    drift = down = False
    kind: str | None = None
    for e in events:
        t, k = (e, None) if isinstance(e, str) else (e.type, e.kind)
        if t in ("drift_started", "drift_cleared"):
            drift = t == "drift_started"
            kind = k if drift else None
        elif t in ("camera_down", "camera_up"):
            down = t == "camera_down"
    return OpenAlerts(drift, down, kind)


def _backoff(policy: Policy) -> Backoff:
    """A dead camera is retried less often (at most every few intervals), never given up on."""
    return Backoff(base=BACKOFF_BASE_S, cap=max(BACKOFF_CAP_FLOOR_S, BACKOFF_CAP_INTERVALS * policy.interval))


def _shown(kind: str) -> str:
    """A kind as an alert line shouts it; a drift no kind was named for is DRIFTED."""
    return "DRIFTED" if kind == "unknown" else kind.upper()


def _majority(kinds: list[str]) -> str:
    """The kind named most often; on a tie, the one named last (the freshest look)."""
    counts = Counter(kinds)
    best = max(counts.values())
    return next(k for k in reversed(kinds) if counts[k] == best)


# -- the state machine ---------------------------------------------------------------------


@dataclass
class Monitor:
    """One camera's state and the alerts it owes; each observation returns the actions to carry out.

    ``state`` is None until the first check (``pending`` in the status line).
    Not thread-safe: the service serialises the calls for one camera.
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
    silenced_until: float | None = None   # unix time an operator silenced its alerts until
    hysteresis: Hysteresis = field(init=False)
    drift_open: bool = field(init=False)  # drift_started sent, drift_cleared not yet
    alert_kind: str | None = field(init=False)  # the kind the open drift was last told with
    down: bool = field(init=False)        # camera_down sent, camera_up not yet
    backoff: Backoff = field(init=False)  # a test may swap it for one without jitter
    skips_said: set[str] = field(default_factory=set, init=False)   # skip reasons logged this episode
    _skipped_since_run: bool = field(default=False, init=False, repr=False)
    _run_kinds: list[str] = field(default_factory=list, init=False, repr=False)  # kinds of the drifted run
    _change: tuple[str | None, int] = field(default=(None, 0), init=False, repr=False)  # another kind, run

    def __post_init__(self) -> None:
        self.drift_open, self.down = self.opened.drift, self.opened.down
        self.alert_kind = self.opened.kind if self.opened.drift else None
        self.hysteresis = Hysteresis(self.policy.confirm, self.policy.recover, drifted=self.drift_open)
        self.backoff = _backoff(self.policy)
        if not self.enabled:
            self.state = CameraState.DISABLED

    def carried_over(self, policy: Policy, enabled: bool = True) -> Monitor:
        """A fresh monitor for this camera's changed settings, still owing what this one owes."""
        return Monitor(self.camera_id, policy, enabled, OpenAlerts(self.drift_open, self.down, self.alert_kind),
                       silenced_until=self.silenced_until)

    def due(self, now: float) -> bool:
        """False while a failing camera waits for its next retry."""
        return now >= self.retry_at

    # ---- operators' settings -------------------------------------------------------
    def controls(self, wall: float, silenced_until: float | None, enabled: bool) -> list[Action]:
        """The operators' settings for this camera as the store holds them; ``wall`` is unix time.

        A silence whose time has passed (``silenced_until <= wall``) ends with a
        camera_unsilenced event: the store still holds it until the service
        clears it, so the end is said even when the daemon was down at the time.
        """
        out: list[Action] = []
        cid = self.camera_id
        if silenced_until is not None and silenced_until <= wall:
            self.silenced_until = None
            out += [Silenced(None),
                    Emit("camera_unsilenced", "the silence ran out; alerts are delivered again",
                         details={"by": "camwatch", "until": round(silenced_until, 3)},
                         line=f"camera {cid}: its alerts' silence ran out; alerts are delivered again")]
        elif silenced_until != self.silenced_until:
            self.silenced_until = silenced_until
            out.append(Silenced(silenced_until))
        if enabled != self.enabled:
            self.enabled = enabled
            if enabled:
                self.state, self.failures, self.retry_at = None, 0, 0.0
                self.backoff.reset()
                out.append(Note(logging.INFO, f"camera {cid}: enabled by an operator; checks resume"))
            else:
                out.append(Note(logging.INFO, f"camera {cid}: disabled by an operator; not checked"))
                out += self._become(CameraState.DISABLED)
        return out

    def _quiet(self, out: list[Action]) -> list[Action]:
        """Events owed while silenced are marked so (recorded, not delivered, not counted as alerts)."""
        if self.silenced_until is None:
            return out
        return [dataclasses.replace(a, silenced_until=self.silenced_until) if isinstance(a, Emit) else a
                for a in out]

    # ---- observations ------------------------------------------------------------
    def outside_hours(self, now: float) -> list[Action]:
        """A check fell outside the camera's active hours: counted, nothing fetched."""
        return [CountCheck("skipped"), Progress(now)]

    def skipped(self, now: float, reason: str, why: str = "") -> list[Action]:
        """A scheduled check did not run (``reason``: one of SKIP_REASONS; ``why``: the words
        for the log line, from the service that knows the camera's settings).

        Counted every time; ``busy`` and ``overload`` logged once per episode: the
        library's own warning every interval was noise nobody acted on, one line with
        the cause is the signal.
        """
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; expected one of {', '.join(SKIP_REASONS)}")
        out: list[Action] = [CountCheck("skipped")]
        if reason in _SKIPS_SAID:
            self._skipped_since_run = True
            if reason not in self.skips_said:
                self.skips_said.add(reason)
                out.append(Note(logging.WARNING, f"camera {self.camera_id}: checks skipped"
                                + (f": {why}" if why else "") + "; counted in camwatch_checks_total"
                                '{result="skipped"}; said again only if it recurs after checks run on time',
                                {"reason": reason}))
        return out

    def _ran(self) -> None:
        """A check ran; two in a row with no skip between end a skip episode."""
        if not self._skipped_since_run:
            self.skips_said.clear()
        self._skipped_since_run = False

    def fetch_failed(self, now: float, reason: str, message: str) -> list[Action]:
        """No frame (``message``: already scrubbed of secrets)."""
        self._ran()
        self.failures += 1
        delay = self.backoff.next_delay()
        self.retry_at = now + delay
        cid = self.camera_id
        detail = without_camera(message, cid)
        out: list[Action] = [CountCheck("error")]
        if self.state != CameraState.UNAVAILABLE:
            owed = "; its drift alert stays open" if self.drift_open else ""
            out.append(Note(logging.WARNING, f"camera {cid}: unavailable: {detail} "
                                             f"(retrying in {delay:.1f} s{owed})", {"reason": reason}))
        else:
            out.append(Note(logging.DEBUG, f"camera {cid}: still unavailable: {detail}"))
        out += self._become(CameraState.UNAVAILABLE)
        if self.failures >= self.policy.down_after and not self.down:
            self.down = True
            fails = plural(self.failures, "failed fetch", "failed fetches")
            out.append(Emit("camera_down", f"{fails}: {detail}", alert="unavailable",
                            line=f"camera {cid}: DOWN after {fails} ({detail})", level=logging.WARNING))
        out.append(Progress(now))
        return self._quiet(out)

    def fetched(self, now: float) -> list[Action]:
        """A frame arrived (it is judged next: ``no_reference`` or ``assessed``)."""
        self._ran()
        self.backoff.reset()
        self.retry_at = 0.0
        out: list[Action] = []
        after = f" after {plural(self.failures, 'failed fetch', 'failed fetches')}" if self.failures else ""
        if self.failures:
            out.append(Reconnected())
        if self.down:
            self.down = False
            out.append(Emit("camera_up", line=f"camera {self.camera_id}: UP again{after}"))
        elif self.failures:
            out.append(Note(logging.INFO, f"camera {self.camera_id}: reachable again{after}"))
        self.failures = 0
        return self._quiet(out)

    def no_reference(self, now: float, at: float | None, enrol_refused: bool = False) -> list[Action]:
        """The camera has no reference to judge by. ``enrol_refused``: auto_enroll turned the
        frame down (the service logged why; no hint, and the check does not count as progress)."""
        if enrol_refused:
            return [CountCheck("no_reference", at=at), *self._become(CameraState.NO_REFERENCE)]
        out: list[Action] = [CountCheck("no_reference", at=at)]
        if not self.hint_logged:
            out.append(Note(logging.WARNING, f"camera {self.camera_id}: no reference; enrol it with: "
                                             f"camwatch enroll {self.camera_id}"))
            self.hint_logged = True
        return out + self._become(CameraState.NO_REFERENCE) + [Progress(now)]

    def assessed(self, now: float, a: Assessed) -> list[Action]:
        """A verdict: hysteresis, then the state change's events (and a kind's change)."""
        v = a.verdict
        cid = self.camera_id
        base = a.camera_threshold
        self.hint_logged = False
        out: list[Action] = []
        if self.reference_ids and a.reference_ids != self.reference_ids:
            # Enrolled anew (e.g. after a deliberate move): judge afresh from this check.
            out += [Note(logging.INFO, f"camera {cid}: references changed; hysteresis starts afresh"),
                    ReferencesChanged()]
            self.hysteresis.reset()
            self._run_kinds.clear()
        self.reference_ids = a.reference_ids
        if a.calibrating and (not v.drifted or v.reason == "similarity"):
            out.append(RecordCalibration(v.similarity, v.structure, a.stats, v.reference_id, bool(v.drifted)))
        confirmed = self.hysteresis.update(bool(v.drifted))
        kind = (v.kind or "unknown") if v.drifted else None
        self._run_kinds = (self._run_kinds + [kind])[-self.hysteresis.confirm:] if kind else []
        out.append(CountCheck("drifted" if v.drifted else "ok", v.similarity, base, a.at))
        details = cue_details(v, base, a.threshold_source, a.structure_scale)
        extra = {"similarity": round(float(v.similarity), 4), "threshold": round(float(base), 4),
                 "kind": v.kind, "structure": None if v.structure is None else round(float(v.structure), 4)}
        cues = cue_text(v, base, a.structure_scale) + (f"; looks {kind}" if kind else "")
        out.append(Note(logging.DEBUG, f"camera {cid}: match {v.similarity:.3f}, needs {base:.3f} "
                                       f"({a.threshold_source}){cues}",
                        {**extra, **details}))
        said = match(v.similarity, base, explanation(bool(v.drifted), v.similarity, base, v.reason,
                                                     v.sharpness_ratio))
        new_state = CameraState.DRIFTED if confirmed else CameraState.OK
        if confirmed and not self.drift_open:
            self.drift_open, self.alert_kind, self._change = True, _majority(self._run_kinds or ["unknown"]), (None, 0)
            out.append(self._started(a, self.alert_kind, f"reference {v.reference_id}",
                                     f"camera {cid}: view {_shown(self.alert_kind)} ({said})", details))
        elif confirmed and self.drift_open and kind is not None:
            old = self.alert_kind
            changed = self._kind_change(kind)
            if changed:
                out.append(self._started(a, changed, f"kind changed from {old} to {changed}; reference "
                                         f"{v.reference_id}", f"camera {cid}: view now {_shown(changed)}, "
                                         f"was {old} ({said})", {**details, "previous_kind": str(old)}))
        elif not confirmed and self.drift_open:
            self.drift_open, self.alert_kind, self._change = False, None, (None, 0)
            out.append(Emit("drift_cleared", similarity=v.similarity, threshold=base, details=details,
                            line=f"camera {cid}: view back to normal ({said})"))
        elif self.state in (None, CameraState.UNAVAILABLE, CameraState.NO_REFERENCE) and new_state == CameraState.OK:
            out.append(Note(logging.INFO, f"camera {cid}: ok ({said})", extra))
        if not kind:
            self._change = (None, 0)
        return self._quiet(out + self._become(new_state) + [Progress(now)])

    def _started(self, a: Assessed, kind: str, message: str, line: str, details: Mapping[str, float | str]) -> Emit:
        """A drift_started of ``kind`` ("unknown": no kind was named; the event's kind is then null)."""
        v = a.verdict
        return Emit("drift_started", message, kind=None if kind == "unknown" else kind, similarity=v.similarity,
                    threshold=a.camera_threshold, alert=kind, evidence_reference=v.reference_id,
                    details=dict(details), line=line, level=logging.WARNING)

    def _kind_change(self, kind: str) -> str | None:
        """The new kind once another than the open alert's was named on ``confirm`` drifted checks
        in a row, else None. An unknown open kind (a restart over events without one) adopts the
        first kind named, without an event: nothing was told that could have changed."""
        if self.alert_kind is None or self.alert_kind == "unknown":
            self.alert_kind = kind
            return None
        if kind == self.alert_kind:
            self._change = (None, 0)
            return None
        seen, n = self._change
        n = n + 1 if seen == kind else 1
        if n >= self.hysteresis.confirm:
            self._change, self.alert_kind = (None, 0), kind
            return kind
        self._change = (kind, n)
        return None

    def _become(self, state: CameraState) -> list[Action]:
        if self.state == state:
            return []
        self.state = state
        return [SetState(state, self.drift_open)]
