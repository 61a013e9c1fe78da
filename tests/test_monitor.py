"""The per-camera state machine (core/monitor.py) with a fake clock: no daemon, no waiting.

Each test feeds a Monitor the observations a real camera would produce (frames,
failed fetches, verdicts) at times it chooses, and reads back the state and the
actions the service would carry out. The real-process side (that the daemon
carries those actions out) is tests/test_daemon.py's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from camwatch.core.backoff import Backoff
from camwatch.core.lines import with_evidence
from camwatch.core.monitor import (
    Assessed,
    CountCheck,
    Emit,
    Monitor,
    Note,
    OpenAlerts,
    Policy,
    Progress,
    Reconnected,
    RecordCalibration,
    ReferencesChanged,
    SetState,
    open_alerts,
)
from camwatch.core.types import CameraState


@dataclass(frozen=True)
class V:
    """A verdict as core.decision makes them (only the fields the monitor reads)."""

    drifted: bool
    similarity: float = 0.9
    threshold: float = 0.8
    kind: str | None = None
    reference_id: int | None = 1
    structure: float | None = None
    reason: str = ""
    sharpness_ratio: float | None = None


GOOD = V(False, 0.93)
MOVED = V(True, 0.41, kind="moved", reason="similarity")
COVERED = V(True, 0.30, kind="covered", reason="similarity")
DEFOCUSED = V(True, 0.85, kind="defocused", reason="sharpness", sharpness_ratio=0.31)


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


def check(m: Monitor, clock: Clock, v: V, refs: frozenset[int] = frozenset({1}), **kw) -> list:
    """One completed check with verdict ``v``, a second after the previous one."""
    now = clock.advance(1.0)
    return m.fetched(now) + m.assessed(now, Assessed(v, refs, at=now, camera_threshold=0.8, **kw))


def fail(m: Monitor, clock: Clock, message: str = "connect refused") -> list:
    now = clock.advance(1.0)
    return m.fetch_failed(now, "connect", message)


def emitted(actions: list) -> list[str]:
    return [a.type for a in actions if isinstance(a, Emit)]


def states(actions: list) -> list[CameraState]:
    return [a.state for a in actions if isinstance(a, SetState)]


def notes(actions: list, level: int | None = None) -> list[str]:
    return [a.text for a in actions if isinstance(a, Note) and (level is None or a.level == level)]


def lines(actions: list, level: int | None = None) -> list[str]:
    """What the log shows: notes, and the line of each event (before its evidence is known)."""
    return [a.text if isinstance(a, Note) else a.line for a in actions
            if isinstance(a, (Note, Emit)) and (level is None or a.level == level)]


def started(actions: list) -> Emit:
    return next(a for a in actions if isinstance(a, Emit) and a.type == "drift_started")


def test_first_good_check_is_ok_and_logged_once():
    clock, m = Clock(), Monitor("gate")
    assert m.state is None
    first = check(m, clock, GOOD)
    assert states(first) == [CameraState.OK] and m.state == "ok"   # the Enum is its metrics label
    assert notes(first, logging.INFO) == ["camera gate: ok (match 0.93, needs 0.80)"]
    assert [a for a in first if isinstance(a, CountCheck)] == [CountCheck("ok", 0.93, 0.8, clock.t)]
    assert Progress(clock.t) in first
    second = check(m, clock, GOOD)
    assert states(second) == [] and notes(second, logging.INFO) == [] and emitted(second) == []


def test_drift_needs_confirm_verdicts_then_clears_after_recover():
    clock, m = Clock(), Monitor("gate", Policy(confirm=3, recover=2))
    check(m, clock, GOOD)
    for _ in range(2):
        out = check(m, clock, MOVED)
        assert m.state == CameraState.OK and emitted(out) == []
        assert CountCheck("drifted", 0.41, 0.8, clock.t) in out     # each drifted check is counted
    out = check(m, clock, MOVED)
    assert m.state == CameraState.DRIFTED and states(out) == [CameraState.DRIFTED]
    assert out[-2] == SetState(CameraState.DRIFTED, drift_open=True)
    start = next(a for a in out if isinstance(a, Emit))
    assert (start.type, start.kind, start.alert, start.evidence_reference) == ("drift_started", "moved", "moved", 1)
    assert start.similarity == 0.41 and start.threshold == 0.8 and start.message == "reference 1"
    assert lines(out, logging.WARNING) == ["camera gate: view MOVED (match 0.41, needs 0.80)"]
    assert emitted(check(m, clock, MOVED)) == []                     # no second alert while drifted
    # One good view does not clear (recover=2), and a drifted one between breaks the run.
    for v in (GOOD, MOVED, GOOD):
        assert emitted(check(m, clock, v)) == [] and m.state == CameraState.DRIFTED
    out = check(m, clock, GOOD)
    assert emitted(out) == ["drift_cleared"] and m.state == CameraState.OK
    cleared = next(a for a in out if isinstance(a, Emit))
    assert cleared.alert is None and cleared.evidence_reference is None and cleared.similarity == 0.93
    assert lines(out, logging.INFO) == ["camera gate: view back to normal (match 0.93, needs 0.80)"]
    assert SetState(CameraState.OK, drift_open=False) in out


def test_camera_down_after_n_failures_backs_off_and_comes_back_up():
    clock, m = Clock(), Monitor("gate", Policy(interval=30.0, down_after=2))
    m.backoff = Backoff(base=1.0, cap=120.0, jitter=0.0)   # no jitter: exact delays
    check(m, clock, GOOD)
    out = fail(m, clock)
    assert m.state == CameraState.UNAVAILABLE and emitted(out) == []
    assert CountCheck("error") in out and Progress(clock.t) in out
    assert notes(out, logging.WARNING) == ["camera gate: unavailable: connect refused (retrying in 1.0 s)"]
    assert not m.due(clock.t + 0.5) and m.due(clock.t + 1.0)
    out = fail(m, clock)
    assert emitted(out) == ["camera_down"] and states(out) == []
    down = next(a for a in out if isinstance(a, Emit))
    assert down.alert == "unavailable" and down.message == "2 failed fetches: connect refused"
    assert lines(out, logging.WARNING) == ["camera gate: DOWN after 2 failed fetches (connect refused)"]
    assert notes(out, logging.WARNING) == [] and notes(out, logging.DEBUG)   # said once, then quietly
    assert m.retry_at == clock.t + 2.0                                       # the delay grows
    assert emitted(fail(m, clock)) == []                                     # one camera_down per outage
    out = check(m, clock, GOOD)
    assert emitted(out) == ["camera_up"] and Reconnected() in out and m.state == CameraState.OK
    assert "camera gate: UP again after 3 failed fetches" in lines(out, logging.INFO)
    assert m.due(clock.t) and m.retry_at == 0.0 and m.backoff.attempts == 0
    assert emitted(fail(m, clock)) == [] and emitted(fail(m, clock)) == ["camera_down"]  # a new outage


def test_a_dead_cameras_retries_are_capped_by_its_interval():
    clock, m = Clock(), Monitor("gate", Policy(interval=5.0))
    delays = []
    for _ in range(12):
        fail(m, clock)
        delays.append(m.retry_at - clock.t)
    assert max(delays) <= 20.0 and all(d >= 0 for d in delays)   # 4 intervals (floor 10 s)
    m = Monitor("gate", Policy(interval=1.0))
    for _ in range(12):
        fail(m, clock)
        assert m.retry_at - clock.t <= 10.0


def test_drift_stays_open_while_the_camera_is_unavailable():
    """An outage neither clears nor re-raises a drift: the state says unavailable and the drift
    stays open beside it (camwatch_camera_drifted 1), cleared only by ``recover`` good checks."""
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=2))
    check(m, clock, GOOD)
    assert emitted(check(m, clock, MOVED)) == ["drift_started"]
    out = fail(m, clock)
    assert states(out) == [CameraState.UNAVAILABLE] and SetState(CameraState.UNAVAILABLE, drift_open=True) in out
    assert notes(out, logging.WARNING)[0].endswith("; its drift alert stays open)")
    out = fail(m, clock) + fail(m, clock)
    assert emitted(out) == ["camera_down"] and m.state == CameraState.UNAVAILABLE and m.drift_open
    out = check(m, clock, GOOD)           # back, and one good view: recover=2 is not met yet
    assert emitted(out) == ["camera_up"] and m.state == CameraState.DRIFTED and m.drift_open
    assert SetState(CameraState.DRIFTED, drift_open=True) in out
    out = check(m, clock, GOOD)
    assert emitted(out) == ["drift_cleared"] and SetState(CameraState.OK, drift_open=False) in out


def test_an_outage_that_comes_back_drifted_raises_no_second_alert():
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=1))
    check(m, clock, GOOD)
    check(m, clock, MOVED)
    fail(m, clock), fail(m, clock)
    out = check(m, clock, MOVED)
    assert emitted(out) == ["camera_up"] and m.state == CameraState.DRIFTED   # no second drift_started
    assert emitted(check(m, clock, GOOD)) == ["drift_cleared"]


def test_no_reference_keeps_an_open_drift():
    """References removed while drifted: no_reference, drift still open until a good check."""
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=1))
    check(m, clock, MOVED)
    out = m.fetched(clock.advance(1)) + m.no_reference(clock.t, at=clock.t)
    assert SetState(CameraState.NO_REFERENCE, drift_open=True) in out and emitted(out) == []
    out = check(m, clock, GOOD, refs=frozenset({2}))
    assert emitted(out) == ["drift_cleared"] and SetState(CameraState.OK, drift_open=False) in out


def test_no_reference_hint_once_per_episode():
    clock, m = Clock(), Monitor("yard")
    outs, times = [], []
    for _ in range(3):
        times.append(clock.advance(1))
        outs.append(m.fetched(clock.t) + m.no_reference(clock.t, at=clock.t))
    assert states(outs[0]) == [CameraState.NO_REFERENCE] and m.state == "no_reference"
    assert [len(notes(o, logging.WARNING)) for o in outs] == [1, 0, 0]
    assert notes(outs[0]) == ["camera yard: no reference; enrol it with: camwatch enroll yard"]
    assert all(CountCheck("no_reference", at=t) in o and Progress(t) in o for o, t in zip(outs, times))
    check(m, clock, GOOD)                       # enrolled: ok, and logged as such
    assert m.state == CameraState.OK
    assert len(notes(m.no_reference(clock.advance(1), at=clock.t), logging.WARNING)) == 1  # a new episode


def test_refused_auto_enrolment_counts_no_reference_without_hint_or_progress():
    m = Monitor("yard")
    out = m.no_reference(5.0, at=None, enrol_refused=True)
    assert out == [CountCheck("no_reference"), SetState(CameraState.NO_REFERENCE, drift_open=False)]


def test_disabled_camera_starts_disabled():
    m = Monitor("spare", enabled=False)
    assert m.state == CameraState.DISABLED


def test_outside_active_hours_is_a_skipped_check_that_changes_nothing():
    m = Monitor("gate")
    assert m.outside_hours(7.0) == [CountCheck("skipped"), Progress(7.0)]
    assert m.state is None and m.failures == 0


def test_new_references_start_the_hysteresis_afresh():
    clock, m = Clock(), Monitor("gate", Policy(confirm=2, recover=5))
    check(m, clock, GOOD)
    check(m, clock, MOVED)
    assert emitted(check(m, clock, MOVED)) == ["drift_started"]
    out = check(m, clock, GOOD, refs=frozenset({1, 2}))       # enrolled again: one good view is enough
    assert ReferencesChanged() in out and emitted(out) == ["drift_cleared"] and m.state == CameraState.OK
    assert "camera gate: references changed; hysteresis starts afresh" in notes(out, logging.INFO)
    assert ReferencesChanged() not in check(m, clock, GOOD, refs=frozenset({1, 2}))


def test_calibration_samples_from_benign_views_and_doubtful_ones_while_calibrating():
    """A view drifted on its similarity alone is recorded as doubtful (calibration.consensus judges it
    with the rest); one drifted by another rule (a soft lens, a cover) is not recorded at all."""
    clock, m = Clock(), Monitor("gate", Policy(confirm=3))
    good = V(False, 0.95, structure=0.02)
    assert RecordCalibration(0.95, 0.02, None, 1) in check(m, clock, good, calibrating=True)
    recorded = [a for a in check(m, clock, MOVED, calibrating=True) if isinstance(a, RecordCalibration)]
    assert [a.doubtful for a in recorded] == [True]
    assert not any(isinstance(a, RecordCalibration) for a in check(m, clock, DEFOCUSED, calibrating=True))
    assert not any(isinstance(a, RecordCalibration) for a in check(m, clock, good))


def test_one_threshold_per_camera_and_the_cues_at_debug_and_in_details():
    """The structure cue moves the bar each view is held to (0.75, then 0.975); lines, metrics and
    events show the camera's own (0.80) every time, the moved one at DEBUG and in the details."""
    clock, m = Clock(), Monitor("lobby", Policy(confirm=1, recover=1))
    v = V(True, 0.70, threshold=0.75, kind="moved", structure=0.6, reason="similarity")
    out = check(m, clock, v, structure_scale=0.4, threshold_source="calibrated")
    assert lines(out, logging.WARNING) == ["camera lobby: view MOVED (match 0.70, needs 0.80)"]
    assert [a.threshold for a in out if isinstance(a, CountCheck)] == [0.8]
    e = started(out)
    assert e.threshold == 0.8 and e.details == {
        "camera_threshold": 0.8, "threshold_source": "calibrated", "adjusted_threshold": 0.75,
        "decided_by": "similarity", "structure_distance": 0.6, "structure_scale": 0.4, "reference": 1}
    debug = notes(out, logging.DEBUG)[0]
    assert debug == ("camera lobby: match 0.700, needs 0.800 (calibrated); structure 0.600 against its "
                     "scale 0.400 puts the bar at 0.750; looks moved")
    note = next(a for a in out if isinstance(a, Note) and a.level == logging.DEBUG)
    assert note.extra["threshold"] == 0.8 and note.extra["adjusted_threshold"] == 0.75
    # Back to normal, then a view whose layout changed though it matches above the bar.
    check(m, clock, GOOD)
    out = check(m, clock, V(True, 0.90, threshold=0.975, kind="moved", structure=0.93, reason="similarity"),
                structure_scale=0.33)
    assert lines(out, logging.WARNING) == ["camera lobby: view MOVED (match 0.90, needs 0.80, but the layout changed)"]
    assert [a.threshold for a in out if isinstance(a, CountCheck)] == [0.8]
    assert started(out).threshold == 0.8 and started(out).details["adjusted_threshold"] == 0.975


def test_drift_lines_name_the_cue_that_decided():
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=1))
    out = check(m, clock, DEFOCUSED)
    assert lines(out, logging.WARNING) == [
        "camera gate: view DEFOCUSED (match 0.85, needs 0.80, but detail down to 31% of the reference's)"]
    assert started(out).details["sharpness_ratio"] == 0.31 and started(out).details["decided_by"] == "sharpness"
    check(m, clock, GOOD)
    out = check(m, clock, V(True, 0.82, kind="blinded", reason="no_contrast"))
    assert lines(out, logging.WARNING) == ["camera gate: view BLINDED (match 0.82, needs 0.80, but no contrast left)"]
    check(m, clock, GOOD)
    out = check(m, clock, V(False, 0.78, threshold=0.70))      # ok below the camera's bar: the layout held
    assert notes(out, logging.INFO) == []                      # ok after ok: nothing to say
    m2 = Monitor("yard")
    assert notes(check(m2, clock, V(False, 0.78, threshold=0.70)), logging.INFO) == [
        "camera yard: ok (match 0.78, needs 0.80, but the layout is intact)"]


def test_numbers_keep_their_order_visible():
    clock, m = Clock(), Monitor("gate", Policy(confirm=1))
    out = m.fetched(clock.t) + m.assessed(clock.t, Assessed(V(True, 0.4281, threshold=0.4284, kind="moved"),
                                                            frozenset({1}), at=1.0, camera_threshold=0.4284))
    assert lines(out, logging.WARNING) == ["camera gate: view MOVED (match 0.4281, needs 0.4284)"]


def test_the_evidence_goes_inside_the_line():
    assert with_evidence("camera lobby: view MOVED (match 0.10, needs 0.43)", "/ev/lobby-1.jpg") == \
        "camera lobby: view MOVED (match 0.10, needs 0.43; evidence /ev/lobby-1.jpg)"
    assert with_evidence("camera lobby: UP again", None) == "camera lobby: UP again"


def test_a_source_message_does_not_name_the_camera_twice():
    clock, m = Clock(), Monitor("gate")
    out = m.fetch_failed(clock.t, "connect", "camera gate (rtsp://***@10.0.0.5/live): connection refused")
    assert notes(out, logging.WARNING)[0].startswith(
        "camera gate: unavailable: rtsp://***@10.0.0.5/live: connection refused (retrying in ")
    out = m.fetch_failed(clock.advance(5), "connect", "camera gate: timed out after 3 s")
    down = next(a for a in out if isinstance(a, Emit))
    assert down.message == "2 failed fetches: timed out after 3 s"
    other = Monitor("gate").fetch_failed(0.0, "x", "camera gatekeeper (u): no")   # another camera's name stays
    assert notes(other, logging.WARNING)[0].startswith("camera gate: unavailable: camera gatekeeper (u): no")


def test_an_open_alert_keeps_its_kind_until_another_is_confirmed():
    """A flip of the named kind for fewer than ``confirm`` checks changes nothing; ``confirm``
    checks naming the same new kind are told as a new drift_started (no drift_cleared: the view
    is not back to normal), and one drift_cleared closes the alert at the end."""
    clock, m = Clock(), Monitor("gate", Policy(confirm=3, recover=2))
    check(m, clock, GOOD)
    out = [a for v in (COVERED, DEFOCUSED, COVERED) for a in check(m, clock, v)]
    e = started(out)
    assert (e.kind, e.alert) == ("covered", "covered")          # the kind named most over the run
    assert lines(out, logging.WARNING) == ["camera gate: view COVERED (match 0.30, needs 0.80)"]
    for v in (DEFOCUSED, DEFOCUSED, COVERED, MOVED, DEFOCUSED, GOOD, DEFOCUSED, DEFOCUSED):
        assert emitted(check(m, clock, v)) == [], v                # runs broken before reaching 3
    assert m.alert_kind == "covered" and m.state == CameraState.DRIFTED
    out = check(m, clock, DEFOCUSED)                               # the third in a row
    assert emitted(out) == ["drift_started"]
    e = started(out)
    assert (e.kind, e.alert, e.message) == ("defocused", "defocused", "kind changed from covered to defocused; "
                                            "reference 1")
    assert e.details["previous_kind"] == "covered"
    assert lines(out, logging.WARNING) == ["camera gate: view now DEFOCUSED, was covered "
                                           "(match 0.85, needs 0.80, but detail down to 31% of the reference's)"]
    for v in (DEFOCUSED, COVERED, GOOD):
        assert emitted(check(m, clock, v)) == []
    assert emitted(check(m, clock, GOOD)) == ["drift_cleared"] and m.alert_kind is None
    assert open_alerts(["drift_started", "drift_started", "drift_cleared"]) == OpenAlerts()


def test_with_confirm_1_each_new_kind_is_a_new_event():
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=1))
    assert [e.kind for v in (MOVED, MOVED, COVERED, COVERED) for e in check(m, clock, v)
            if isinstance(e, Emit)] == ["moved", "covered"]


def test_a_restart_remembers_the_open_kind():
    @dataclass(frozen=True)
    class Ev:
        type: str
        kind: str | None = None

    opened = open_alerts([Ev("drift_started", "covered"), Ev("camera_down")])
    assert opened == OpenAlerts(drift=True, down=True, kind="covered")
    clock, m = Clock(), Monitor("gate", Policy(confirm=2, recover=1), opened=opened)
    assert emitted(check(m, clock, COVERED)) == ["camera_up"] and m.alert_kind == "covered"
    assert emitted(check(m, clock, MOVED)) == []
    assert [e.kind for e in check(m, clock, MOVED) if isinstance(e, Emit)] == ["moved"]
    assert m.carried_over(m.policy).alert_kind == "moved"
    # Events from before kinds were read back: the first kind named is adopted without an event.
    m = Monitor("gate", Policy(confirm=2, recover=1), opened=open_alerts(["drift_started"]))
    assert emitted(check(m, clock, MOVED)) == [] and m.alert_kind == "moved"


def test_busy_skips_are_counted_every_time_and_said_once_per_episode():
    clock, m = Clock(), Monitor("gate", Policy(interval=10.0))
    why = "the previous check is still running"
    out = m.skipped(clock.t, "busy", why)
    assert out[0] == CountCheck("skipped") and len(out) == 2
    assert notes(out, logging.WARNING) == [
        'camera gate: checks skipped: the previous check is still running; counted in '
        'camwatch_checks_total{result="skipped"}; said again only if it recurs after checks run on time']
    assert next(a for a in out if isinstance(a, Note)).extra == {"reason": "busy"}
    # The pattern of a camera whose timeout outlasts its interval: run, skip, skip, run...
    for _ in range(3):
        fail(m, clock)
        for _ in range(2):
            assert m.skipped(clock.advance(10), "busy", why) == [CountCheck("skipped")]
    check(m, clock, GOOD)                     # a run after a skip: not yet on time
    out = m.skipped(clock.t, "overload", "64 frames wait")   # another reason: said once too
    assert len(notes(out, logging.WARNING)) == 1
    check(m, clock, GOOD), check(m, clock, GOOD)   # two runs with no skip between: recovered
    assert len(notes(m.skipped(clock.t, "busy", why), logging.WARNING)) == 1     # recurs: said again
    assert m.skipped(clock.t, "backoff") == [CountCheck("skipped")]             # counted, never said
    with pytest.raises(ValueError):
        m.skipped(clock.t, "bored")


def test_open_alerts_from_recorded_events():
    assert open_alerts([]) == OpenAlerts(False, False)
    assert open_alerts(["drift_started", "camera_down"]) == OpenAlerts(True, True)
    assert open_alerts(["drift_started", "camera_down", "camera_up", "drift_cleared"]) == OpenAlerts()
    assert open_alerts(["drift_started", "drift_cleared", "drift_started"]) == OpenAlerts(drift=True)


def test_restart_with_an_open_drift_owes_only_the_clear():
    clock = Clock()
    m = Monitor("gate", Policy(confirm=1, recover=1), opened=OpenAlerts(drift=True, down=True))
    out = check(m, clock, MOVED)
    assert emitted(out) == ["camera_up"] and m.state == CameraState.DRIFTED
    assert SetState(CameraState.DRIFTED, drift_open=True) in out and Reconnected() not in out
    assert emitted(check(m, clock, GOOD)) == ["drift_cleared"]


@pytest.mark.parametrize("drifted", [False, True])
def test_a_changed_camera_keeps_what_it_owes(drifted):
    """Reload: a camera whose settings changed starts afresh but keeps its open alerts."""
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=1))
    check(m, clock, MOVED if drifted else GOOD)
    fail(m, clock), fail(m, clock)
    new = m.carried_over(Policy(confirm=4, recover=1, interval=2.0))
    assert new is not m and new.state is None and new.failures == 0
    assert (new.drift_open, new.down, new.hysteresis.drifted) == (drifted, True, drifted)
    assert new.hysteresis.confirm == 4
    out = check(new, clock, GOOD)
    assert emitted(out) == (["camera_up", "drift_cleared"] if drifted else ["camera_up"])
    assert new.carried_over(new.policy, enabled=False).state == CameraState.DISABLED


def test_a_drift_no_kind_was_named_for_is_told_as_such():
    clock, m = Clock(), Monitor("gate", Policy(confirm=1))
    out = check(m, clock, V(True, 0.41, kind=None, reason="similarity"))
    e = started(out)
    assert (e.kind, e.alert) == (None, "unknown")        # the event's kind stays null, the metric says unknown
    assert lines(out, logging.WARNING) == ["camera gate: view DRIFTED (match 0.41, needs 0.80)"]
