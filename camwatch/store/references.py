"""The reference store: each camera's enrolled views, kept in SQLite.

References are the one thing camwatch must never lose or silently replace:
a monitor that forgets its baseline on restart re-baselines on whatever the
camera shows then, possibly the tampered view. So the store is a SQLite file
in WAL mode with ``synchronous=FULL`` (a commit that returned survives a
crash or power cut), a versioned schema migrated forward in place, and a
corrupt file is reported, never recreated over.

Each reference keeps the enrolled image (JPEG) beside its embedding and the
identity of the model that embedded it, so a new model re-embeds the same
views (``reembed``) instead of taking new ones.

The stored image is the view *as embedded*: the camera's ROI/mask already
applied (``preprocess.apply_regions``), and ``stats`` are
``preprocess.view_stats`` of that same image. Re-embedding it therefore gives
what a check of an unchanged view gives.

``camwatch.db``'s ``PRAGMA user_version`` is this module's schema version.
Other modules that keep tables in the same file create them with
``IF NOT EXISTS`` and keep their own version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camwatch.core.errors import StoreError

DB_NAME = "camwatch.db"
BUSY_TIMEOUT_MS = 10_000

# Forward migrations: MIGRATIONS[i] takes the schema from version i to i + 1.
# Never edit a released step; append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE camera_references (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused after a removal
        camera_id   TEXT    NOT NULL,
        label       TEXT    NOT NULL,
        created_at  REAL    NOT NULL,                   -- unix seconds
        image_jpeg  BLOB    NOT NULL,                   -- the view as embedded (regions applied)
        embedding   BLOB    NOT NULL,                   -- float32, little-endian
        dim         INTEGER NOT NULL,
        model_id    TEXT    NOT NULL,                   -- sha256 of the model file
        stats       TEXT    NOT NULL DEFAULT '{}',      -- JSON of preprocess.view_stats
        UNIQUE (camera_id, label)
    );
    CREATE TABLE calibration_samples (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        camera_id   TEXT    NOT NULL,
        model_id    TEXT    NOT NULL,
        similarity  REAL    NOT NULL,
        created_at  REAL    NOT NULL
    );
    CREATE INDEX calibration_samples_camera ON calibration_samples (camera_id, model_id);
    """,
    # 1 -> 2: each sample also keeps the view's structure distance (decision.calibrate_structure).
    """
    ALTER TABLE calibration_samples ADD COLUMN structure REAL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Reference:
    """One enrolled view of a camera."""

    id: int
    camera_id: str
    label: str
    created_at: float
    image_jpeg: bytes           # b"" when listed without images
    embedding: np.ndarray       # float32 (dim,), unit length as the model gave it
    model_id: str
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[0])


@dataclass(frozen=True)
class CameraSummary:
    """What the metrics need per camera, without loading any image."""

    camera_id: str
    count: int
    oldest_at: float
    newest_at: float


def _stats_json(stats: Any) -> str:
    if stats is None:
        return "{}"
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        stats = dataclasses.asdict(stats)
    elif hasattr(stats, "_asdict"):
        stats = stats._asdict()
    return json.dumps(stats, default=float, sort_keys=True)


def _route(stats: Any) -> int:
    """The ``preprocess.STATS_ROUTE`` stored statistics were measured by (1 when they do not say)."""
    try:
        return int(stats.get("route", 1)) if isinstance(stats, dict) else 1
    except (TypeError, ValueError):
        return 1


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite may already have rolled it back)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _embedding_blob(embedding: np.ndarray) -> tuple[bytes, int]:
    vec = np.asarray(embedding, dtype="<f4").reshape(-1)
    if vec.size == 0 or not np.all(np.isfinite(vec)):
        raise StoreError("refusing to store an empty or non-finite embedding")
    return vec.tobytes(), int(vec.size)


class ReferenceStore:
    """Enrolled references and calibration samples under ``<state_dir>/camwatch.db``.

    Safe to share between threads: one connection guarded by a lock (the
    work is a few small statements per check, so a lock costs nothing and
    keeps transactions simple). Other processes (the CLI while the daemon
    runs) coordinate through SQLite's own locking and the busy timeout.
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, verify: bool = True):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._lock = threading.RLock()
        # Reads the daemon makes at every check, kept until the database changes
        # (``_cached``): our own commits count in _writes, other processes' in
        # SQLite's data_version.
        self._writes = 0
        self._cache: dict[tuple, Any] = {}
        self._cache_version: tuple[int, int] | None = None
        self._prepare_dir()
        self._conn = self._connect(verify)

    # -- opening -----------------------------------------------------------

    def _prepare_dir(self) -> None:
        d = self.state_dir
        if d.exists() and not d.is_dir():
            raise StoreError(f"state directory {d}: exists but is not a directory; "
                             f"set settings.state_dir to a folder")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"state directory {d}: cannot create it ({exc.strerror or exc}); create it and let "
                f"camwatch write there, or set settings.state_dir to a writable folder") from None
        # Try a real write: os.access lies under root, ACLs and read-only mounts.
        probe = d / f".camwatch-write-test-{os.getpid()}-{threading.get_ident()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"state directory {d}: cannot write there ({exc.strerror or exc}); give the user "
                f"camwatch runs as write access, or set settings.state_dir to a writable folder") from None

    def _corrupt(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"database {self.path}: unreadable or corrupt ({exc}); camwatch will not overwrite it: "
            f"move it aside (references will need enrolling again) or restore it from a backup")

    def _connect(self, verify: bool) -> sqlite3.Connection:
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"database {self.path}: exists but is not a file; move it aside")
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: cannot open it ({exc})") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"database {self.path}: cannot use WAL journal mode (got {mode}); "
                                 f"put settings.state_dir on a local file system")
            conn.execute("PRAGMA synchronous = FULL")
            if verify:
                bad = [r[0] for r in conn.execute("PRAGMA quick_check")]
                if bad != ["ok"]:
                    raise self._corrupt(Exception("; ".join(map(str, bad[:3]))))
            self._migrate(conn)
        except StoreError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise StoreError(f"database {self.path}: locked by another process for over "
                                 f"{BUSY_TIMEOUT_MS // 1000} s ({exc})") from None
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
                raise StoreError(f"database {self.path}: read-only ({exc}); give the user camwatch "
                                 f"runs as write access to it and its folder") from None
            raise self._corrupt(exc) from None
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"database {self.path}: schema version {version} is newer than this "
                             f"camwatch knows ({SCHEMA_VERSION}); upgrade camwatch")
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    # -- plumbing ------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ReferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._db_error(exc) from None

    def _db_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(f"database {self.path}: {exc}")
        return self._corrupt(exc)

    class _Tx:
        """BEGIN IMMEDIATE ... COMMIT under the store lock; errors become StoreError."""

        def __init__(self, store: ReferenceStore):
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                self.store._lock.release()
                raise self.store._db_error(exc) from None
            return self.store._conn

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
            conn = self.store._conn
            try:
                if exc_type is None:
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.DatabaseError as e:
                        _rollback(conn)
                        raise self.store._db_error(e) from None
                    finally:
                        self.store._writes += 1      # whatever happened, cached reads are void
                    return False
                _rollback(conn)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self.store._db_error(exc) from None
                return False
            finally:
                self.store._lock.release()

    def _tx(self) -> ReferenceStore._Tx:
        return ReferenceStore._Tx(self)

    @staticmethod
    def _row(row: tuple) -> Reference:
        rid, cam, label, created, image, blob, dim, model_id, stats = row
        emb = np.frombuffer(blob, dtype="<f4", count=dim).astype(np.float32)
        return Reference(id=rid, camera_id=cam, label=label, created_at=created,
                         image_jpeg=bytes(image) if image is not None else b"",
                         embedding=emb, model_id=model_id, stats=json.loads(stats or "{}"))

    _COLUMNS = "id, camera_id, label, created_at, {image}, embedding, dim, model_id, stats"

    def _select(self, where: str = "", params: Sequence[Any] = (), images: bool = True) -> list[Reference]:
        cols = self._COLUMNS.format(image="image_jpeg" if images else "NULL")
        rows = self._read(f"SELECT {cols} FROM camera_references {where} ORDER BY camera_id, label, id",
                          params)
        return [self._row(r) for r in rows]

    # -- references --------------------------------------------------------------

    def add(self, camera_id: str, label: str, image_jpeg: bytes, embedding: np.ndarray,
            model_id: str, stats: Any = None, created_at: float | None = None) -> Reference:
        """Store a reference; one with the same camera and label is replaced.

        Durable when it returns (``synchronous=FULL``). See ``add_replacing``
        to learn which reference was replaced.
        """
        return self.add_replacing(camera_id, label, image_jpeg, embedding, model_id,
                                  stats, created_at)[0]

    def add_replacing(self, camera_id: str, label: str, image_jpeg: bytes, embedding: np.ndarray,
                      model_id: str, stats: Any = None,
                      created_at: float | None = None) -> tuple[Reference, list[int]]:
        """``add``, also returning the ids of the references it replaced (same label)."""
        if not camera_id or not label:
            raise StoreError("a reference needs a camera id and a label")
        if not image_jpeg:
            raise StoreError(f"camera {camera_id}: refusing to store a reference without its image")
        blob, dim = _embedding_blob(embedding)
        created = time.time() if created_at is None else float(created_at)
        stats_text = _stats_json(stats)
        with self._tx() as conn:
            replaced = [r[0] for r in conn.execute(
                "SELECT id FROM camera_references WHERE camera_id = ? AND label = ?",
                (camera_id, label))]
            conn.execute("DELETE FROM camera_references WHERE camera_id = ? AND label = ?",
                         (camera_id, label))
            cur = conn.execute(
                "INSERT INTO camera_references (camera_id, label, created_at, image_jpeg, embedding, "
                "dim, model_id, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (camera_id, label, created, sqlite3.Binary(image_jpeg), blob, dim, model_id, stats_text))
            rid = int(cur.lastrowid)
            # The camera's references changed: what calibration learned no longer applies.
            conn.execute("DELETE FROM calibration_samples WHERE camera_id = ?", (camera_id,))
        ref = Reference(id=rid, camera_id=camera_id, label=label, created_at=created,
                        image_jpeg=bytes(image_jpeg),
                        embedding=np.frombuffer(blob, dtype="<f4").astype(np.float32),
                        model_id=model_id, stats=json.loads(stats_text))
        return ref, replaced

    def list(self, camera: str | None = None, *, images: bool = False) -> list[Reference]:
        """All references (or one camera's), ordered by camera, label; images only if asked."""
        if camera is None:
            return self._select(images=images)
        return self._select("WHERE camera_id = ?", (camera,), images=images)

    def for_camera(self, camera_id: str, *, images: bool = True) -> list[Reference]:
        """A camera's references, with images (the daemon's evidence needs them).

        Without images (every check) the answer is cached until the database
        changes, by this store or by another process (``camwatch enroll``).
        """
        if images:
            return self._select("WHERE camera_id = ?", (camera_id,), images=True)
        return list(self._cached(("refs", camera_id),
                                 lambda: self._select("WHERE camera_id = ?", (camera_id,), images=False)))

    def _version(self) -> tuple[int, int]:
        """Changes whenever anything was committed: by us (_writes) or by another connection."""
        return (self._read("PRAGMA data_version")[0][0], self._writes)

    def _cached(self, key: tuple, load: Callable[[], Any]) -> Any:
        """``load()``, remembered until the database changes.

        Why: the daemon reads a camera's references and calibration samples at
        every check; a PRAGMA costs a fraction of a SELECT that decodes JSON
        statistics and embeddings. A value is only kept if nothing was committed
        while it was loaded.
        """
        with self._lock:
            version = self._version()
            if version != self._cache_version:
                self._cache.clear()
                self._cache_version = version
            if key in self._cache:
                return self._cache[key]
            value = load()
            if self._version() == version:
                self._cache[key] = value
            return value

    def get(self, ref_id: int) -> Reference | None:
        found = self._select("WHERE id = ?", (int(ref_id),))
        return found[0] if found else None

    def camera_ids(self) -> list[str]:
        return [r[0] for r in self._read(
            "SELECT DISTINCT camera_id FROM camera_references ORDER BY camera_id")]

    def remove(self, ids: Iterable[int]) -> list[int]:
        """Remove references by id, all or none; returns the ids removed.

        An id that does not exist makes it a ``StoreError`` naming it, and
        nothing is removed (a typo must not half-apply).
        """
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        with self._tx() as conn:
            marks = ",".join("?" * len(wanted))
            rows = conn.execute(f"SELECT id, camera_id FROM camera_references WHERE id IN ({marks})",
                                wanted).fetchall()
            missing = sorted(set(wanted) - {r[0] for r in rows})
            if missing:
                raise StoreError(f"no reference with id {', '.join(map(str, missing))} in "
                                 f"{self.path}; nothing removed (see: camwatch references list)")
            conn.execute(f"DELETE FROM camera_references WHERE id IN ({marks})", wanted)
            cams = sorted({r[1] for r in rows})
            conn.execute(f"DELETE FROM calibration_samples WHERE camera_id IN "
                         f"({','.join('?' * len(cams))})", cams)
        return wanted

    def remove_camera(self, camera_id: str) -> list[int]:
        """Remove every reference of a camera; returns the ids removed."""
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM camera_references WHERE camera_id = ? ORDER BY id", (camera_id,))]
            conn.execute("DELETE FROM camera_references WHERE camera_id = ?", (camera_id,))
            conn.execute("DELETE FROM calibration_samples WHERE camera_id = ?", (camera_id,))
        return ids

    # -- metrics helpers ---------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """References per camera (cameras with none are absent)."""
        return {cam: n for cam, n in self._read(
            "SELECT camera_id, COUNT(*) FROM camera_references GROUP BY camera_id")}

    def summary(self) -> dict[str, CameraSummary]:
        """Count, oldest and newest enrolment time per camera, without loading images."""
        rows = self._read("SELECT camera_id, COUNT(*), MIN(created_at), MAX(created_at) "
                          "FROM camera_references GROUP BY camera_id")
        return {r[0]: CameraSummary(r[0], r[1], r[2], r[3]) for r in rows}

    def ages(self, now: float | None = None) -> dict[str, float]:
        """Seconds since each camera's newest reference was enrolled."""
        now = time.time() if now is None else now
        return {cam: max(0.0, now - s.newest_at) for cam, s in self.summary().items()}

    # -- model change ------------------------------------------------------------

    def stale_count(self, model_id: str) -> int:
        """How many references were embedded with another model."""
        return int(self._read("SELECT COUNT(*) FROM camera_references WHERE model_id != ?",
                              (model_id,))[0][0])

    def reembed(self, embedder: Any, batch: int = 32) -> int:
        """Re-embed, from their stored images, references made with another model or model input route.

        Their view statistics are measured again too, as are those of references
        whose statistics came from another ``preprocess.STATS_ROUTE``: decision
        compares a view's statistics with its reference's, so both must be measured
        alike. All in one transaction: a crash half-way leaves every reference as it
        was. The images and labels stay; only embeddings, dims, model ids and
        statistics change (never a new baseline). Returns how many were refreshed.
        """
        import cv2  # only here: the store itself needs no image library

        from camwatch.vision.preprocess import MODEL_INPUT_ROUTE, STATS_ROUTE, view_stats

        model_id = embedder.spec.identity
        with self._lock:
            stale = self._select("WHERE model_id != ? OR json_extract(stats, '$.route') IS NOT ?",
                                 (model_id, STATS_ROUTE))
            if not stale:
                return 0
            images = []
            for ref in stale:
                img = cv2.imdecode(np.frombuffer(ref.image_jpeg, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise StoreError(f"database {self.path}: reference {ref.id} (camera "
                                     f"{ref.camera_id}, label {ref.label}) has an undecodable "
                                     f"image; remove it and enrol the camera again")
                images.append(img)
            other_model = [i for i, ref in enumerate(stale) if ref.model_id != model_id
                           or _route(ref.stats) < MODEL_INPUT_ROUTE]
            vectors: dict[int, np.ndarray] = {}
            for i in range(0, len(other_model), batch):
                chunk = other_model[i:i + batch]
                out = np.asarray(embedder.embed([images[j] for j in chunk]), dtype=np.float32)
                vectors.update(zip(chunk, out))
            with self._tx() as conn:
                for i, (ref, img) in enumerate(zip(stale, images)):
                    stats_text = _stats_json(view_stats(img))
                    if i in vectors:
                        blob, dim = _embedding_blob(vectors[i])
                        conn.execute("UPDATE camera_references SET embedding = ?, dim = ?, model_id = ?, "
                                     "stats = ? WHERE id = ?", (blob, dim, model_id, stats_text, ref.id))
                    else:
                        conn.execute("UPDATE camera_references SET stats = ? WHERE id = ?",
                                     (stats_text, ref.id))
                # Similarities under another model are not comparable.
                conn.execute("DELETE FROM calibration_samples WHERE model_id != ?", (model_id,))
                # Samples taken before references had structure thumbnails (route 4) cannot give
                # the camera its structure scale: those cameras calibrate again.
                cameras = sorted({ref.camera_id for ref in stale})
                conn.execute(f"DELETE FROM calibration_samples WHERE structure IS NULL AND camera_id IN "
                             f"({', '.join('?' * len(cameras))})", cameras)
        return len(stale)

    # -- calibration ----------------------------------------------------------------

    def add_calibration_sample(self, camera_id: str, model_id: str, similarity: float,
                               at: float | None = None, structure: float | None = None) -> None:
        """Remember one post-enrolment similarity (and structure distance) so a restart does not forget calibration."""
        with self._tx() as conn:
            conn.execute("INSERT INTO calibration_samples (camera_id, model_id, similarity, created_at, structure) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (camera_id, model_id, float(similarity), time.time() if at is None else at,
                          None if structure is None else float(structure)))

    def calibration_samples(self, camera_id: str, model_id: str) -> list[float]:
        """The camera's samples under this model since its references last changed, oldest first.

        Cached until the database changes, as ``for_camera`` is.
        """
        return list(self._cached(("calibration", camera_id, model_id), lambda: [r[0] for r in self._read(
            "SELECT similarity FROM calibration_samples WHERE camera_id = ? AND model_id = ? "
            "ORDER BY id", (camera_id, model_id))]))

    def calibration_structure(self, camera_id: str, model_id: str) -> list[float]:
        """The structure distances of those samples that have one, oldest first (cached like them)."""
        return list(self._cached(("structure", camera_id, model_id), lambda: [r[0] for r in self._read(
            "SELECT structure FROM calibration_samples WHERE camera_id = ? AND model_id = ? "
            "AND structure IS NOT NULL ORDER BY id", (camera_id, model_id))]))

    def clear_calibration(self, camera_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM calibration_samples WHERE camera_id = ?", (camera_id,))
