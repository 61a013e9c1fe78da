"""sd_notify without a dependency: tell systemd we are ready, alive, reloading, stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named
in ``$NOTIFY_SOCKET`` (a leading ``@`` means a Linux abstract name). Outside
systemd the variable is absent and every call is a cheap no-op, so the daemon
calls these functions unconditionally. A notification must never stop the
daemon: send errors are logged once and swallowed, and the send cannot block
(non-blocking socket, bounded by a short timeout).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

_warned = False


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``) as one datagram; True if it was sent.

    Returns False without doing anything when not run by systemd
    (``$NOTIFY_SOCKET`` unset), and False after logging a warning (once) when
    the socket cannot be reached: a missed notification is systemd's problem to
    report (a watchdog timeout), not a reason for the daemon to fail.
    """
    global _warned
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw or not lines:
        return False
    if not (raw.startswith("/") or raw.startswith("@")):
        # vsock addresses (vsock:CID:PORT) exist for VMs; not used by services.
        if not _warned:
            log.warning("NOTIFY_SOCKET %r is not a unix socket path; sd_notify disabled", raw)
            _warned = True
        return False
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            sock.sendto(payload, _address(raw))
        return True
    except OSError as exc:
        if not _warned:
            log.warning("sd_notify to %s failed: %s", raw, exc)
            _warned = True
        return False


def ready(status: str | None = None) -> bool:
    """Start-up is complete (config loaded, model warm, metrics port bound)."""
    lines = ["READY=1", f"MAINPID={os.getpid()}"]
    if status:
        lines.append(f"STATUS={_one_line(status)}")
    return notify(*lines)


def watchdog() -> bool:
    """Keep-alive; call only while checks are really making progress."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """One-line human summary shown by ``systemctl status``."""
    return notify(f"STATUS={_one_line(text)}")


def stopping() -> bool:
    """Shutdown has begun; systemd will not treat the exit as a crash."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """A reload (SIGHUP) has begun; send ``ready()`` again when it is done.

    MONOTONIC_USEC is required by ``Type=notify-reload`` (systemd >= 253) and
    harmless for ``Type=notify``.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def watchdog_interval() -> float | None:
    """Seconds between ``watchdog()`` pings: half of ``$WATCHDOG_USEC``, or None.

    None when systemd set no watchdog, or when ``$WATCHDOG_PID`` names another
    process (the variables were inherited, not meant for us).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1e6 / 2


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
