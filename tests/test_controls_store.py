"""Operators' settings in the reference store (store/controls.py): kept across a reopen (a restart),
and a reference removed only while the camera keeps another. On each backend (``store_url``: the
SQLite files, and a real PostgreSQL server when one is installed), no daemon."""

from __future__ import annotations

import pytest
from test_references import jpeg, scene, unit

from camwatch.core.errors import StoreError
from camwatch.store import controls
from camwatch.store.references import ReferenceStore


def test_silence_and_disable_survive_reopening_the_store(tmp_path, store_url):
    with ReferenceStore(tmp_path, url=store_url) as store:
        assert controls.read(store) == {}
        controls.set_silenced(store, "lobby", 2_000_000_000.0, "night shift")
        controls.set_disabled(store, "yard", "maint")
    with ReferenceStore(tmp_path, url=store_url) as store:          # what a restarted daemon reads
        got = controls.read(store)
        assert (got["lobby"].silenced_until, got["lobby"].silenced_by, got["lobby"].disabled_by) == \
            (2_000_000_000.0, "night shift", None)
        assert got["yard"].disabled_by == "maint" and got["yard"].silenced_until is None
        assert got["lobby"].silenced_at(1_999_999_999.0) and not got["lobby"].silenced_at(2_000_000_000.0)
        controls.set_silenced(store, "lobby", None, None)
        controls.set_disabled(store, "yard", None)
        assert controls.get(store, "lobby").silenced_until is None and controls.get(store, "yard").disabled_by is None
        assert controls.get(store, "nope") == controls.Control("nope")


def test_a_reference_is_removed_only_while_another_stays(tmp_path, store_url):
    with ReferenceStore(tmp_path, url=store_url) as store:
        day = store.add("lobby", "default", jpeg(scene(1)), unit(1), "m1")
        night = store.add("lobby", "night", jpeg(scene(2)), unit(2), "m1")
        other = store.add("street", "default", jpeg(scene(3)), unit(3), "m1")
        with pytest.raises(StoreError, match="has no reference"):
            controls.remove_reference(store, "lobby", other.id)            # another camera's
        assert controls.remove_reference(store, "lobby", night.id) == "night"
        with pytest.raises(StoreError, match="last"):
            controls.remove_reference(store, "lobby", day.id)
        assert [r.id for r in store.for_camera("lobby", images=False)] == [day.id]
