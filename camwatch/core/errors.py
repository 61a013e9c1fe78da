"""Errors of our own, each carrying a message a user can act on.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``;
nothing a user can cause should reach them as a traceback.
"""

from __future__ import annotations


class CamwatchError(Exception):
    """Base of every error camwatch raises on purpose."""

    exit_code = 2


class ConfigError(CamwatchError):
    """The configuration cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ModelError(CamwatchError):
    """The model file is missing, unreadable or not shaped as camwatch needs."""


class SourceError(CamwatchError):
    """A camera could not give a frame.

    ``reason`` is a short, bounded label (used as a metrics label):
    connect, timeout, stalled, ended, http_status, not_image, too_large,
    decode, auth, unsupported.
    """

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class StoreError(CamwatchError):
    """The state directory or its database cannot be used."""


class EnrolmentError(CamwatchError):
    """A reference cannot be enrolled (bad image, unknown camera...)."""


class ActionError(CamwatchError):
    """An operator's action cannot be done (unknown camera, bad period, the last reference ...);
    nothing was changed. ``status`` is the HTTP status the console and its API answer with."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)
