"""What operators set on a camera (checks disabled, alerts silenced until a time), kept in camwatch.db.

Why in the store and not the YAML: a camera taken down for maintenance is an
operator's decision of the moment, made from the console, the API or the CLI
while the daemon runs; it must survive a restart, and editing a file that
configuration management owns would be overwritten at the next deploy. The
daemon reads these rows (cheaply: one SELECT only when the file changed) and
carries them out; the CLI writes them the way ``camwatch enroll`` writes
references, beside a running daemon.

A reference is removed here too, because "never the last one" must hold
against two operators removing at once: the count and the delete are one
transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from camwatch.core.errors import StoreError
from camwatch.store.backend import Param
from camwatch.store.references import ReferenceStore


@dataclass(frozen=True)
class Control:
    """One camera's operator settings. ``disabled_by``: who disabled its checks (None: enabled);
    ``silenced_until``: unix time its alerts are silenced until (None: not silenced)."""

    camera_id: str
    disabled_by: str | None = None
    silenced_until: float | None = None
    silenced_by: str | None = None
    updated_at: float = 0.0

    def silenced_at(self, now: float) -> bool:
        return self.silenced_until is not None and self.silenced_until > now


def version(store: ReferenceStore) -> object:
    """Changes whenever the store changed (a commit of this process, another, or another host's on
    PostgreSQL): the daemon looks at the rows again only then, or when a silence runs out."""
    return store.database.version()


def read(store: ReferenceStore) -> dict[str, Control]:
    """Every camera's controls (a camera with none set is absent)."""
    rows = store.database.read("SELECT camera_id, disabled_by, silenced_until, silenced_by, updated_at "
                               "FROM camera_controls ORDER BY camera_id")
    return {r[0]: Control(r[0], r[1], r[2], r[3], float(r[4])) for r in rows}


def get(store: ReferenceStore, camera_id: str) -> Control:
    return read(store).get(camera_id, Control(camera_id))


def _upsert(store: ReferenceStore, camera_id: str, column_values: dict[str, Param], doing: str) -> Control:
    cols = ", ".join(column_values)
    marks = ", ".join("?" * len(column_values))
    updates = ", ".join(f"{c} = excluded.{c}" for c in column_values)
    with store.database.transaction(doing) as conn:
        conn.execute(f"INSERT INTO camera_controls (camera_id, {cols}, updated_at) VALUES (?, {marks}, ?) "
                     f"ON CONFLICT (camera_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
                     (camera_id, *column_values.values(), time.time()))
    return get(store, camera_id)


def set_silenced(store: ReferenceStore, camera_id: str, until: float | None, who: str | None) -> Control:
    """Silence ``camera_id``'s alerts until ``until`` (unix time), or lift it (``until`` None)."""
    return _upsert(store, camera_id, {"silenced_until": until, "silenced_by": who if until else None},
                   f"silencing camera {camera_id}")


def set_disabled(store: ReferenceStore, camera_id: str, who: str | None) -> Control:
    """Disable ``camera_id``'s checks for ``who``, or enable them again (``who`` None)."""
    return _upsert(store, camera_id, {"disabled_by": who}, f"{'dis' if who else 'en'}abling camera {camera_id}")


def remove_reference(store: ReferenceStore, camera_id: str, reference_id: int) -> str:
    """Remove one of ``camera_id``'s references, never its last; the removed reference's label.

    Why never the last: a camera without a reference is no longer watched (and
    ``auto_enroll`` would not baseline it again); replacing it is ``accept``.
    """
    with store.database.transaction(f"removing reference {reference_id}") as conn:
        rows = conn.execute("SELECT id, label FROM camera_references WHERE camera_id = ?", (camera_id,)).fetchall()
        label = next((lbl for rid, lbl in rows if rid == reference_id), None)
        if label is None:
            raise StoreError(f"camera {camera_id} has no reference {reference_id}; nothing removed")
        if len(rows) < 2:
            raise StoreError(f"reference {reference_id} is camera {camera_id}'s last; a camera keeps at least "
                             "one (replace it by accepting the current view instead); nothing removed")
        conn.execute("DELETE FROM camera_references WHERE id = ?", (reference_id,))
        # Calibration samples name their nearest reference; those of the one removed go with it.
        conn.execute("DELETE FROM calibration_samples WHERE camera_id = ? AND reference_id = ?",
                     (camera_id, reference_id))
    return str(label)
