"""The state directory's truth with real daemon processes: one daemon per state, a lost store refused.

Real ``camwatch`` processes (daemon_helpers), real file cameras, a real model,
real SQLite files, real signals (kill -9). Nothing is mocked.

- Two daemons on one state directory raised every alert twice; the second now
  exits 2 naming the first's pid, and the kernel frees the lock when the first
  dies however it dies (issue 21 item 1). ``enroll`` and ``references`` still
  work beside a running daemon: they take no daemon lock.
- A store that existed and is now empty is refused, not re-baselined; and
  ``auto_enroll`` never enrols a camera that had references before, even after
  ``references remove`` (issue 22 row 5).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from daemon_helpers import Daemon, camwatch, free_port, write_config
from media import scene_image, write_image
from modelkit import grid_model

from camwatch.core.errors import StoreError
from camwatch.store.lock import LOCK_NAME, holder_pid, lock_state_dir

HOUR = 3600


@pytest.fixture
def site(tmp_path: Path) -> Path:
    grid_model(tmp_path / "grid.onnx")
    write_image(tmp_path / "a.png", scene_image(seed=1, scene="street"))
    write_image(tmp_path / "b.png", scene_image(seed=2, scene="shop"))
    return tmp_path


def config(site: Path, name: str, cameras: list[dict], **settings: object) -> Path:
    return write_config(site / name, cameras, model=str(site / "grid.onnx"), device="cpu",
                        state_dir=str(site / "state"), **settings)


def cam(site: Path, cid: str, **extra: object) -> dict:
    return {"id": cid, "url": str(site / f"{cid}.png"), **extra}


def test_the_lock_names_its_holder_and_is_free_once_released(tmp_path):
    state = tmp_path / "state"
    held = lock_state_dir(state)
    assert holder_pid(state / LOCK_NAME) == os.getpid()
    with pytest.raises(StoreError) as err:
        lock_state_dir(state)                  # a second open file in this process is refused too
    assert f"pid {os.getpid()}" in str(err.value) and "\n" not in str(err.value)
    held.release()
    lock_state_dir(state).release()


@pytest.mark.timeout(240)
def test_a_second_daemon_on_the_same_state_exits_2_and_kill_9_frees_the_lock(site):
    cams = [cam(site, "a", auto_enroll=True)]
    first = Daemon(config(site, "first.yaml", cams))
    try:
        first.wait_state("a", "ok")
        second_cfg = config(site, "second.yaml", [*cams, cam(site, "b")],
                            metrics={"address": "127.0.0.1", "port": free_port()})
        out = camwatch("--config", str(second_cfg), timeout=60)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"pid {first.proc.pid}" in lines[0] and str(site / "state" / LOCK_NAME) in lines[0], lines
        assert first.proc.poll() is None                      # the first goes on checking
        checks = first.value("camwatch_checks_total", camera="a", result="ok") or 0
        first.wait("more checks", lambda: (first.value("camwatch_checks_total", camera="a", result="ok")
                                           or 0) > checks)

        # enroll and references work beside the running daemon (they take no daemon lock)
        out = camwatch("enroll", "--config", str(second_cfg), "b", "--label", "day", timeout=90)
        assert out.returncode == 0 and out.stdout.startswith("b: label day: reference "), out.stderr
        out = camwatch("references", "list", "--config", str(second_cfg), timeout=60)
        assert out.returncode == 0 and " b " in out.stdout and " a " in out.stdout, out.stderr

        os.kill(first.proc.pid, signal.SIGKILL)               # no orderly stop: the kernel frees the lock
        first.proc.wait(10)
    finally:
        first.stop()
    third = Daemon(second_cfg)
    try:
        third.wait_state("a", "ok")
        third.wait_state("b", "ok")
    finally:
        assert third.stop() == 0


@pytest.mark.timeout(240)
def test_auto_enroll_does_not_re_enrol_after_references_remove_nor_over_an_emptied_store(site):
    cfg = config(site, "cameras.yaml", [cam(site, "a", auto_enroll=True, interval=1)])
    d = Daemon(cfg)
    try:
        d.wait_state("a", "ok")
    finally:
        assert d.stop() == 0
    out = camwatch("references", "remove", "--config", str(cfg), "--camera", "a", timeout=60)
    assert out.returncode == 0, out.stderr

    d = Daemon(cfg)
    try:
        d.wait_state("a", "no_reference")
        d.wait("three checks without a reference",
               lambda: (d.value("camwatch_checks_total", camera="a", result="no_reference") or 0) >= 3)
        assert d.value("camwatch_camera_references", camera="a") == 0
    finally:
        assert d.stop() == 0
    out = camwatch("references", "list", "--config", str(cfg), "--json", timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout

    # The store emptied (a bad disk, or someone): the daemon refuses to start instead of re-baselining.
    db = site / "state" / "camwatch.db"
    os.truncate(db, 0)
    started = time.monotonic()
    d = Daemon(cfg)
    try:
        code = d.proc.wait(60)
    finally:
        d.stop()
    lines = [line for line in d.log().splitlines() if line.startswith("camwatch: ")]
    assert code == 2 and len(lines) == 1, d.log()
    assert str(db) in lines[0] and "empty (0 bytes)" in lines[0] and "store-id" in lines[0], lines
    assert "Traceback" not in d.log()
    assert db.stat().st_size == 0 and time.monotonic() - started < 60
