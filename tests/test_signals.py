"""Signals and sd_notify on a real ``camwatch`` process.

Real process, real signals, a real AF_UNIX datagram socket given as
NOTIFY_SOCKET (what systemd does), real /metrics, real file cameras, and a
real TCP server that accepts connections and then never answers (a hung
camera). Nothing is mocked.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from daemon_helpers import Daemon, SilentServer, write_config
from media import scene_image, write_image
from modelkit import grid_model

SECRET = "hunter2-S3cr3t"


class NotifySocket:
    """Bound datagram socket collecting every sd_notify message, as systemd would."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536).decode()
            except (TimeoutError, OSError):
                continue
            self.messages.append((time.monotonic(),
                                  dict(line.split("=", 1) for line in data.splitlines() if "=" in line)))

    def keys(self) -> list[str]:
        return [k for _, m in self.messages for k in m]

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def site(tmp_path: Path):
    grid_model(tmp_path / "grid.onnx")
    for cid, seed, scene in (("a", 1, "street"), ("b", 2, "shop"), ("c", 3, "lobby")):
        write_image(tmp_path / f"{cid}.png", scene_image(seed=seed, scene=scene))
    return tmp_path


def cams(folder: Path, *ids: str) -> list[dict]:
    return [{"id": i, "url": str(folder / f"{i}.png"), "auto_enroll": True} for i in ids]


def test_ready_watchdog_status_stopping(site):
    cfg = write_config(site / "cameras.yaml", cams(site, "a", "b"), model=str(site / "grid.onnx"),
                       device="cpu")
    ns = NotifySocket(site / "notify.sock")
    d = Daemon(cfg, env={"NOTIFY_SOCKET": str(ns.path), "WATCHDOG_USEC": "1000000"})
    try:
        d.wait("READY=1", lambda: "READY" in ns.keys(), timeout=60)
        # READY only once the metrics port is up (and so config and model are done).
        assert d.value("camwatch_cameras") == 2
        ready_at = next(t for t, m in ns.messages if "READY" in m)
        d.wait("two checks per camera", lambda: all(
            (d.value("camwatch_checks_total", camera=c, result="ok") or 0) >= 2 for c in "ab"))
        d.wait("WATCHDOG=1 pings", lambda: sum(1 for t, m in ns.messages
                                              if "WATCHDOG" in m and t > ready_at) >= 2, timeout=10)
        statuses = [m["STATUS"] for _, m in ns.messages if "STATUS" in m]
        assert any("2 ok" in s for s in statuses), statuses
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert "STOPPING" in ns.keys()
    finally:
        d.stop()
        ns.close()


def test_sigterm_with_hung_camera_exits_within_10s(site):
    hung = SilentServer()
    cameras = cams(site, "a") + [{"id": "hung", "url": f"http://u:{SECRET}@127.0.0.1:{hung.port}/s.jpg",
                                  "timeout": 20}]
    cfg = write_config(site / "cameras.yaml", cameras, model=str(site / "grid.onnx"), device="cpu")
    d = Daemon(cfg)
    try:
        d.wait("camera a ok", lambda: d.state("a") == "ok")
        d.wait("a fetch hanging on the hung camera", lambda: hung.conns)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.proc.wait(15)
        took = time.monotonic() - t0
        assert code == 0 and took < 10, (code, took)
        assert SECRET not in d.log()
    finally:
        d.stop()
        hung.close()


def test_sighup_adds_removes_and_rejects_broken_config(site):
    cfg = write_config(site / "cameras.yaml", cams(site, "a", "b"), model=str(site / "grid.onnx"),
                       device="cpu")
    d = Daemon(cfg)
    try:
        d.wait("a and b ok", lambda: d.state("a") == "ok" and d.state("b") == "ok")
        doc = yaml.safe_load(cfg.read_text())
        doc["cameras"] = cams(site, "a", "c")
        cfg.write_text(yaml.safe_dump(doc))
        checks_a = d.value("camwatch_checks_total", camera="a", result="ok")
        d.signal(signal.SIGHUP)
        d.wait("c added, b removed", lambda: d.cameras() == {"a", "c"})
        d.wait_state("c", "ok")
        # a was unchanged: its runtime (and counters) carried on.
        assert d.value("camwatch_checks_total", camera="a", result="ok") >= checks_a
        assert d.value("camwatch_config_reloads_total", result="ok") == 1

        cfg.write_text(cfg.read_text() + "\n  - id: BAD ID!\n    url: [\n")
        d.signal(signal.SIGHUP)
        d.wait("reload rejected", lambda: d.value("camwatch_config_reloads_total", result="error") == 1)
        assert "reload rejected" in d.log()
        before = d.value("camwatch_checks_total", camera="c", result="ok")
        d.wait("checks go on after a rejected reload",
               lambda: d.value("camwatch_checks_total", camera="c", result="ok") > before + 1)
        assert d.cameras() == {"a", "c"}
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0
