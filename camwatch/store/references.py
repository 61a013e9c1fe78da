"""The reference store: each camera's enrolled views, kept in SQLite or in a shared PostgreSQL database.

References are the one thing camwatch must never lose or silently replace:
a monitor that forgets its baseline on restart re-baselines on whatever the
camera shows then, possibly the tampered view. So the store is a SQLite file
in WAL mode with ``synchronous=FULL`` (a commit that returned survives a
crash or power cut), a versioned schema migrated forward in place, and a
corrupt file is reported, never recreated over. With ``settings.store`` set
it is a PostgreSQL database instead (``store.pg``), shared by every member
of a fleet and by ``camwatch enroll`` on any host; the SQL below serves both
(``store.backend``), the migrations are per dialect.

Each reference keeps the enrolled image (JPEG) beside its embedding and the
identity of the model that embedded it, so a new model re-embeds the same
views (``service.enrol.reembed``, through ``stale`` and ``refresh`` here)
instead of taking new ones. The store itself only reads and writes rows.

The stored image is the view *as embedded*: the camera's ROI/mask already
applied (``preprocess.apply_regions``), and ``stats`` are
``preprocess.view_stats`` of that same image. Re-embedding it therefore gives
what a check of an unchanged view gives.

``camwatch.db``'s ``PRAGMA user_version`` is this module's schema version
(``store.db`` opens, checks and migrates the file). The store's identity is
checked against ``<state_dir>/store-id`` on every open (``store.identity``):
a store that existed and is now missing, empty or another installation's is
refused, never taken for a new one. And the store remembers every camera that
ever had a reference (``ever_enrolled``), even after ``references remove``:
``auto_enroll`` may only baseline a camera that never had one.

Labels come from people (``enroll --label``) and are printed back in tables:
``check_label`` keeps control characters (a newline forging a row, an ANSI
escape) and absurd lengths out at the door.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from camwatch.core.errors import StoreError
from camwatch.store import identity, migrations
from camwatch.store.backend import Database, Param, is_postgres, marks
from camwatch.store.db import open_database, prepare_state_dir

DB_NAME = "camwatch.db"
#: The longest label accepted (``check_label``).
LABEL_MAX = 64
#: What moving a damaged camwatch.db aside costs, named in its error.
_LOST = "references will need enrolling again"
#: Doubtful calibration views kept per camera and model (``add_calibration_sample``): twice the
#: default number of calibration checks, enough for them to outnumber the benign ones.
DOUBTFUL_KEPT = 16

# The schema's steps per backend (``store.migrations``); camwatch.db's version is len(MIGRATIONS).
MIGRATIONS = migrations.REFERENCES
PG_MIGRATIONS = migrations.REFERENCES_PG
SCHEMA_VERSION = len(MIGRATIONS)

T = TypeVar("T")


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


def check_label(label: str) -> str:
    """The label, or a StoreError saying why it cannot be one (it is printed back in tables and logs).

    1 to LABEL_MAX characters, no control or format characters (newline, tab,
    ESC, bidi overrides...), no leading or trailing space.
    """
    if not isinstance(label, str) or not label:
        raise StoreError("a label cannot be empty")
    shown = ascii(label[:LABEL_MAX + 8])
    if len(label) > LABEL_MAX:
        raise StoreError(f"label {shown}: longer than {LABEL_MAX} characters")
    if any(unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp") for c in label):
        raise StoreError(f"label {shown}: control characters are not allowed (letters, digits, "
                         f"spaces and punctuation are)")
    if label != label.strip():
        raise StoreError(f"label {shown}: leading or trailing spaces are not allowed")
    return label


def route_of(stats: object) -> int:
    """The statistics route stored statistics say they were measured by (1 when they do not say):
    a ViewStats, its stored dict, or that dict's JSON text."""
    if isinstance(stats, str):
        try:
            stats = json.loads(stats)
        except ValueError:
            return 1
    value = stats.get("route", 1) if isinstance(stats, dict) else getattr(stats, "route", 1)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def _stats_json(stats: object) -> str:
    if stats is None:
        return "{}"
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        stats = dataclasses.asdict(stats)
    elif hasattr(stats, "_asdict"):
        stats = stats._asdict()
    return json.dumps(stats, default=float, sort_keys=True)


def _embedding_blob(embedding: np.ndarray) -> tuple[bytes, int]:
    vec = np.asarray(embedding, dtype="<f4").reshape(-1)
    if vec.size == 0 or not np.all(np.isfinite(vec)):
        raise StoreError("refusing to store an empty or non-finite embedding")
    return vec.tobytes(), int(vec.size)


@dataclass(frozen=True)
class Refresh:
    """A stored reference measured again: new statistics, and a new embedding unless it is None."""

    ref_id: int
    stats: object
    embedding: np.ndarray | None = None


class ReferenceStore:
    """Enrolled references and calibration samples under ``<state_dir>/camwatch.db``, or in the
    PostgreSQL database ``url`` names (``settings.store``).

    Safe to share between threads (``store.db.Database``: one connection
    behind a lock; ``store.pg.PgDatabase``: a pool). Other processes (the CLI
    while the daemon runs, other members of a fleet) coordinate through the
    database's own locking. ``where`` names the store in messages (a path, or
    the URL without its password). The state directory holds the identity
    marker either way (``store.identity``).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, url: str | None = None, verify: bool = True):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        # Reads the daemon makes at every check, kept until the database changes
        # (``_cached``, through ``Database.version``).
        self._cache: dict[tuple[object, ...], object] = {}
        self._cache_version: object = None
        # Per thread: inside ``pinned``, the database's version as its first read found it.
        self._pins = threading.local()
        prepare_state_dir(self.state_dir)
        marker = self.state_dir / identity.MARKER_NAME
        self._db: Database
        if is_postgres(url):
            from camwatch.store.pg import PgDatabase

            db = self._db = PgDatabase(str(url), "references", serialize=True)
            try:
                expected = identity.check_shared(db.schema_version(), db, marker)
                db.migrate(PG_MIGRATIONS)
            except BaseException:
                db.close()
                raise
        else:
            expected = identity.check_before_open(self.path, marker)
            self._db = open_database(self.path, MIGRATIONS, lost=_LOST, verify=verify)
        self.where = self._db.where
        try:
            #: This store's id (``store.identity``), the same as ``<state_dir>/store-id``'s.
            self.identity = identity.claim(self._db, marker, expected)
        except BaseException:
            self._db.close()
            raise

    # -- plumbing ------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    @property
    def database(self) -> Database:
        """The file's one connection, for the other tables of camwatch.db (``store.controls``)."""
        return self._db

    def __enter__(self) -> ReferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _row(row: Sequence[Any]) -> Reference:
        rid, cam, label, created, image, blob, dim, model_id, stats = row
        emb = np.frombuffer(blob, dtype="<f4", count=dim).astype(np.float32)
        return Reference(id=rid, camera_id=cam, label=label, created_at=created,
                         image_jpeg=bytes(image) if image is not None else b"",
                         embedding=emb, model_id=model_id, stats=json.loads(stats or "{}"))

    _COLUMNS = "id, camera_id, label, created_at, {image}, embedding, dim, model_id, stats"

    def _select(self, where: str = "", params: Sequence[Param] = (), images: bool = True) -> list[Reference]:
        cols = self._COLUMNS.format(image="image_jpeg" if images else "NULL")
        rows = self._db.read(f"SELECT {cols} FROM camera_references {where} ORDER BY camera_id, label, id",
                             params)
        return [self._row(r) for r in rows]

    # -- references --------------------------------------------------------------

    def add(self, camera_id: str, label: str, image_jpeg: bytes, embedding: np.ndarray,
            model_id: str, stats: object = None, created_at: float | None = None) -> Reference:
        """Store a reference; one with the same camera and label is replaced.

        Durable when it returns (``synchronous=FULL``). See ``add_replacing``
        to learn which reference was replaced.
        """
        return self.add_replacing(camera_id, label, image_jpeg, embedding, model_id,
                                  stats, created_at)[0]

    def add_replacing(self, camera_id: str, label: str, image_jpeg: bytes, embedding: np.ndarray,
                      model_id: str, stats: object = None,
                      created_at: float | None = None) -> tuple[Reference, list[int]]:
        """``add``, also returning the ids of the references it replaced (same label)."""
        if not camera_id or not label:
            raise StoreError("a reference needs a camera id and a label")
        check_label(label)
        if not image_jpeg:
            raise StoreError(f"camera {camera_id}: refusing to store a reference without its image")
        blob, dim = _embedding_blob(embedding)
        created = time.time() if created_at is None else float(created_at)
        stats_text = _stats_json(stats)
        with self._db.transaction() as conn:
            replaced = [r[0] for r in conn.execute(
                "SELECT id FROM camera_references WHERE camera_id = ? AND label = ?",
                (camera_id, label))]
            conn.execute("DELETE FROM camera_references WHERE camera_id = ? AND label = ?",
                         (camera_id, label))
            rid = int(conn.execute(
                "INSERT INTO camera_references (camera_id, label, created_at, image_jpeg, embedding, "
                "dim, model_id, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (camera_id, label, created, bytes(image_jpeg), blob, dim, model_id, stats_text)).fetchone()[0])
            conn.execute("INSERT INTO enrolled_cameras (camera_id, first_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                         (camera_id, created))
            # The camera's references changed: what calibration learned no longer applies.
            conn.execute("DELETE FROM calibration_samples WHERE camera_id = ?", (camera_id,))
        ref = Reference(id=rid, camera_id=camera_id, label=label, created_at=created,
                        image_jpeg=bytes(image_jpeg),
                        embedding=np.frombuffer(blob, dtype="<f4").astype(np.float32),
                        model_id=model_id, stats=json.loads(stats_text))
        return ref, replaced

    def list(self, camera: str | None = None, *, images: bool = False) -> builtins.list[Reference]:
        """All references (or one camera's), ordered by camera, label; images only if asked."""
        if camera is None:
            return self._select(images=images)
        return self._select("WHERE camera_id = ?", (camera,), images=images)

    def for_camera(self, camera_id: str, *, images: bool = True) -> builtins.list[Reference]:
        """A camera's references, with images (the daemon's evidence needs them).

        Without images (every check) the answer is cached until the database
        changes, by this store or by another process (``camwatch enroll``).
        """
        if images:
            return self._select("WHERE camera_id = ?", (camera_id,), images=True)
        return list(self._cached(("refs", camera_id),
                                 lambda: self._select("WHERE camera_id = ?", (camera_id,), images=False)))

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Cached reads made inside (by this thread) ask whether the database changed once, at the first.

        Why: a check reads a camera's references, calibration samples, structure
        distances and calibration views one after the other, and each cached read
        asked the database again (a PRAGMA and the files' stat on SQLite, a round
        trip on PostgreSQL), for answers a few microseconds apart. Only for reads
        that nothing of this thread writes between: a commit made inside is not
        seen until the block ends.
        """
        pins = self._pins
        outer = getattr(pins, "depth", 0)
        pins.depth = outer + 1
        try:
            yield
        finally:
            pins.depth = outer
            if not outer:
                pins.version = None

    def _version(self) -> object:
        """The database's version, asked once per ``pinned`` block."""
        pins = self._pins
        if getattr(pins, "depth", 0):
            version = getattr(pins, "version", None)
            if version is None:
                version = pins.version = self._db.version()
            return version
        return self._db.version()

    def _cached(self, key: tuple[object, ...], load: Callable[[], T]) -> T:
        """``load()``, remembered until the database changes.

        Why: the daemon reads a camera's references and calibration samples at
        every check; a PRAGMA costs a fraction of a SELECT that decodes JSON
        statistics and embeddings. A value is only kept if nothing was committed
        while it was loaded.
        """
        with self._db.lock:
            version = self._version()
            if version != self._cache_version:
                self._cache.clear()
                self._cache_version = version
            if key in self._cache:
                return cast(T, self._cache[key])
            value = load()
            if self._db.version() == version:
                self._cache[key] = value
            return value

    def get(self, ref_id: int) -> Reference | None:
        found = self._select("WHERE id = ?", (int(ref_id),))
        return found[0] if found else None

    def ever_enrolled(self, camera_id: str) -> bool:
        """Whether the camera ever had a reference in this store, removed since or not.

        ``auto_enroll`` asks this, not whether references exist now: a camera
        whose references were removed is enrolled again only on purpose
        (``camwatch enroll``). Cached until the database changes.
        """
        return self._cached(("ever", camera_id), lambda: bool(self._db.read(
            "SELECT 1 FROM enrolled_cameras WHERE camera_id = ?", (camera_id,))))

    def camera_ids(self) -> builtins.list[str]:
        return [r[0] for r in self._db.read(
            "SELECT DISTINCT camera_id FROM camera_references ORDER BY camera_id")]

    def remove(self, ids: Iterable[int]) -> builtins.list[int]:
        """Remove references by id, all or none; returns the ids removed.

        An id that does not exist makes it a ``StoreError`` naming it, and
        nothing is removed (a typo must not half-apply).
        """
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT id, camera_id FROM camera_references WHERE id IN ({marks(len(wanted))})",
                                wanted).fetchall()
            missing = sorted(set(wanted) - {r[0] for r in rows})
            if missing:
                raise StoreError(f"no reference with id {', '.join(map(str, missing))} in "
                                 f"{self.where}; nothing removed (see: camwatch references list)")
            conn.execute(f"DELETE FROM camera_references WHERE id IN ({marks(len(wanted))})", wanted)
            cams = sorted({r[1] for r in rows})
            conn.execute(f"DELETE FROM calibration_samples WHERE camera_id IN ({marks(len(cams))})", cams)
        return wanted

    def remove_camera(self, camera_id: str) -> builtins.list[int]:
        """Remove every reference of a camera; returns the ids removed."""
        with self._db.transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM camera_references WHERE camera_id = ? ORDER BY id", (camera_id,))]
            conn.execute("DELETE FROM camera_references WHERE camera_id = ?", (camera_id,))
            conn.execute("DELETE FROM calibration_samples WHERE camera_id = ?", (camera_id,))
        return ids

    # -- metrics helpers ---------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """References per camera (cameras with none are absent)."""
        return {cam: n for cam, n in self._db.read(
            "SELECT camera_id, COUNT(*) FROM camera_references GROUP BY camera_id")}

    def summary(self) -> dict[str, CameraSummary]:
        """Count, oldest and newest enrolment time per camera, without loading images."""
        rows = self._db.read("SELECT camera_id, COUNT(*), MIN(created_at), MAX(created_at) "
                          "FROM camera_references GROUP BY camera_id")
        return {r[0]: CameraSummary(r[0], r[1], r[2], r[3]) for r in rows}

    def ages(self, now: float | None = None) -> dict[str, float]:
        """Seconds since each camera's newest reference was enrolled."""
        now = time.time() if now is None else now
        return {cam: max(0.0, now - s.newest_at) for cam, s in self.summary().items()}

    # -- model change ------------------------------------------------------------

    def stale_count(self, model_id: str) -> int:
        """How many references were embedded with another model."""
        return int(self._db.read("SELECT COUNT(*) FROM camera_references WHERE model_id != ?",
                              (model_id,))[0][0])

    def stale(self, model_id: str, stats_route: int) -> builtins.list[Reference]:
        """With images: references embedded by another model, or whose statistics another route measured.

        The statistics' route is read here, not in SQL: the two backends spell JSON access differently.
        """
        ids = [int(rid) for rid, ref_model, stats in self._db.read("SELECT id, model_id, stats FROM camera_references")
               if ref_model != model_id or route_of(stats) != stats_route]
        if not ids:
            return []
        return self._select(f"WHERE id IN ({marks(len(ids))})", ids)

    def refresh(self, model_id: str, refreshed: Sequence[Refresh]) -> None:
        """Write references measured again (``service.enrol.reembed``), all or none.

        Only embeddings, dims, model ids and statistics change; images and labels
        stay (never a new baseline). Calibration samples taken under another model
        go (similarities under another model are not comparable), and so do the
        refreshed cameras' samples without a structure distance (taken before
        references had structure thumbnails, they cannot give the camera its
        structure scale) or whose view statistics another route measured (the
        learned scene is made of them and the reference alike): those cameras
        calibrate again.
        """
        if not refreshed:
            return
        rows = {r.ref_id: r for r in refreshed}
        with self._db.transaction() as conn:
            cameras = sorted({r[0] for r in conn.execute(
                f"SELECT DISTINCT camera_id FROM camera_references WHERE id IN ({marks(len(rows))})", list(rows))})
            for r in refreshed:
                stats_text = _stats_json(r.stats)
                if r.embedding is not None:
                    blob, dim = _embedding_blob(r.embedding)
                    conn.execute("UPDATE camera_references SET embedding = ?, dim = ?, model_id = ?, "
                                 "stats = ? WHERE id = ?", (blob, dim, model_id, stats_text, r.ref_id))
                else:
                    conn.execute("UPDATE camera_references SET stats = ? WHERE id = ?",
                                 (stats_text, r.ref_id))
            conn.execute("DELETE FROM calibration_samples WHERE model_id != ?", (model_id,))
            if cameras:
                conn.execute(f"DELETE FROM calibration_samples WHERE structure IS NULL AND camera_id IN "
                             f"({marks(len(cameras))})", cameras)
                # Views measured by another statistics route than the references now are: the learned scene
                # would compare the two routes' focus grids and layouts as if alike.
                routes = {route_of(r.stats) for r in refreshed}
                other = [sample_id for sample_id, text in conn.execute(
                    f"SELECT id, stats FROM calibration_samples WHERE stats IS NOT NULL AND camera_id IN "
                    f"({marks(len(cameras))})", cameras) if route_of(text) not in routes]
                if other:
                    conn.execute(f"DELETE FROM calibration_samples WHERE id IN ({marks(len(other))})", other)

    # -- calibration ----------------------------------------------------------------

    def add_calibration_sample(self, camera_id: str, model_id: str, similarity: float,
                               at: float | None = None, structure: float | None = None,
                               stats: object = None, reference_id: int | None = None,
                               doubtful: bool = False) -> None:
        """Remember one post-enrolment similarity (and structure distance) so a restart does not forget calibration.

        ``doubtful``: the view was judged drifted on its similarity alone; it counts
        for no threshold and waits to be judged with the rest (``calibration.consensus``);
        only the newest ``DOUBTFUL_KEPT`` of them are kept, so a camera that calibrates
        slowly does not pile them up. Written at most checks while a camera calibrates,
        so not checkpointed on its own (``Database.transaction``): a sample lost with a
        deleted log only means one more calibration check.
        """
        with self._db.transaction(checkpoint=False) as conn:
            conn.execute("INSERT INTO calibration_samples (camera_id, model_id, similarity, created_at, structure, "
                         "stats, reference_id, doubtful) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (camera_id, model_id, float(similarity), time.time() if at is None else at,
                          None if structure is None else float(structure),
                          None if stats is None else _stats_json(stats), reference_id, int(bool(doubtful))))
            if doubtful:
                old = [r[0] for r in conn.execute(
                    "SELECT id FROM calibration_samples WHERE camera_id = ? AND model_id = ? AND doubtful = 1 "
                    "ORDER BY id DESC", (camera_id, model_id))][DOUBTFUL_KEPT:]
                if old:
                    conn.execute(f"DELETE FROM calibration_samples WHERE id IN ({marks(len(old))})", old)

    def calibration_samples(self, camera_id: str, model_id: str) -> builtins.list[float]:
        """The similarities of the camera's samples under this model since its references last changed
        (not the doubtful ones), oldest first.

        Cached until the database changes, as ``for_camera`` is.
        """
        return list(self._cached(("calibration", camera_id, model_id), lambda: [r[0] for r in self._db.read(
            "SELECT similarity FROM calibration_samples WHERE camera_id = ? AND model_id = ? AND doubtful = 0 "
            "ORDER BY id", (camera_id, model_id))]))

    def calibration_structure(self, camera_id: str, model_id: str) -> builtins.list[float]:
        """The structure distances of those samples that have one, oldest first (cached like them)."""
        return list(self._cached(("structure", camera_id, model_id), lambda: [r[0] for r in self._db.read(
            "SELECT structure FROM calibration_samples WHERE camera_id = ? AND model_id = ? AND doubtful = 0 "
            "AND structure IS NOT NULL ORDER BY id", (camera_id, model_id))]))

    def calibration_views(self, camera_id: str, model_id: str, doubtful: bool = False
                          ) -> builtins.list[tuple[int | None, dict[str, Any]]]:
        """(nearest reference id, statistics) of the samples that kept their view's statistics, oldest
        first: the benign ones, or with ``doubtful`` the doubtful ones."""
        def load() -> builtins.list[tuple[int | None, dict[str, Any]]]:
            out = []
            for ref_id, text in self._db.read(
                    "SELECT reference_id, stats FROM calibration_samples WHERE camera_id = ? AND model_id = ? "
                    "AND doubtful = ? AND stats IS NOT NULL ORDER BY id", (camera_id, model_id, int(doubtful))):
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    out.append((None if ref_id is None else int(ref_id), value))
            return out
        return list(self._cached(("views", camera_id, model_id, doubtful), load))

    def clear_calibration(self, camera_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM calibration_samples WHERE camera_id = ?", (camera_id,))
