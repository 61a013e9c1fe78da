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


GOOD = V(False, 0.93)
MOVED = V(True, 0.41, kind="moved")


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


def test_first_good_check_is_ok_and_logged_once():
    clock, m = Clock(), Monitor("gate")
    assert m.state is None
    first = check(m, clock, GOOD)
    assert states(first) == [CameraState.OK] and m.state == "ok"   # the Enum is its metrics label
    assert notes(first, logging.INFO) == ["camera gate ok: similarity 0.930 (threshold 0.800)"]
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
    start = next(a for a in out if isinstance(a, Emit))
    assert (start.type, start.kind, start.alert, start.evidence_reference) == ("drift_started", "moved", "moved", 1)
    assert start.similarity == 0.41 and start.threshold == 0.8 and start.message == "reference 1"
    assert any("DRIFTED (moved)" in t for t in notes(out, logging.WARNING))
    assert emitted(check(m, clock, MOVED)) == []                     # no second alert while drifted
    # One good view does not clear (recover=2), and a drifted one between breaks the run.
    for v in (GOOD, MOVED, GOOD):
        assert emitted(check(m, clock, v)) == [] and m.state == CameraState.DRIFTED
    out = check(m, clock, GOOD)
    assert emitted(out) == ["drift_cleared"] and m.state == CameraState.OK
    cleared = next(a for a in out if isinstance(a, Emit))
    assert cleared.alert is None and cleared.evidence_reference is None and cleared.similarity == 0.93


def test_camera_down_after_n_failures_backs_off_and_comes_back_up():
    clock, m = Clock(), Monitor("gate", Policy(interval=30.0, down_after=2))
    m.backoff = Backoff(base=1.0, cap=120.0, jitter=0.0)   # no jitter: exact delays
    check(m, clock, GOOD)
    out = fail(m, clock)
    assert m.state == CameraState.UNAVAILABLE and emitted(out) == []
    assert CountCheck("error") in out and Progress(clock.t) in out
    assert notes(out, logging.WARNING) == ["camera gate unavailable: connect refused (retrying in 1.0 s)"]
    assert not m.due(clock.t + 0.5) and m.due(clock.t + 1.0)
    out = fail(m, clock)
    assert emitted(out) == ["camera_down"] and states(out) == []
    down = next(a for a in out if isinstance(a, Emit))
    assert down.alert == "unavailable" and down.message == "2 failed fetches: connect refused"
    assert notes(out, logging.WARNING) == [] and notes(out, logging.DEBUG)   # said once, then quietly
    assert m.retry_at == clock.t + 2.0                                       # the delay grows
    assert emitted(fail(m, clock)) == []                                     # one camera_down per outage
    out = check(m, clock, GOOD)
    assert emitted(out) == ["camera_up"] and Reconnected() in out and m.state == CameraState.OK
    assert "camera gate reachable again after 3 failed fetch(es)" in notes(out, logging.INFO)
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
    """Today's behaviour (another issue may change it): an outage neither clears nor re-raises a drift."""
    clock, m = Clock(), Monitor("gate", Policy(confirm=1, recover=1))
    check(m, clock, GOOD)
    assert emitted(check(m, clock, MOVED)) == ["drift_started"]
    out = fail(m, clock) + fail(m, clock)
    assert emitted(out) == ["camera_down"] and m.state == CameraState.UNAVAILABLE and m.drift_open
    out = check(m, clock, MOVED)
    assert emitted(out) == ["camera_up"] and m.state == CameraState.DRIFTED   # no second drift_started
    assert emitted(check(m, clock, GOOD)) == ["drift_cleared"]


def test_no_reference_hint_once_per_episode():
    clock, m = Clock(), Monitor("yard")
    outs, times = [], []
    for _ in range(3):
        times.append(clock.advance(1))
        outs.append(m.fetched(clock.t) + m.no_reference(clock.t, at=clock.t))
    assert states(outs[0]) == [CameraState.NO_REFERENCE] and m.state == "no_reference"
    assert [len(notes(o, logging.WARNING)) for o in outs] == [1, 0, 0]
    assert notes(outs[0]) == ["camera yard has no reference; enrol it with: camwatch enroll yard"]
    assert all(CountCheck("no_reference", at=t) in o and Progress(t) in o for o, t in zip(outs, times))
    check(m, clock, GOOD)                       # enrolled: ok, and logged as such
    assert m.state == CameraState.OK
    assert len(notes(m.no_reference(clock.advance(1), at=clock.t), logging.WARNING)) == 1  # a new episode


def test_refused_auto_enrolment_counts_no_reference_without_hint_or_progress():
    m = Monitor("yard")
    out = m.no_reference(5.0, at=None, enrol_refused=True)
    assert out == [CountCheck("no_reference"), SetState(CameraState.NO_REFERENCE)]


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


def test_calibration_samples_only_from_benign_views_while_calibrating():
    clock, m = Clock(), Monitor("gate", Policy(confirm=3))
    good = V(False, 0.95, structure=0.02)
    assert RecordCalibration(0.95, 0.02) in check(m, clock, good, calibrating=True)
    assert not any(isinstance(a, RecordCalibration) for a in check(m, clock, MOVED, calibrating=True))
    assert not any(isinstance(a, RecordCalibration) for a in check(m, clock, good))


def test_structure_note_explains_a_moved_threshold():
    clock, m = Clock(), Monitor("gate", Policy(confirm=1))
    v = V(True, 0.70, threshold=0.75, kind="moved", structure=0.6)
    out = check(m, clock, v, structure_scale=0.4)
    line = notes(out, logging.WARNING)[0]
    assert line.endswith("(the camera's 0.800, lowered by the view's structure: "
                         "distance 0.600 against its scale 0.400)")
    warn = next(a for a in out if isinstance(a, Note) and a.level == logging.WARNING)
    assert warn.extra == {"similarity": 0.7, "threshold": 0.75, "kind": "moved", "structure": 0.6}


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
