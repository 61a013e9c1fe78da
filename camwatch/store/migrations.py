"""Each store's schema, as forward migrations per backend (``store.db`` runs SQLite's by
``user_version``, ``store.pg`` PostgreSQL's by ``camwatch_schema``).

Why here, apart from the stores: the SQL of a table's types is the one thing the two backends
cannot share, and a store's module reads better without two copies of its schema. Step ``i`` of a
list takes that store from version ``i`` to ``i + 1``. Never edit a released step; append a new
one, to both lists of the store.
"""

from __future__ import annotations

# -- the reference store (camwatch.db) ------------------------------------------------------------

REFERENCES: tuple[str, ...] = (
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
    # 1 -> 2: each sample also keeps the view's structure distance (calibration.calibrate_structure).
    """
    ALTER TABLE calibration_samples ADD COLUMN structure REAL;
    """,
    # 2 -> 3: the store's identity (store.identity), and every camera that ever had a reference
    # (auto_enroll's "never had one", which removing references must not reset).
    """
    CREATE TABLE store_identity (
        id          TEXT    NOT NULL                    -- 32 hex digits, also in <state_dir>/store-id
    );
    CREATE TABLE enrolled_cameras (
        camera_id   TEXT    PRIMARY KEY,
        first_at    REAL    NOT NULL                    -- unix seconds of its first reference
    );
    INSERT INTO enrolled_cameras (camera_id, first_at)
        SELECT camera_id, MIN(created_at) FROM camera_references GROUP BY camera_id;
    """,
    # 3 -> 4: each sample also keeps its view's statistics and nearest reference: the camera's
    # learned scene (core.scene) is re-derived from them and the references' statistics.
    """
    ALTER TABLE calibration_samples ADD COLUMN stats TEXT;
    ALTER TABLE calibration_samples ADD COLUMN reference_id INTEGER;
    """,
    # 4 -> 5: what operators set on a camera, kept across restarts (store.controls).
    """
    CREATE TABLE camera_controls (
        camera_id TEXT PRIMARY KEY, disabled_by TEXT,   -- who disabled its checks, NULL: enabled
        silenced_until REAL, silenced_by TEXT,          -- unix seconds, NULL: not silenced
        updated_at REAL NOT NULL);
    """,
    # 5 -> 6: early views judged drifted on their similarity alone are kept apart (doubtful = 1):
    # they count for no threshold, and join the learned scene only when they agree with the rest
    # (calibration.in_consensus).
    """
    ALTER TABLE calibration_samples ADD COLUMN doubtful INTEGER NOT NULL DEFAULT 0;
    """,
)
# The same schema in PostgreSQL (``store.pg``): REFERENCES_PG[i] takes it from version i to i + 1.
# Step 0 is SQLite's steps 0 to 3 at once; a later step is appended to both lists. Identifiers
# compare bytewise (COLLATE "C"), as SQLite's do, so listings come in the same order on both.
REFERENCES_PG: tuple[str, ...] = (
    """
    CREATE TABLE camera_references (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        camera_id   TEXT COLLATE "C" NOT NULL,
        label       TEXT COLLATE "C" NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        image_jpeg  BYTEA   NOT NULL,
        embedding   BYTEA   NOT NULL,
        dim         INTEGER NOT NULL,
        model_id    TEXT    NOT NULL,
        stats       TEXT    NOT NULL DEFAULT '{}',
        UNIQUE (camera_id, label)
    );
    CREATE TABLE calibration_samples (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        camera_id   TEXT COLLATE "C" NOT NULL,
        model_id    TEXT    NOT NULL,
        similarity  DOUBLE PRECISION NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        structure   DOUBLE PRECISION,
        stats       TEXT,
        reference_id BIGINT
    );
    CREATE INDEX calibration_samples_camera ON calibration_samples (camera_id, model_id);
    CREATE TABLE store_identity (
        id          TEXT    NOT NULL
    );
    CREATE TABLE enrolled_cameras (
        camera_id   TEXT COLLATE "C" PRIMARY KEY,
        first_at    DOUBLE PRECISION NOT NULL
    );
    """,
    # 1 -> 2 (SQLite's 4 -> 5): what operators set on a camera (store.controls).
    """
    CREATE TABLE camera_controls (
        camera_id       TEXT COLLATE "C" PRIMARY KEY,
        disabled_by     TEXT,
        silenced_until  DOUBLE PRECISION,
        silenced_by     TEXT,
        updated_at      DOUBLE PRECISION NOT NULL
    );
    """,
    # 2 -> 3 (SQLite's 5 -> 6): doubtful early views (calibration.in_consensus).
    """
    ALTER TABLE calibration_samples ADD COLUMN doubtful INTEGER NOT NULL DEFAULT 0;
    """,
)


# -- the event store (events.db) ------------------------------------------------------------------

# Step 0 keeps ``IF NOT EXISTS`` because camwatch before versioned migrations created these
# tables first and set the version after.
EVENTS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,          -- uuid4, the idempotency key
    camera_id   TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    kind        TEXT,
    similarity  REAL,
    threshold   REAL,
    evidence    TEXT,
    message     TEXT    NOT NULL DEFAULT '',
    time        REAL    NOT NULL                  -- unix seconds
);
CREATE INDEX IF NOT EXISTS events_camera_time ON events (camera_id, time);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS outbox (
    event_id     TEXT    NOT NULL REFERENCES events (id),
    sink         TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL    NOT NULL DEFAULT 0,      -- unix seconds
    delivered_at REAL,                            -- NULL while pending
    last_error   TEXT,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, delivered_at, next_attempt);
""",
    # 1 -> 2: the cues behind a decision (structure distance, scale, sharpness ...), a JSON object.
    "ALTER TABLE events ADD COLUMN details TEXT NOT NULL DEFAULT '{}'",
    # 2 -> 3: a row being delivered is claimed by one dispatcher (``EventStore.due``).
    """
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until REAL;
""",
)
# The same schema in PostgreSQL (``store.pg``); step 0 is SQLite's steps 0 to 2 at once. Unlike
# SQLite, PostgreSQL enforces the outbox's foreign key (``prune`` deletes in order either way).
EVENTS_PG: tuple[str, ...] = (
    """
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    camera_id   TEXT COLLATE "C" NOT NULL,
    type        TEXT    NOT NULL,
    kind        TEXT,
    similarity  DOUBLE PRECISION,
    threshold   DOUBLE PRECISION,
    evidence    TEXT,
    message     TEXT    NOT NULL DEFAULT '',
    time        DOUBLE PRECISION NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX events_camera_time ON events (camera_id, time);
CREATE INDEX events_time ON events (time);
CREATE TABLE outbox (
    event_id     TEXT COLLATE "C" NOT NULL REFERENCES events (id),
    sink         TEXT COLLATE "C" NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0,
    delivered_at DOUBLE PRECISION,
    last_error   TEXT,
    claimed_by   TEXT,
    claimed_until DOUBLE PRECISION,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX outbox_pending ON outbox (sink, delivered_at, next_attempt);
""",
)
