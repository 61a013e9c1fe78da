"""Running a real ``camwatch`` process in tests: configs, /metrics, logs, waiting.

The daemon tests drive the installed code as a user does (a subprocess with a
config file), read its real /metrics endpoint and its real log output, and
send it real signals. Helpers here only start, read and wait; they decide
nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    """A real GET on the loopback (a daemon's /healthz or /readyz): (status, body), errors included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def write_config(path: Path, cameras: list[dict], **settings: Any) -> Path:
    """A cameras YAML with short intervals; ``settings`` override the test defaults.

    Rewriting an existing file keeps its metrics port (a reload cannot move it).
    """
    port = None
    if path.is_file():
        try:
            port = yaml.safe_load(path.read_text())["settings"]["metrics"]["port"]
        except (TypeError, KeyError, yaml.YAMLError):
            port = None
    base = {"state_dir": str(path.parent / "state"), "interval": 1, "timeout": 3, "confirm": 2,
            "recover": 1, "calibration": {"checks": 0}, "workers": 4,
            "metrics": {"address": "127.0.0.1", "port": port or free_port()}}
    base.update(settings)
    path.write_text(yaml.safe_dump({"settings": base, "cameras": cameras}, sort_keys=False))
    return path


def camwatch(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the camwatch CLI to completion, as a user would."""
    return subprocess.run([sys.executable, "-m", "camwatch", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


class Daemon:
    """A ``camwatch --config F`` subprocess with its log in a file."""

    def __init__(self, config: Path, env: dict | None = None, log_level: str = "DEBUG"):
        self.config = config
        cfg = yaml.safe_load(config.read_text())
        self.port = cfg["settings"]["metrics"]["port"]
        self.log_path = config.parent / "camwatch.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "camwatch", "--log-level", log_level, "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})

    # -- reading ------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=3) as r:
            return r.read().decode()

    def samples(self) -> dict[tuple[str, tuple], float]:
        """(sample name, sorted label items) -> value, from the live /metrics."""
        out = {}
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        try:
            return self.samples().get((name, tuple(sorted(labels.items()))))
        except OSError:
            return None

    def state(self, camera: str) -> str | None:
        """The camera's state as /metrics tells it (the state label whose value is 1)."""
        try:
            samples = self.samples()
        except OSError:
            return None
        for (name, labels), v in samples.items():
            d = dict(labels)
            if name == "camwatch_camera_state" and d.get("camera") == camera and v == 1:
                return d["state"]
        return None

    def cameras(self) -> set[str]:
        return {dict(labels)["camera"] for (n, labels), _ in self.samples().items()
                if n == "camwatch_camera_state"}

    # -- waiting ------------------------------------------------------------------
    def wait(self, what: str, cond: Callable[[], Any], timeout: float = 60, step: float = 0.25) -> Any:
        """Poll ``cond`` until truthy; fail with the log tail naming what was awaited."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"camwatch exited ({self.proc.returncode}) while waiting for "
                                     f"{what}:\n{self.log()[-3000:]}")
            try:
                got = cond()
            except OSError:
                got = None
            if got:
                return got
            time.sleep(step)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.log()[-3000:]}")

    def wait_state(self, camera: str, state: str, timeout: float = 60) -> None:
        self.wait(f"camera {camera} {state}", lambda: self.state(camera) == state, timeout)

    # -- signals ------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class SilentServer:
    """Accepts TCP connections and never sends a byte (a camera hung mid-handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
