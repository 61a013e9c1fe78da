"""The reference store shared between threads and processes: concurrent writers, a second
process's commits, kill -9 mid-enrolment, and cached reads that follow every write.

Split from test_references.py, whose helpers (store fixture, scene, jpeg, unit) this imports.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import test_references
from test_references import REPO, in_threads, jpeg, scene, unit

from camwatch.store.references import DB_NAME, ReferenceStore

store = test_references.store  # the shared fixture, by its module (a plain import would read as unused)


def test_threads_share_one_store(store):
    def work(t: int) -> None:
        for i in range(25):
            store.add(f"cam{t}", f"l{i}", jpeg(scene(i)), unit(i), "m")
            store.for_camera(f"cam{t}")
            store.add_calibration_sample(f"cam{(t + 1) % 4}", "m", 0.9)
            store.counts()

    assert in_threads(work, 4, 60) == []
    assert store.counts() == {f"cam{t}": 25 for t in range(4)}


def test_second_process_sees_commits(tmp_path, store_url):
    """The CLI and the daemon open the same store from two processes (with PostgreSQL, as from two hosts:
    each its own state directory)."""
    state = tmp_path / "state"
    other = state if store_url is None else tmp_path / "other-host"
    with ReferenceStore(state, url=store_url) as s:
        ref = s.add("cam", "day", jpeg(scene(1)), unit(1), "m")
        code = f"""
import sys; sys.path.insert(0, {str(REPO)!r})
from camwatch.store.references import ReferenceStore
import numpy as np
s = ReferenceStore({str(other)!r}, url={store_url!r})
print(s.counts()["cam"])
s.add("cam", "night", b"jpeg-bytes", np.ones(8, np.float32), "m")
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "1"
        assert {r.label for r in s.for_camera("cam")} == {"day", "night"}
        assert s.get(ref.id) is not None


KILL_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from camwatch.store.references import ReferenceStore
    store = ReferenceStore(sys.argv[1])
    rng = np.random.default_rng(os.getpid())
    i = 0
    while True:
        i += 1
        ref = store.add(f"cam{i % 7}", f"p{os.getpid()}-{i}", rng.bytes(20000),
                        rng.standard_normal(128).astype(np.float32), "m", {"i": i})
        if i % 5 == 0:
            store.add_calibration_sample(f"cam{i % 7}", "m", 0.9)
        if i % 11 == 0:
            store.remove([ref.id])
            print(f"removed {ref.id}", flush=True)
        else:
            print(f"added {ref.id}", flush=True)
""")


@pytest.mark.timeout(120)
def test_kill_9_during_enrolment_loses_no_committed_reference(tmp_path):
    state = tmp_path / "state"
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    added: set[int] = set()
    removed: set[int] = set()
    for round_, after in enumerate((40, 90, 150)):
        child = subprocess.Popen([sys.executable, str(script), str(state), str(REPO)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = 0
        deadline = time.monotonic() + 60
        try:
            while seen < after and time.monotonic() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                kind, rid = line.split()
                (added if kind == "added" else removed).add(int(rid))
                seen += 1
            assert seen == after, child.stderr.read() if child.poll() is not None else "child too slow"
            os.kill(child.pid, signal.SIGKILL)  # in the middle of its next add
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(10)
        # Lines the child printed before dying are commits that returned, too.
        for line in child.stdout.read().splitlines():
            kind, rid = line.split()
            (added if kind == "added" else removed).add(int(rid))
        assert child.returncode == -signal.SIGKILL

        con = sqlite3.connect(state / DB_NAME)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            con.close()
        with ReferenceStore(state) as s:
            present = {r.id for r in s.list()}
        missing = (added - removed) - present
        assert not missing, f"round {round_}: committed references lost: {sorted(missing)}"
        assert not (present & removed)


def test_cached_reads_follow_every_write_by_this_store_and_by_another_process(tmp_path, store_url):
    """The daemon's per-check reads are cached; a write anywhere must show at once (with PostgreSQL:
    a write from another host, through its own state directory)."""
    state = tmp_path / "state"
    other = state if store_url is None else tmp_path / "other-host"
    with ReferenceStore(state, url=store_url) as s:
        s.add("cam", "day", jpeg(scene(1)), np.ones(4, np.float32), "m")
        first = s.for_camera("cam", images=False)
        assert [r.label for r in first] == ["day"]
        assert s.for_camera("cam", images=False)[0].id == first[0].id    # from the cache
        s.add("cam", "night", jpeg(scene(2)), np.ones(4, np.float32), "m")  # this store writes
        assert [r.label for r in s.for_camera("cam", images=False)] == ["day", "night"]
        s.add_calibration_sample("cam", "m", 0.9)
        assert s.calibration_samples("cam", "m") == pytest.approx([0.9])
        # another process (as `camwatch enroll` and `references remove` are) writes the same file
        code = textwrap.dedent(f"""
            import numpy as np
            from camwatch.store.references import ReferenceStore
            with ReferenceStore({str(other)!r}, url={store_url!r}) as o:
                o.remove([r.id for r in o.for_camera("cam") if r.label == "day"])
                o.add_calibration_sample("cam", "m", 0.8)
        """)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert [r.label for r in s.for_camera("cam", images=False)] == ["night"]
        # the removal started calibration afresh; only the later sample is left
        assert s.calibration_samples("cam", "m") == pytest.approx([0.8])
        s.clear_calibration("cam")
        assert s.calibration_samples("cam", "m") == []
