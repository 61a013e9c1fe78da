"""sd_notify against a real bound AF_UNIX datagram socket, as systemd provides it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

from camwatch.service import notify


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def _recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_each_message_is_one_datagram(notify_socket):
    assert notify.ready("3 cameras ok")
    msg = _recv(notify_socket)
    assert msg["READY"] == "1" and msg["MAINPID"] == str(os.getpid())
    assert msg["STATUS"] == "3 cameras ok"

    assert notify.watchdog()
    assert _recv(notify_socket) == {"WATCHDOG": "1"}

    assert notify.status("2 ok,\n1 drifted")  # a newline would end the field: folded to one line
    assert _recv(notify_socket) == {"STATUS": "2 ok, 1 drifted"}

    assert notify.reloading()
    msg = _recv(notify_socket)
    assert msg["RELOADING"] == "1"
    mono = int(msg["MONOTONIC_USEC"])
    assert abs(mono - time_monotonic_usec()) < 5_000_000

    assert notify.stopping()
    assert _recv(notify_socket) == {"STOPPING": "1"}


def time_monotonic_usec() -> int:
    import time
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_abstract_socket_name(monkeypatch):
    name = f"camwatch-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.stopping()
        assert sock.recv(100) == b"STOPPING=1"
    finally:
        sock.close()


def test_from_a_child_process_like_the_daemon(notify_socket):
    """The daemon is a separate process: the env var alone must be enough."""
    code = "from camwatch.service import notify; notify.ready(); notify.watchdog(); notify.stopping()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, env=os.environ.copy())
    got = [_recv(notify_socket) for _ in range(3)]
    assert got[0]["READY"] == "1"
    assert got[1] == {"WATCHDOG": "1"}
    assert got[2] == {"STOPPING": "1"}


def test_no_op_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    assert notify.watchdog() is False


def test_unreachable_socket_does_not_raise(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert notify.watchdog() is False  # logged, never raised: the daemon must keep running


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # inherited, meant for another process
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert notify.watchdog_interval() is None
