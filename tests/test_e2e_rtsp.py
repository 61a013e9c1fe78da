"""End to end: a real ``camwatch`` process watching real RTSP cameras.

Real parts only: GStreamer's RTSP server streaming H.264 clips made by ffmpeg
(tests/rtsp_server.py via the ``rtsp_server`` fixture), a real HTTP snapshot
server, the real CLI (``enroll``, ``events``), a real SQLite state dir, real
/metrics scraped over HTTP, real signals. The model is modelkit's grid model:
a genuine ONNX model that keeps position, so a turned camera is far from its
reference while a live scene is not.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from daemon_helpers import Daemon, camwatch, write_config
from media import scene_image
from modelkit import grid_model

SECRET = "rtsp-Pa55-9x"


@pytest.fixture
def site(tmp_path, rtsp_server, http_snapshot_server):
    """Config: two RTSP cameras (one with a password in its URL) and an HTTP snapshot camera."""
    grid_model(tmp_path / "grid.onnx")
    http_snapshot_server.image("/snap.jpg", scene_image(320, 180, seed=4, scene="shop"))
    cams = [
        {"id": "gate", "url": rtsp_server.url("scene", userinfo=f"admin:{SECRET}"), "mode": "stream"},
        {"id": "yard", "url": rtsp_server.url("small")},
        {"id": "snap", "url": http_snapshot_server.url("/snap.jpg")},
    ]
    cfg = write_config(tmp_path / "cameras.yaml", cams, model=str(tmp_path / "grid.onnx"),
                       device="cpu", confirm=2, recover=1)
    out = camwatch("enroll", "--all", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr
    return cfg


def events(cfg, camera: str) -> list[dict]:
    out = camwatch("events", "--json", "--camera", camera, "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["events"]


def test_drift_outage_recovery(site, rtsp_server, http_snapshot_server):
    d = Daemon(site)
    try:
        for cam in ("gate", "yard", "snap"):
            d.wait_state(cam, "ok", timeout=60)

        # The yard camera is turned: drifted after `confirm` drifted checks, with an event.
        rtsp_server.swap("small")
        d.wait_state("yard", "drifted", timeout=40)
        assert d.value("camwatch_checks_total", camera="yard", result="drifted") >= 2
        assert d.value("camwatch_alerts_total", camera="yard", kind="moved") \
            + d.value("camwatch_alerts_total", camera="yard", kind="unknown") >= 1
        assert d.state("gate") == "ok"
        started = [e for e in events(site, "yard") if e["type"] == "drift_started"]
        assert len(started) == 1 and started[0]["similarity"] < started[0]["threshold"]
        assert started[0]["evidence"] and started[0]["evidence"].endswith(".jpg")

        # The RTSP server dies: both RTSP cameras unavailable, the HTTP camera still on schedule.
        rtsp_server.stop()
        d.wait_state("gate", "unavailable", timeout=30)
        d.wait_state("yard", "unavailable", timeout=30)
        before = d.value("camwatch_checks_total", camera="snap", result="ok")
        time.sleep(4)
        after = d.value("camwatch_checks_total", camera="snap", result="ok")
        assert after - before >= 3, (before, after)  # interval 1 s: not held up by the dead server
        d.wait("camera_down events", lambda: any(e["type"] == "camera_down" for e in events(site, "gate")),
               timeout=30)

        # Back again (serving the usual view): recovery, camera_up, drift cleared.
        rtsp_server.start()
        d.wait_state("gate", "ok", timeout=60)
        d.wait_state("yard", "ok", timeout=60)
        kinds = [e["type"] for e in events(site, "yard")]
        assert "camera_up" in kinds and "drift_cleared" in kinds

        # The password is nowhere: not in the log, not on /metrics.
        assert SECRET not in d.log()
        assert SECRET not in d.metrics_text()
    finally:
        assert d.stop() == 0
    assert SECRET not in d.log()


def test_sigterm_with_frozen_rtsp_server(site, rtsp_server):
    d = Daemon(site)
    try:
        d.wait_state("gate", "ok", timeout=60)
        rtsp_server.freeze()  # SIGSTOP: sockets open, nothing sent: every read hangs
        time.sleep(1.5)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.proc.wait(15)
        took = time.monotonic() - t0
        assert code == 0 and took < 10, (code, took)
    finally:
        rtsp_server.thaw()
        d.stop()
