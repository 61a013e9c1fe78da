"""The reference store's identity (issue 22 row 5): the marker beside the database, stores
that are empty, missing or foreign refused, and old stores adopted.

Split from test_references.py, whose helpers (store fixture, scene, jpeg, unit) this imports.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import test_references
from test_references import jpeg, scene, unit

from camwatch.core.errors import StoreError
from camwatch.store.identity import MARKER_NAME
from camwatch.store.references import DB_NAME, MIGRATIONS, ReferenceStore

store = test_references.store  # the shared fixture, by its module (a plain import would read as unused)


# -- the store's identity (issue 22 row 5) -----------------------------------------------------

def test_a_new_store_writes_its_identity_beside_it(tmp_path):
    state = tmp_path / "state"
    with ReferenceStore(state) as s:
        first = s.identity
    assert (state / MARKER_NAME).read_text().strip() == first and len(first) == 32
    with ReferenceStore(state) as s:
        assert s.identity == first
    with ReferenceStore(tmp_path / "other") as other:
        assert other.identity != first


def refused(state: Path, *expected: str) -> str:
    with pytest.raises(StoreError) as err:
        ReferenceStore(state)
    message = str(err.value)
    assert "\n" not in message
    for text in (str(state / DB_NAME), str(state / MARKER_NAME), "delete", "backup", *expected):
        assert text in message, message
    return message


@pytest.mark.parametrize("harm", ["truncated", "deleted", "swapped", "blank"])
def test_a_store_that_existed_and_is_now_empty_missing_or_foreign_is_refused(tmp_path, harm):
    state = tmp_path / "state"
    with ReferenceStore(state) as s:
        s.add("lobby", "day", jpeg(scene(1)), unit(1), "m")
    db = state / DB_NAME
    before = None
    if harm == "truncated":
        os.truncate(db, 0)
        refused(state, "empty (0 bytes)")
        assert db.stat().st_size == 0                    # left as found
    elif harm == "deleted":
        db.unlink()
        refused(state, "missing")
        assert not db.exists()                           # not recreated
    elif harm == "swapped":                              # another installation's store, references and all
        with ReferenceStore(tmp_path / "elsewhere") as other:
            other.add("lobby", "day", jpeg(scene(2)), unit(2), "m")
        shutil.copyfile(tmp_path / "elsewhere" / DB_NAME, db)
        before = db.read_bytes()
        refused(state, "another installation")
        assert db.read_bytes() == before
    else:                                                # a valid but blank SQLite file put in its place
        db.unlink()
        sqlite3.connect(db).close()
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE x (y)")
        con.commit()
        con.close()
        refused(state, "has no store id")
    # Starting afresh is a deliberate act: delete the marker.
    (state / MARKER_NAME).unlink()
    with ReferenceStore(state) as s:
        assert (state / MARKER_NAME).read_text().strip() == s.identity
        if harm == "swapped":
            assert [r.camera_id for r in s.list()] == ["lobby"]   # that store, adopted on purpose
        else:
            assert s.list() == []


def test_a_bad_marker_is_one_line(tmp_path):
    state = tmp_path / "state"
    ReferenceStore(state).close()
    (state / MARKER_NAME).write_text("not an id\n")
    with pytest.raises(StoreError, match=r"^store marker .*store-id: not a camwatch store id; .*delete it"):
        ReferenceStore(state)


def test_a_store_from_before_identities_is_adopted_and_remembers_who_was_enrolled(tmp_path):
    """A camwatch.db at schema 2 (no identity, no marker) is an upgrade, not a foreign file."""
    state = tmp_path / "state"
    state.mkdir()
    con = sqlite3.connect(state / DB_NAME)
    for step in MIGRATIONS[:2]:
        con.executescript(step)
    con.execute("PRAGMA user_version = 2")
    con.execute("INSERT INTO camera_references (camera_id, label, created_at, image_jpeg, embedding, dim, "
                "model_id) VALUES ('lobby', 'day', 5.0, x'ff', ?, 8, 'm')", (unit(1).tobytes(),))
    con.commit()
    con.close()
    with ReferenceStore(state) as s:
        assert (state / MARKER_NAME).read_text().strip() == s.identity
        assert s.ever_enrolled("lobby") and not s.ever_enrolled("yard")
        assert [r.camera_id for r in s.list()] == ["lobby"]


def test_ever_enrolled_survives_removing_references(store):
    assert not store.ever_enrolled("lobby")
    ref = store.add("lobby", "day", jpeg(scene(1)), unit(1), "m")
    assert store.ever_enrolled("lobby")
    store.remove([ref.id])
    assert store.for_camera("lobby") == [] and store.ever_enrolled("lobby")
    store.add("yard", "day", jpeg(scene(2)), unit(2), "m")
    store.remove_camera("yard")
    assert store.ever_enrolled("yard")
