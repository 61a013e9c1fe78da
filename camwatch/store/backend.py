"""The interface both store backends implement: SQLite files under the state directory, or one shared
PostgreSQL database.

Why one small interface rather than two stores: references, calibration, events and the outbox are
written once, in ``references.py`` and ``events.py``, against ``Database`` below, in the SQL both
dialects agree on (placeholders are written ``?``; the PostgreSQL backend turns them into ``%s``).
What differs lives in the backends: how a file or a server is opened, checked and migrated
(``db.py``, ``pg.py``), what a lost connection or a damaged file means, and each store's list of
migrations per dialect (a table's types are the one thing the two cannot share).

Where the dialects disagree in a statement the stores avoid the construct (``RETURNING`` instead of
``lastrowid``, ``ON CONFLICT DO NOTHING`` instead of ``INSERT OR IGNORE``) or ask ``dialect`` (the
outbox's ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

#: A value either backend accepts as a statement parameter.
Param = str | bytes | int | float | None

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
#: URL schemes that select the PostgreSQL backend (``settings.store``).
POSTGRES_SCHEMES = ("postgresql", "postgres")


class Cursor(Protocol):
    """What a statement gives back inside a transaction."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """A transaction's connection: statements with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Param] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Param]], /) -> object: ...


class Database(Protocol):
    """One store's database, safe to share between threads; every failure is a one-line ``StoreError``.

    ``where`` names it in messages (a file path, or a URL without its password). ``lock`` is held
    by a store that must read twice without another thread of its own writing between
    (``ReferenceStore._cached``). ``version()`` changes whenever anything was committed, here or by
    another process or host, so reads may be cached until it does.
    """

    where: str
    dialect: str

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def read(self, sql: str, params: Sequence[Param] = ()) -> list[tuple[Any, ...]]: ...

    def write(self, sql: str, params: Sequence[Param] = (), doing: str = "") -> int: ...

    def transaction(self, doing: str = "", *, checkpoint: bool = True) -> AbstractContextManager[Tx]: ...

    def version(self) -> object: ...

    def close(self) -> None: ...


def is_postgres(url: str | None) -> bool:
    """Whether ``settings.store`` names a PostgreSQL database (None: the SQLite files under state_dir)."""
    return bool(url) and str(url).split(":", 1)[0].lower() in POSTGRES_SCHEMES


def marks(n: int) -> str:
    """``?, ?, ?`` for an ``IN (...)`` of ``n`` values (n >= 1: PostgreSQL refuses an empty list)."""
    return ",".join("?" * n)
