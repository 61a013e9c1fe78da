"""One daemon per state directory: an exclusive lock held for the daemon's life.

Two daemons on one state directory both check every camera, so every alert
is raised twice (two webhooks under two ids, two evidence pictures, and not
always the same kind named). The daemon therefore holds ``fcntl.flock`` on
``<state_dir>/camwatch.lock`` from before it touches a store until it ends.
The kernel drops a flock when the process ends however it ends (kill -9,
crash, power), so a stale lock can never keep a daemon from starting; the
pid written into the file after locking only names the holder in the error.

Commands that write while the daemon runs (``enroll``, ``references
remove``) take no lock of their own: SQLite's locking already serialises
their transactions with the daemon's, and they must keep working while the
daemon runs. The lock guards against the one thing SQLite cannot: a second
monitor acting on the same store.

With a shared PostgreSQL store (``settings.store``) several daemons run on
one store by design, one per member of a fleet, each with its own state
directory; the lock is then what it always was underneath: one daemon per
state directory, for the files only that directory holds (evidence pictures,
the store-id marker) and for the outbox owner named after it
(``store.events.default_owner``: two daemons on one state directory would
take each other's claimed deliveries for their own). It does not, and cannot,
keep two members from checking the same camera: sharing the cameras out is
the fleet's job, not the store's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from camwatch.core.errors import StoreError
from camwatch.store.db import prepare_state_dir

LOCK_NAME = "camwatch.lock"


class StateLock:
    """The held lock: an open file with an exclusive flock; ``release`` (or process exit) drops it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Drop the lock (closing the file drops the flock). The file stays: removing it would race."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(path: Path) -> int | None:
    """The pid the lock file names, or None (unreadable, or the holder has not written it yet)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_state_dir(state_dir: str | os.PathLike[str]) -> StateLock:
    """Take ``<state_dir>/camwatch.lock`` exclusively, or a StoreError naming the daemon that holds it.

    Never waits: a second daemon must fail at once (systemd shows the line),
    not start later behind the first.
    """
    state = Path(state_dir)
    prepare_state_dir(state)
    path = state / LOCK_NAME
    try:
        # O_CLOEXEC (Python's default): a child process must never inherit and outlive the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"state directory {state}: cannot open the lock file {path} "
                         f"({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            pid = holder_pid(path)
            for _ in range(5):       # the holder writes its pid just after locking
                if pid is not None:
                    break
                time.sleep(0.02)
                pid = holder_pid(path)
            who = f"pid {pid}" if pid is not None else "pid unknown"
            raise StoreError(
                f"state directory {state}: another camwatch daemon ({who}) is running on it "
                f"(lock {path}); stop that one, or give this one its own settings.state_dir") from None
        raise StoreError(f"state directory {state}: cannot lock {path} ({exc.strerror or exc}); "
                         f"put settings.state_dir on a local file system") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass    # the lock is what matters; the pid only makes the other daemon's error nicer
    return StateLock(path, fd)
