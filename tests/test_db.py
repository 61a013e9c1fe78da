"""store.db's rules, held by both stores that use it: a damaged file is reported and left alone,
a file from a newer camwatch is refused. Real SQLite files, nothing mocked."""

from __future__ import annotations

import sqlite3

import pytest

from camwatch.core.errors import StoreError
from camwatch.store import events, references

STORES = [pytest.param(references.ReferenceStore, references.DB_NAME, references.SCHEMA_VERSION, id="references"),
          pytest.param(events.EventStore, events.DB_NAME, events.SCHEMA_VERSION, id="events")]


@pytest.mark.parametrize(("store", "name", "version"), STORES)
def test_corrupt_database_is_reported_and_left_alone(tmp_path, store, name, version):
    state = tmp_path / "state"
    state.mkdir()
    db = state / name
    db.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StoreError) as err:
        store(state)
    message = str(err.value)
    assert str(db) in message and "corrupt" in message and "\n" not in message
    assert db.read_bytes() == b"this is not sqlite" * 500  # never recreated over


@pytest.mark.parametrize(("store", "name", "version"), STORES)
def test_newer_schema_is_refused(tmp_path, store, name, version):
    state = tmp_path / "state"
    store(state).close()
    con = sqlite3.connect(state / name)
    con.execute(f"PRAGMA user_version = {version + 5}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=rf"schema version {version + 5}.*upgrade camwatch"):
        store(state)
