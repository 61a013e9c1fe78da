"""The reference store's identity, kept beside it: an empty or foreign store is refused, never adopted.

SQLite takes a missing or 0-byte file for a new, empty database. For
``camwatch.db`` that is the worst possible reading: a monitor that forgot its
references re-baselines on whatever the cameras show now (with
``auto_enroll``, the tampered view). So when a store is first created it gets
a random id, kept inside it (table ``store_identity``) and in the marker file
``<state_dir>/store-id``. On every open:

* marker present, database missing or 0 bytes: refused (the store was lost);
* marker present, database holding another id or none: refused (another
  installation's file, or a fresh one put in its place);
* no marker: the database's id is written to it (created first if the store
  is new, or was made by a camwatch before this check).

Deleting the marker is how an operator starts afresh on purpose; the error
says so. The marker is written after the id is committed, so a crash between
the two leaves a store that simply writes its marker again next time.

A shared PostgreSQL store (``store.pg``) has one id for the whole fleet, in
the same table; each member keeps the marker in its own state directory. The
same rules hold with "missing or empty" read as "the database holds no
camwatch schema" (``check_shared``): a member pointed at a new or emptied
database, or at another fleet's, refuses to start rather than judge its
cameras against nothing. A member whose state directory is new (a first
start, or a pod without a persistent volume) has no marker and adopts the
store it finds: the marker protects a member that has been running, not
one that never has.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from camwatch.core.errors import StoreError
from camwatch.store.backend import SQLITE, Database

MARKER_NAME = "store-id"
_ID = re.compile(r"^[0-9a-f]{32}$")
#: The most of a marker file read: a real one holds 33 bytes.
_MARKER_MAX = 4096


def has_content(path: Path) -> bool:
    """Whether ``path`` is a file with at least one byte (SQLite would treat anything less as a new store)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"database {path}: cannot read it ({exc.strerror or exc})") from None


def read_marker(path: Path) -> str | None:
    """The store id the marker names; None when there is no marker."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MARKER_MAX)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"store marker {path}: cannot read it ({exc.strerror or exc})") from None
    text = raw.decode("ascii", errors="replace").strip()
    if not _ID.match(text):
        raise StoreError(f"store marker {path}: not a camwatch store id; restore it from a backup, "
                         f"or delete it to start a new store on purpose")
    return text


def write_marker(path: Path, store_id: str) -> None:
    """Write the marker atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(store_id + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise StoreError(f"store marker {path}: cannot write it ({exc.strerror or exc})") from None


def _refused(db: Database | Path, marker: Path, what: str) -> StoreError:
    if isinstance(db, Path) or db.dialect == SQLITE:
        where = str(db if isinstance(db, Path) else db.where)
        restore = f"restore {Path(where).name} from a backup"
    else:
        where = db.where
        restore = "restore the database from a backup or point settings.store at the one this member used"
    return StoreError(
        f"database {where}: {what}; camwatch will not start an empty store in its place "
        f"(cameras would be judged against new references, or auto_enroll would take today's views): "
        f"{restore}, or to start afresh on purpose delete {marker} "
        f"(every camera then needs enrolling again)")


def check_before_open(db_path: Path, marker: Path) -> str | None:
    """Refuse a store the marker says existed but which is now missing or empty; the marker's id.

    Called before SQLite opens (and so creates) the file. The marker is read
    first: a store's creator commits its id before writing the marker, so a
    marker seen here means the file had content by then.
    """
    expected = read_marker(marker)
    if expected is not None:
        if not db_path.exists():
            raise _refused(db_path, marker, f"missing, but {marker} says store {expected[:8]} was kept here")
        if not has_content(db_path):
            raise _refused(db_path, marker, f"empty (0 bytes), but {marker} says store {expected[:8]} "
                                            f"was kept here")
    return expected


def check_shared(schema_version: int, db: Database, marker: Path) -> str | None:
    """``check_before_open`` for a shared database: refuse one that holds no camwatch schema where the
    marker says a store was kept; the marker's id. Called before the schema is created."""
    expected = read_marker(marker)
    if expected is not None and schema_version == 0:
        raise _refused(db, marker, f"holds no camwatch store, but {marker} says store {expected[:8]} was kept there")
    return expected


def claim(db: Database, marker: Path, expected: str | None) -> str:
    """The store's id, checked against the marker's (``check_before_open``), or created with the marker.

    Needs the store's ``store_identity`` table (a migration of the store).
    """
    rows = db.read("SELECT id FROM store_identity LIMIT 1")
    stored = str(rows[0][0]) if rows else None
    if expected is not None:
        if stored is None:
            raise _refused(db, marker, f"has no store id, but {marker} says store {expected[:8]} "
                                            f"was kept here (a new or another installation's file?)")
        if stored != expected:
            raise _refused(db, marker, f"is store {stored[:8]} of another installation, but {marker} "
                                            f"says store {expected[:8]} was kept here")
        return stored
    if stored is None:
        # Two processes creating the store at once agree: only the first insert takes (writers are
        # serialized: SQLite's write lock, the PostgreSQL store's advisory lock).
        with db.transaction("create the store's identity") as conn:
            conn.execute("INSERT INTO store_identity (id) SELECT ? WHERE NOT EXISTS "
                         "(SELECT 1 FROM store_identity)", (secrets.token_hex(16),))
        stored = str(db.read("SELECT id FROM store_identity LIMIT 1")[0][0])
    write_marker(marker, stored)
    return stored
