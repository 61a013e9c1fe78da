"""The SQLite backend (``store.backend``): how camwatch opens and writes its files (``camwatch.db``,
``events.db``) when ``settings.store`` is not set. The PostgreSQL backend is ``store.pg``.

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
* A write is reported done only once it is in the main file: each commit is
  followed by a checkpoint. Why: the write-ahead log and its index
  (``-wal``, ``-shm``) are separate files; deleted under a running process,
  they took with them writes that had been reported stored (two references
  ``enroll`` printed vanished, also after a restart). Each access also checks
  that the log files are still the ones this connection opened (their inodes);
  if not, the connection is reopened on the new ones (it would otherwise read
  and write a log no other process sees), and a main file deleted, emptied or
  replaced under the process is refused rather than written into.

Foreign keys stay off (SQLite's default): no store relies on them; the
outbox's ``REFERENCES`` documents the link and ``EventStore.prune`` deletes
in order.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from camwatch.core.errors import StoreError
from camwatch.store.backend import SQLITE, Param

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
#: The files SQLite keeps beside a WAL database: the log, and the log's index.
SIDECARS = ("-wal", "-shm")

__all__ = ["Database", "Param", "open_database", "prepare_state_dir"]


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


FileId = tuple[int, int]


def _file_id(path: str) -> tuple[FileId, int] | None:
    """(device, inode) and size of a file, or None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino), st.st_size


class Database:
    """One connection to one store file, shared by threads behind a lock.

    Why one connection and a lock: each store does a few small statements per
    check or event, so a lock costs nothing and keeps transactions simple.
    Other processes coordinate through SQLite's locking and the busy timeout.
    ``writes`` counts commits made here (a store caching reads compares it);
    a reopened connection counts as one too.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lost: str):
        self.path = path
        self.where = str(path)
        self.dialect = SQLITE
        self.conn = conn
        self.lock = threading.RLock()
        self.writes = 0
        self._lost = lost
        self._files = (str(path), *(f"{path}{suffix}" for suffix in SIDECARS))
        opened = _file_id(self._files[0])
        self._main: FileId | None = opened[0] if opened else None
        self._sidecars: tuple[FileId, ...] | None = self._sidecar_ids()
        self._broken: str | None = None

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def version(self) -> tuple[int, int]:
        """Changes whenever anything was committed: by us (``writes``) or by another connection."""
        with self.lock:
            return (int(self.read("PRAGMA data_version")[0][0] or 0), self.writes)

    def error(self, exc: sqlite3.DatabaseError, doing: str = "") -> StoreError:
        """A StoreError for ``exc``: a transient failure as it is, anything else as a damaged file."""
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(f"database {self.path}: {f'cannot {doing}: ' if doing else ''}{exc}")
        return corrupt_error(self.path, exc, self._lost)

    # -- the files under the connection ----------------------------------------------

    def _sidecar_ids(self) -> tuple[FileId, ...] | None:
        """The log and index files' ids, or None while either does not exist (not opened yet)."""
        ids = []
        for name in self._files[1:]:
            found = _file_id(name)
            if found is None:
                return None
            ids.append(found[0])
        return tuple(ids)

    def _guard(self) -> None:
        """Before any access: the files must still be the ones this connection uses (see the module doc)."""
        if self._broken:
            raise StoreError(self._broken)
        main = _file_id(self._files[0])
        if main is None or main[0] != self._main or main[1] == 0:
            what = "deleted" if main is None else "emptied" if main[1] == 0 else "replaced"
            raise StoreError(f"database {self.path}: {what} while camwatch had it open; nothing more is "
                             f"written to it: restore it from a backup, then restart camwatch")
        now = self._sidecar_ids()
        if self._sidecars is None:
            self._sidecars = now          # the first access created them
        elif now != self._sidecars:
            self._reopen()

    def _reopen(self) -> None:
        """The log or its index was deleted or replaced: move this connection onto the current ones.

        Everything committed here already reached the main file (a checkpoint
        follows every commit); one more checkpoint through the old log saves
        anything a failed checkpoint left in it. Closing the old connection
        while another process is connected neither checkpoints again nor
        deletes the new files (SQLite does that only as the last connection).
        """
        log.warning("database %s: its write-ahead log files were deleted or replaced under camwatch; "
                    "reopening it (every write reported stored is in the main file)", self.path)
        self._checkpoint()
        self.conn.close()
        self.writes += 1                  # another connection: cached reads are void
        try:
            self.conn = _connect(self.path)
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()   # opens the new log
        except (sqlite3.Error, StoreError) as exc:
            self._broken = (f"database {self.path}: cannot reopen it after its write-ahead log was "
                            f"deleted ({exc}); restart camwatch")
            raise StoreError(self._broken) from None
        self._sidecars = self._sidecar_ids()
        if self._sidecars is None:
            # Another connection in this process still holds the old index (SQLite shares it per
            # process): this one would write where no other process looks. Stop writing.
            self._broken = (f"database {self.path}: its write-ahead log files were deleted and another "
                            f"connection in this process still uses them; restart camwatch")
            raise StoreError(self._broken)

    def _checkpoint(self) -> bool:
        """Copy the log into the main file; True when all of it got there.

        FULL waits (busy timeout) for readers of older snapshots. Not getting
        there is no failure of the write (the log is durable); a full disk
        only delays it to the next commit's checkpoint.
        """
        try:
            busy, logged, copied = self.conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        except sqlite3.Error as exc:
            log.debug("database %s: checkpoint failed: %s", self.path, exc)
            return False
        return not busy and copied == logged

    def _settle(self, checkpoint: bool = True) -> None:
        """After a commit: into the main file (unless ``checkpoint`` is False), and still in the log
        every other process reads."""
        complete = self._checkpoint() if checkpoint else False
        if self._sidecar_ids() != self._sidecars:
            # The log went away during this write: it is stored only if the checkpoint carried it over.
            self._reopen()
            if not complete:
                raise StoreError(f"database {self.path}: its write-ahead log was deleted during this "
                                 f"write; it may not be stored: try again")

    # -- access ----------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Param] = ()) -> list[tuple[Any, ...]]:
        """Rows as SQLite gives them (its columns are dynamically typed: ``Any`` is the truth)."""
        with self.lock:
            self._guard()
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self.error(exc) from None

    def write(self, sql: str, params: Sequence[Param] = (), doing: str = "") -> int:
        """One statement, committed on its own and in the main file when this returns; the rows it changed."""
        with self.lock:
            self._guard()
            try:
                changed = self.conn.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                raise self.error(exc, doing) from None
            finally:
                self.writes += 1
            self._settle()
            return int(changed)

    @contextmanager
    def transaction(self, doing: str = "", *, checkpoint: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the lock; rolled back on any error.

        SQLite errors inside become StoreError (``doing`` names the work in the
        message); other exceptions pass through after the rollback. When it
        returns, the commit is in the main file (``_settle``). ``checkpoint=False``
        is for frequent writes a lost log may cost (a calibration sample): they
        stay in the log, durable, until the next write's checkpoint (about 2 ms
        per write saved on an SSD).
        """
        with self.lock:
            self._guard()
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
            self._settle(checkpoint)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` with camwatch's pragmas (``_pragmas``); sqlite3 errors pass through."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        _pragmas(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _pragmas(conn: sqlite3.Connection, path: Path) -> None:
    """Busy timeout, WAL and synchronous=FULL (the module doc says why)."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"database {path}: cannot use WAL journal mode (got {mode}); "
                         f"put settings.state_dir on a local file system")
    conn.execute("PRAGMA synchronous = FULL")


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
        _pragmas(conn, path)
        if verify:
            bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
            if bad != ["ok"]:
                raise corrupt_error(path, "; ".join(map(str, bad[:3])), lost)
        if _migrate(conn, path, migrations):
            conn.execute("PRAGMA wal_checkpoint(FULL)")   # the new schema in the main file, as any write
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the log files exist from here
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


def _migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[str]) -> bool:
    """Run the steps this file lacks, in one transaction; whether there were any."""
    target = len(migrations)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > target:
        raise StoreError(f"database {path}: schema version {version} is newer than this "
                         f"camwatch knows ({target}); upgrade camwatch")
    if version == target:
        return False
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
    return True
