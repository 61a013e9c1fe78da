"""store.db's rules, held by both stores that use it: a damaged file is reported and left alone,
a file from a newer camwatch is refused, and files deleted or replaced under a running store lose
nothing reported stored. Real SQLite files, real processes and real deletions, nothing mocked."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from camwatch.core.errors import StoreError
from camwatch.store import events, references

REPO = Path(__file__).resolve().parents[1]

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


# -- the files under a running store (issue 22 row 9) ------------------------------------------

HOLDER = textwrap.dedent("""
    # A process holding the store open, as the daemon does: one command a line on stdin.
    import sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from camwatch.core.errors import StoreError
    from camwatch.store.references import ReferenceStore
    store = ReferenceStore(sys.argv[1])
    print("open", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        try:
            if cmd == "add":
                ref = store.add("cam", rest[0], b"jpeg-bytes", np.ones(8, np.float32), "m")
                print(f"stored {ref.id}", flush=True)
            elif cmd == "list":
                print(" ".join(sorted(r.label for r in store.list())), flush=True)
        except StoreError as exc:
            print(f"error {exc}", flush=True)
""")

ENROL = textwrap.dedent("""
    # `camwatch enroll` as far as the store goes: open, add one, report, exit.
    import sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from camwatch.store.references import ReferenceStore
    with ReferenceStore(sys.argv[1]) as store:
        ref = store.add("cam", sys.argv[3], b"jpeg-bytes", np.ones(8, np.float32), "m")
    print(f"stored {ref.id}")
""")


def delete_log_files(state):
    gone = []
    for suffix in ("-wal", "-shm"):
        path = state / f"{references.DB_NAME}{suffix}"
        if path.exists():
            path.unlink()
            gone.append(suffix)
    return gone


@pytest.mark.timeout(120)
def test_log_files_deleted_under_a_running_store_lose_no_write_reported_stored(tmp_path):
    """-wal/-shm deleted (twice) while a daemon-like process holds the store: every reference any
    process reported stored is there, in that process and after a kill -9 and a reopen."""
    state = tmp_path / "state"
    (tmp_path / "holder.py").write_text(HOLDER)
    (tmp_path / "enrol.py").write_text(ENROL)
    holder = subprocess.Popen([sys.executable, str(tmp_path / "holder.py"), str(state), str(REPO)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(command):
        holder.stdin.write(command + "\n")
        holder.stdin.flush()
        return holder.stdout.readline().strip()

    def enrol(label):
        out = subprocess.run([sys.executable, str(tmp_path / "enrol.py"), str(state), str(REPO), label],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.startswith("stored "), out.stderr
        return label

    try:
        assert holder.stdout.readline().strip() == "open"
        stored = []
        assert ask("add a").startswith("stored ")
        stored.append("a")
        stored.append(enrol("b"))                              # while the holder has the store open
        assert delete_log_files(state) == ["-wal", "-shm"]
        stored.append(enrol("c"))                              # onto new log files
        stored.append(enrol("d"))
        assert ask("list") == " ".join(stored)                 # the holder moved onto them, saw c and d
        assert ask("add e").startswith("stored ")
        stored.append("e")
        assert delete_log_files(state) == ["-wal", "-shm"]
        stored.append(enrol("f"))
        os.kill(holder.pid, signal.SIGKILL)                    # no orderly close, no last checkpoint
        holder.wait(10)
        delete_log_files(state)
        with references.ReferenceStore(state) as s:
            assert sorted(r.label for r in s.list()) == stored
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


@pytest.mark.parametrize("harm", ["deleted", "emptied", "replaced"])
def test_main_file_harmed_under_an_open_store_is_refused_not_written(tmp_path, harm):
    state = tmp_path / "state"
    with references.ReferenceStore(state) as s:
        s.add("cam", "day", b"jpeg-bytes", np.ones(8, np.float32), "m")
        db = state / references.DB_NAME
        if harm == "deleted":
            db.unlink()
        elif harm == "emptied":
            os.truncate(db, 0)
        else:
            copy = tmp_path / "copy.db"
            shutil.copyfile(db, copy)
            os.replace(copy, db)
        with pytest.raises(StoreError) as err:
            s.add("cam", "night", b"jpeg-bytes", np.ones(8, np.float32), "m")
        message = str(err.value)
        assert str(db) in message and harm in message and "\n" not in message
        with pytest.raises(StoreError, match=harm):
            s.list()
