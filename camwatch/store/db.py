"""The one way camwatch opens and writes its SQLite files (``camwatch.db``, ``events.db``).

References and events must both survive a crash or power cut, so both stores
follow the same rules, kept here once:

* WAL journal and ``synchronous=FULL``: a commit that returned is on disk;
  readers (the CLI) never block the daemon's writes.
* A busy timeout, so the CLI and the daemon share a file through SQLite's own
  locking instead of failing at once.
* ``PRAGMA quick_check`` on open: a damaged file is reported with what to do,
  and never recreated over (a monitor that silently forgot its references
  would re-baseline on whatever the camera shows, possibly the tampered view).
* A versioned schema: ``PRAGMA user_version`` counts the migration steps
  applied; each store lists its steps and they run forward, in one
  transaction, on open. A file newer than this camwatch is refused.
* Transactions as ``BEGIN IMMEDIATE ... COMMIT`` under a thread lock, with
  every SQLite error turned into one ``StoreError`` line.

Foreign keys stay off (SQLite's default): no store relies on them; the
outbox's ``REFERENCES`` documents the link and ``EventStore.prune`` deletes
in order.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from camwatch.core.errors import StoreError

BUSY_TIMEOUT_MS = 10_000

#: A value SQLite accepts as a statement parameter.
Param = str | bytes | int | float | None


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory if needed and prove it is writable, or say how to fix it."""
    if state_dir.exists() and not state_dir.is_dir():
        raise StoreError(f"state directory {state_dir}: exists but is not a directory; "
                         f"set settings.state_dir to a folder")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"state directory {state_dir}: cannot create it ({exc.strerror or exc}); create it and let "
            f"camwatch write there, or set settings.state_dir to a writable folder") from None
    # Try a real write: os.access lies under root, ACLs and read-only mounts.
    probe = state_dir / f".camwatch-write-test-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StoreError(
            f"state directory {state_dir}: cannot write there ({exc.strerror or exc}); give the user "
            f"camwatch runs as write access, or set settings.state_dir to a writable folder") from None


def corrupt_error(path: Path, reason: object, lost: str) -> StoreError:
    """The error for a file SQLite cannot read; ``lost`` says what moving it aside costs."""
    return StoreError(
        f"database {path}: unreadable or corrupt ({reason}); camwatch will not overwrite it: "
        f"move it aside ({lost}) or restore it from a backup")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite may already have rolled it back)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


class Database:
    """One connection to one store file, shared by threads behind a lock.

    Why one connection and a lock: each store does a few small statements per
    check or event, so a lock costs nothing and keeps transactions simple.
    Other processes coordinate through SQLite's locking and the busy timeout.
    ``writes`` counts commits made here (a store caching reads compares it).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lost: str):
        self.path = path
        self.conn = conn
        self.lock = threading.RLock()
        self.writes = 0
        self._lost = lost

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def error(self, exc: sqlite3.DatabaseError, doing: str = "") -> StoreError:
        """A StoreError for ``exc``: a transient failure as it is, anything else as a damaged file."""
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(f"database {self.path}: {f'cannot {doing}: ' if doing else ''}{exc}")
        return corrupt_error(self.path, exc, self._lost)

    def read(self, sql: str, params: Sequence[Param] = ()) -> list[tuple[Any, ...]]:
        """Rows as SQLite gives them (its columns are dynamically typed: ``Any`` is the truth)."""
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self.error(exc) from None

    def write(self, sql: str, params: Sequence[Param] = (), doing: str = "") -> int:
        """One statement, committed on its own; returns the rows it changed."""
        with self.lock:
            try:
                changed = self.conn.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                raise self.error(exc, doing) from None
            finally:
                self.writes += 1
            return int(changed)

    @contextmanager
    def transaction(self, doing: str = "") -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the lock; rolled back on any error.

        SQLite errors inside become StoreError (``doing`` names the work in the
        message); other exceptions pass through after the rollback.
        """
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise self.error(exc, doing) from None
            try:
                yield self.conn
            except sqlite3.DatabaseError as exc:
                rollback(self.conn)
                raise self.error(exc, doing) from None
            except BaseException:
                rollback(self.conn)
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                rollback(self.conn)
                raise self.error(exc, doing) from None
            finally:
                self.writes += 1      # whatever happened, cached reads are void


def open_database(path: Path, migrations: Sequence[str], *, lost: str, verify: bool = True) -> Database:
    """Open (creating if needed) a store file with camwatch's pragmas, checked and migrated.

    ``migrations[i]`` takes the schema from version ``i`` to ``i + 1``: statements
    separated by ``;``. ``lost`` is what a user loses by moving a damaged file aside
    (named in the error). ``verify=False`` skips the quick_check (tests, tools).
    """
    if path.exists() and not path.is_file():
        raise StoreError(f"database {path}: exists but is not a file; move it aside")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"database {path}: cannot open it ({exc})") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"database {path}: cannot use WAL journal mode (got {mode}); "
                             f"put settings.state_dir on a local file system")
        conn.execute("PRAGMA synchronous = FULL")
        if verify:
            bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
            if bad != ["ok"]:
                raise corrupt_error(path, "; ".join(map(str, bad[:3])), lost)
        _migrate(conn, path, migrations)
    except StoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StoreError(f"database {path}: locked by another process for over "
                             f"{BUSY_TIMEOUT_MS // 1000} s ({exc})") from None
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
            raise StoreError(f"database {path}: read-only ({exc}); give the user camwatch "
                             f"runs as write access to it and its folder") from None
        raise corrupt_error(path, exc, lost) from None
    return Database(path, conn, lost)


def _migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[str]) -> None:
    target = len(migrations)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > target:
        raise StoreError(f"database {path}: schema version {version} is newer than this "
                         f"camwatch knows ({target}); upgrade camwatch")
    if version == target:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read inside the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in migrations[version:]:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
