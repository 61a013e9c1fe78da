"""Operators' settings in the per-camera state machine (Monitor.controls), with a fake clock.

Silenced: the camera is still checked and its state still moves, but every
event it owes meanwhile is marked ``silenced_until`` (the service records it and
delivers it to no sink); the silence running out is said once. Disabled: the
camera shows disabled; enabled again, it starts pending, without a stale backoff.
"""

from __future__ import annotations

from test_monitor import COVERED, GOOD, MOVED, Clock, check, fail

from camwatch.core.monitor import Emit, Monitor, OpenAlerts, Policy, SetState, Silenced
from camwatch.core.types import CameraState

WALL = 1_700_000_000.0


def emits(actions: list) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit)]


def test_a_silenced_camera_is_still_judged_but_its_events_are_marked_silenced():
    m, clock = Monitor("lobby", Policy(confirm=2, recover=1)), Clock()
    assert m.controls(WALL, WALL + 7200, True) == [Silenced(WALL + 7200)]
    assert m.controls(WALL + 1, WALL + 7200, True) == []             # told again: nothing new
    out = check(m, clock, MOVED) + check(m, clock, MOVED)
    started = emits(out)
    assert [e.type for e in started] == ["drift_started"] and started[0].silenced_until == WALL + 7200
    assert m.state == CameraState.DRIFTED and m.drift_open                 # the state still moves
    down = fail(m, clock) + fail(m, clock)
    assert [(e.type, e.silenced_until) for e in emits(down)] == [("camera_down", WALL + 7200)]


def test_lifting_a_silence_delivers_again_and_says_nothing_itself():
    m, clock = Monitor("lobby", Policy(confirm=1, recover=1)), Clock()
    m.controls(WALL, WALL + 600, True)
    assert m.controls(WALL + 10, None, True) == [Silenced(None)]   # the operator's own event says who
    assert [(e.type, e.silenced_until) for e in emits(check(m, clock, COVERED))] == [("drift_started", None)]


def test_a_silence_that_ran_out_ends_with_one_event_and_alerts_flow_again():
    m, clock = Monitor("lobby", Policy(confirm=1, recover=1)), Clock()
    m.controls(WALL, WALL + 60, True)
    assert emits(check(m, clock, MOVED))[0].silenced_until == WALL + 60
    out = m.controls(WALL + 61, WALL + 60, True)
    assert out[0] == Silenced(None)
    ended = emits(out)
    assert [e.type for e in ended] == ["camera_unsilenced"] and ended[0].details["by"] == "camwatch"
    assert ended[0].silenced_until is None
    assert [(e.type, e.silenced_until) for e in emits(check(m, clock, GOOD))] == [("drift_cleared", None)]
    # A daemon started after the time passed, over a store still holding it, says it too (then it is cleared).
    fresh = Monitor("lobby")
    assert [e.type for e in emits(fresh.controls(WALL + 99, WALL + 60, True))] == ["camera_unsilenced"]


def test_a_silence_survives_a_settings_change():
    m = Monitor("lobby", Policy(), opened=OpenAlerts(drift=True, kind="moved"))
    m.controls(WALL, WALL + 300, True)
    again = m.carried_over(Policy(confirm=5))
    assert again.silenced_until == WALL + 300 and again.drift_open


def test_disabling_shows_disabled_and_enabling_starts_pending_without_the_old_backoff():
    m, clock = Monitor("gate", Policy(interval=10)), Clock()
    fail(m, clock), fail(m, clock)
    assert not m.due(clock.t)                                     # backing off
    out = m.controls(WALL, None, False)
    assert SetState(CameraState.DISABLED, False) in out and m.state == CameraState.DISABLED
    assert m.controls(WALL, None, False) == []
    m.controls(WALL, None, True)
    assert m.state is None and m.due(clock.t) and m.failures == 0
