"""Blocking calls with a hard deadline: the guarantee that no camera (or webhook) can hang a check.

Libraries bound their own waits only per operation (a socket read, an FFmpeg
open), and some not at all (a DNS lookup, a file on a dead NFS mount). So each
blocking call runs in a daemon worker thread that the caller waits for with a
deadline; past it the caller gets its error and goes on, and the worker is
*abandoned*: counted until it ends, never killed (Python cannot). A ``Bounded``
starts no second worker while its previous one is still hung, and the process
refuses new calls past ``MAX_ABANDONED`` hung ones, so a hung server cannot
pile up threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")

#: Extra seconds a caller waits past a camera's timeout for its worker to report.
DEADLINE_SLACK_S = 0.5
#: Abandoned (hung) worker threads allowed process-wide before new calls are refused.
MAX_ABANDONED = 64

_abandoned_lock = threading.Lock()
_abandoned = 0


def abandoned_workers() -> int:
    """How many workers were given up on and are still running (hung in a library)."""
    return _abandoned


class _Worker:
    """One call in a daemon thread; ``wait`` gives up after a deadline and counts the worker as abandoned."""

    def __init__(self, fn: Callable[[], object], name: str):
        self.result: object = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.abandoned = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)

    def _run(self, fn: Callable[[], object]) -> None:
        global _abandoned
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            with self._lock:
                self.done.set()
                if self.abandoned:
                    # Nobody will read what a call given up on made: let it go now. Kept, a
                    # frame decoded past the deadline stayed alive until the owner's next call.
                    self.result = self.error = None
                    with _abandoned_lock:
                        _abandoned -= 1

    def start(self) -> None:
        self._thread.start()

    def wait(self, seconds: float) -> bool:
        if self.done.wait(max(0.0, seconds)):
            return True
        global _abandoned
        with self._lock:
            if self.done.is_set():
                return True
            self.abandoned = True
            with _abandoned_lock:
                _abandoned += 1
        return False

    @property
    def alive(self) -> bool:
        return not self.done.is_set()


class Bounded:
    """Runs one owner's blocking calls in workers with a hard deadline, one at a time.

    ``fail(reason, what)`` makes the owner's error (a camera's SourceError, the
    HTTP client's HttpError); the reason is always ``timeout`` here. The worker
    is remembered before waiting, so a call given up on keeps the owner from
    starting another until it has ended: at most one hung thread per owner.
    """

    def __init__(self, name: str, fail: Callable[[str, str], Exception]):
        self.name = name
        self._fail = fail
        self.worker: _Worker | None = None

    @property
    def busy(self) -> bool:
        """Whether the last call's worker is still running (hung, if the call returned)."""
        return self.worker is not None and self.worker.alive

    def call(self, fn: Callable[[], T], seconds: float, late: str | None = None) -> T:
        """``fn()`` in a worker, waited for ``seconds``; past it the owner's error with ``late``
        (default: "no answer within N s")."""
        if self.busy:
            raise self._fail("timeout", "the previous attempt is still hung; not starting another")
        if _abandoned >= MAX_ABANDONED:
            raise self._fail("timeout", f"{_abandoned} hung fetches in this process; refusing more")
        self.worker = worker = _Worker(fn, self.name)
        worker.start()
        if not worker.wait(seconds):
            raise self._fail("timeout", late or f"no answer within {seconds:.1f} s")
        # Hand the outcome over and drop it here: the worker stays remembered (for the
        # hung check above) and would otherwise keep the last frame alive per camera
        # (0.7 MB at 640x360; measured: RSS 1.1 GB at 1,000 HTTP cameras).
        error, result = worker.error, worker.result
        worker.error = worker.result = None
        if error is not None:
            raise error
        return cast(T, result)  # what fn() returned, since it raised nothing
