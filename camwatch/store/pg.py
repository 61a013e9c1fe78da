"""The PostgreSQL backend (``store.backend``): one database that every camwatch of a fleet shares.

Selected by ``settings.store: postgresql://user@host:port/database`` (the password from ``${ENV}``,
``${cred:NAME}``, or libpq's own ``PGPASSWORD``/``~/.pgpass``). What it keeps from the SQLite
backend's rules, and how:

* Durable when a call returns: each write is its own transaction, committed by the server
  (whose ``synchronous_commit`` and replication the operator chooses).
* A versioned schema: table ``camwatch_schema`` holds each store's version (``references``,
  ``events``: both stores may share one database); each store lists its PostgreSQL steps and
  they run forward, in one transaction, under an advisory lock (several members start at once).
  A schema newer than this camwatch is refused.
* Every failure is one ``StoreError`` line naming the database without its password. A lost
  connection fails the operation it interrupted, never the process. The pool checks a
  connection before lending it; when it has none to lend within ``POOL_WAIT_S`` (all busy, or
  it is waiting out its own reconnection backoff after an outage) the operation connects on
  its own (within ``connect_timeout`` from the URL, default ``CONNECT_TIMEOUT_S``). So the
  first operation after the server is back works, and then replaces the pool with a new one
  rather than wait for the old one's backoff.
* ``serialize=True`` (the reference store) takes a transaction advisory lock in every write
  transaction, so writers follow one another as they do on SQLite (``BEGIN IMMEDIATE``): a
  store's read-then-write steps (replace a label, remove all or none) stay correct with many
  writers. Those stores also count their commits in ``camwatch_schema.changes``: ``version()``
  reads it, so a cache sees another host's ``camwatch enroll``. The events store does without:
  its writes are idempotent upserts and its outbox claims rows with ``FOR UPDATE SKIP LOCKED``.

Connections use the pool of psycopg (``psycopg_pool``), a few per store and process.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from camwatch.core.errors import StoreError
from camwatch.core.secrets import scrub
from camwatch.store.backend import POSTGRESQL, Cursor, Param

log = logging.getLogger(__name__)
# The pool logs each failed reconnection (several lines, every backoff step); the operations that
# fail say it once each, in one line, through the caller's log.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

#: Seconds to wait for a connection when the URL sets no ``connect_timeout``.
CONNECT_TIMEOUT_S = 5
#: Connections per store and process: the daemon's checks run on a few worker threads.
POOL_SIZE = 4
#: Seconds to wait for a pooled connection before connecting directly (see the module doc).
POOL_WAIT_S = 1.0
#: The longest server message kept in an error line.
REASON_MAX = 300

_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS camwatch_schema (store TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                  "changes BIGINT NOT NULL DEFAULT 0)")
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || %s))"


def display_url(url: str) -> str:
    """``postgresql://host:port/database``: the URL without its credentials or query, for messages."""
    try:
        parts = urlsplit(url)
        return scrub(urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", "")))
    except ValueError:
        return "the PostgreSQL store (settings.store)"


@functools.lru_cache(maxsize=512)
def _sql(sql: str) -> str:
    """A statement written for both backends (``?``) in psycopg's placeholders (``%s``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _params(params: Sequence[Param]) -> tuple[Param, ...]:
    """PostgreSQL text cannot hold NUL: one in a message from a camera becomes U+FFFD rather than fail a write."""
    return tuple(p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in params)


class PgTx:
    """A transaction's connection for the stores: ``?`` statements on a psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Param] = (), /) -> Cursor:
        return self._conn.execute(_sql(sql), _params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Param]], /) -> object:
        with self._conn.cursor() as cur:
            cur.executemany(_sql(sql), [_params(r) for r in rows])
        return None


class PgDatabase:
    """One store (``store`` names it in ``camwatch_schema``) in a PostgreSQL database, through a pool.

    Opening connects once directly, so that a wrong password, host or database name is reported
    as the server said it; the pool is opened after. ``migrate`` is separate from opening so the
    reference store can first ask ``schema_version`` (an empty database where a store was kept is
    refused, ``store.identity``).
    """

    def __init__(self, url: str, store: str, *, serialize: bool = False, pool_size: int = POOL_SIZE):
        self.where = display_url(url)
        self.dialect = POSTGRESQL
        self.store = store
        self.lock = threading.RLock()
        self._serialize = serialize
        self._key = f".camwatch.{store}"
        try:
            info = conninfo_to_dict(url)
        except psycopg.Error as exc:
            reason = self._reason(exc)
            raise StoreError(scrub(f"settings.store: {self.where}: not a PostgreSQL URL ({reason})")) from None
        kwargs: dict[str, Any] = {"autocommit": True}
        if not info.get("connect_timeout"):
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        if not info.get("application_name"):
            kwargs["application_name"] = f"camwatch-{store}"
        self._url, self._kwargs, self._pool_size = url, kwargs, pool_size
        self._failing = False       # an operation failed for want of a connection since the pool was made
        self._closed = False
        try:
            psycopg.connect(url, **kwargs).close()
        except psycopg.Error as exc:
            raise self._error(exc, "connect") from None
        self._pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self._url, kwargs=self._kwargs, min_size=1, max_size=self._pool_size, open=False,
            timeout=POOL_WAIT_S, check=ConnectionPool.check_connection, name=f"camwatch-{self.store}")
        pool.open(wait=False)
        return pool

    # -- errors ---------------------------------------------------------------------

    def _reason(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return text if len(text) <= REASON_MAX else text[:REASON_MAX] + "..."

    def _error(self, exc: BaseException, doing: str = "") -> StoreError:
        """One line: the database (no password), what failed, and the server's or libpq's reason."""
        return StoreError(scrub(f"database {self.where}: {f'cannot {doing}: ' if doing else ''}{self._reason(exc)}"))

    def _acquire(self, doing: str) -> tuple[psycopg.Connection[Any], ConnectionPool[Any] | None]:
        """A connection and the pool to give it back to (None: a direct one, to close)."""
        pool = self._pool
        try:
            return pool.getconn(), pool
        except PoolTimeout:
            pass
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None
        try:
            conn: psycopg.Connection[Any] = psycopg.connect(self._url, **self._kwargs)
        except psycopg.Error as exc:
            self._failing = True
            raise self._error(exc, doing) from None
        if self._failing:
            # The server answers again while the pool still waits out its backoff: start a new pool.
            with self.lock:
                if self._failing and self._pool is pool and not self._closed:
                    self._failing = False
                    self._pool = self._new_pool()
                    threading.Thread(target=pool.close, kwargs={"timeout": 1.0}, daemon=True).start()
        return conn, None

    @contextmanager
    def _connection(self, doing: str = "") -> Iterator[psycopg.Connection[Any]]:
        conn, pool = self._acquire(doing)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            self._failing = True
            raise self._error(exc, doing) from None
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None
        finally:
            if pool is not None:
                pool.putconn(conn)
            else:
                conn.close()

    # -- the schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        """This store's schema version in the database; 0 when it has none (a new or emptied database)."""
        with self._connection("read the schema version") as conn:
            if conn.execute("SELECT to_regclass('camwatch_schema')").fetchone()[0] is None:  # type: ignore[index]
                return 0
            row = conn.execute("SELECT version FROM camwatch_schema WHERE store = %s", (self.store,)).fetchone()
        return int(row[0]) if row else 0

    def migrate(self, migrations: Sequence[str]) -> bool:
        """Run the steps this store lacks, in one transaction under an advisory lock; whether there were any."""
        target = len(migrations)
        with self._connection("migrate the schema") as conn, conn.transaction():
            conn.execute(_LOCK, (".camwatch-schema",))
            conn.execute(_VERSION_TABLE)
            row = conn.execute("SELECT version FROM camwatch_schema WHERE store = %s", (self.store,)).fetchone()
            version = int(row[0]) if row else 0
            if version > target:
                raise StoreError(f"database {self.where}: {self.store} schema version {version} is newer than "
                                 f"this camwatch knows ({target}); upgrade camwatch")
            if version == target:
                return False
            for step in migrations[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute("INSERT INTO camwatch_schema (store, version) VALUES (%s, %s) ON CONFLICT (store) "
                         "DO UPDATE SET version = EXCLUDED.version", (self.store, target))
        log.info("database %s: %s schema migrated from version %d to %d", self.where, self.store, version, target)
        return True

    # -- access ----------------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Param] = ()) -> list[tuple[Any, ...]]:
        with self._connection("read") as conn:
            return conn.execute(_sql(sql), _params(params)).fetchall()

    def write(self, sql: str, params: Sequence[Param] = (), doing: str = "") -> int:
        """One statement in its own transaction; the rows it changed."""
        with self.transaction(doing) as tx:
            return int(tx.execute(sql, params).rowcount)

    @contextmanager
    def transaction(self, doing: str = "", *, checkpoint: bool = True) -> Iterator[PgTx]:
        """A transaction on one pooled connection: committed when the block ends, rolled back on any error.

        psycopg errors become StoreError (``doing`` names the work); other exceptions pass through
        after the rollback. ``checkpoint`` means nothing here (the server decides when to write).
        """
        with self._connection(doing or "write") as conn, conn.transaction():
            if self._serialize:
                conn.execute(_LOCK, (self._key,))
            yield PgTx(conn)
            if self._serialize:
                conn.execute("UPDATE camwatch_schema SET changes = changes + 1 WHERE store = %s", (self.store,))

    def version(self) -> object:
        """The store's commit count (``serialize`` stores count theirs): another host's write changes it too."""
        return self.read("SELECT changes FROM camwatch_schema WHERE store = ?", (self.store,))[0][0]

    def close(self) -> None:
        """Close the pool now, in this thread, and stop any reconnection from making another.

        A pool left to the garbage collector stops its workers in ``__del__``, in whatever thread
        collects it, one of its own workers included ("cannot join current thread"): every
        ``PgDatabase`` is closed by its store, and a pool replaced after an outage is closed at once.
        """
        with self.lock:
            self._closed = True
            pool = self._pool
        pool.close(timeout=2.0)
