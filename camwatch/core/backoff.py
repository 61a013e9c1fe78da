"""Retry delays for anything that fails and is tried again (cameras, webhooks).

One policy for the whole daemon: the ceiling grows as ``min(cap, base * 2**n)``
and each delay is drawn below it. Jitter spreads the retries of many cameras or
sinks that failed together (a switch reboot, a receiver restart) instead of
hammering the far side in lockstep. Cameras use *full* jitter (any delay up to
the ceiling: reconnects should start fast); webhook sinks keep most of the
delay (``jitter=0.2``) so a receiver that is down is not probed again at once.
``reset`` after a success so the next outage starts fast again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff; a delay is ``ceiling * (1 - jitter * U)``, U uniform in [0, 1).

    ``attempts`` counts the delays handed out by ``next_delay``.
    """

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 1.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def ceiling(self, attempts: int | None = None) -> float:
        """The largest delay the given (default: next) attempt can get."""
        n = self.attempts if attempts is None else attempts
        return float(min(self.cap, self.base * (2 ** min(max(n, 0), 30))))

    def _draw(self, ceiling: float) -> float:
        return ceiling * (1.0 - self.jitter * self.rng.random())

    def next_delay(self) -> float:
        delay = self._draw(self.ceiling())
        self.attempts += 1
        return delay

    def delay(self, attempts: int) -> float:
        """The delay before retry number ``attempts`` (1-based), for callers that keep the count themselves
        (the outbox keeps it per row, across restarts)."""
        return self._draw(self.ceiling(attempts - 1))

    def reset(self) -> None:
        self.attempts = 0
