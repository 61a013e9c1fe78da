"""The scheduler's camera jobs with the real APScheduler underneath (service/scheduler.py)."""

from __future__ import annotations

import threading
import time

import pytest

from camwatch.config import CameraConfig
from camwatch.service import scheduler as sched


def test_every_first_check_runs_however_late_after_a_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start with more cameras than the workers clear within the misfire grace: every camera still
    gets its first check (it used to be dropped, leaving the camera unknown for up to 1.5 intervals)."""
    monkeypatch.setattr(sched, "MISFIRE_GRACE_S", 1)
    ran: list[str] = []
    lock = threading.Lock()

    def check(camera_id: str, generation: int) -> None:
        time.sleep(0.3)                  # one worker: the 8th camera starts ~2.1 s late
        with lock:
            ran.append(camera_id)

    s = sched.Scheduler(1, check, lambda cid, t: None)
    s.start()
    try:
        for i in range(8):
            s.add_camera(CameraConfig.model_construct(id=f"c{i}", url="", interval=3600.0), 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ran) < 8:
            time.sleep(0.05)
    finally:
        s.shutdown()
    assert sorted(ran) == [f"c{i}" for i in range(8)]
