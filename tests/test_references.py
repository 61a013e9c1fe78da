"""The reference store against a real SQLite file and a real PostgreSQL server (``store_url``: each
behaviour test runs on both backends): durability, labels, model changes, bad state dirs.

Nothing here is mocked except one fault injection (an embedder that fails
half-way through ``reembed``), which stands in for a crash we cannot cause
on cue inside a single statement.

The store under threads and processes is in test_reference_store_processes.py, its identity
in test_reference_store_identity.py; both import the helpers below (so does test_enrol.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from camwatch.core.errors import StoreError
from camwatch.service.enrol import reembed
from camwatch.store.references import DB_NAME, SCHEMA_VERSION, ReferenceStore, check_label
from camwatch.vision.stats import STATS_ROUTE, view_stats

REPO = Path(__file__).resolve().parents[1]


def tiny_model(path: Path, seed: int, size: int = 16, dim: int = 8, threshold: float = 0.8) -> Path:
    """A real ONNX model obeying camwatch's model contract: grey input, random projection, L2 norm.

    Two seeds give two models with different identities and different embeddings.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((size * size, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["proj"]),
         helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2)],
        f"tiny{seed}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "camwatch.format": "1", "camwatch.input_width": str(size), "camwatch.input_height": str(size),
        "camwatch.channels": "gray", "camwatch.input_scale": str(1 / 255), "camwatch.mean": "0",
        "camwatch.std": "1", "camwatch.embedding_dim": str(dim), "camwatch.threshold": str(threshold),
        "camwatch.model_name": f"tiny{seed}", "camwatch.model_version": "1",
    }
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def scene(seed: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A synthetic view with structure (blocks and lines), different per seed."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 40, np.uint8)
    for _ in range(6):
        x, y = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        colour = tuple(int(c) for c in rng.integers(60, 255, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 30)), y + int(rng.integers(5, 20))), colour, -1)
    cv2.line(img, (0, int(rng.integers(0, h))), (w - 1, int(rng.integers(0, h))), (250, 250, 250), 2)
    return img


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def in_threads(work: Callable[[int], object], n: int, timeout: float) -> list[Exception]:
    """``work(0)`` ... ``work(n - 1)`` at once on n threads; what they raised (surfaced by the caller)."""
    errors: list[Exception] = []

    def run(i: int) -> None:
        try:
            work(i)
        except Exception as exc:  # returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def store(tmp_path, store_url):
    s = ReferenceStore(tmp_path / "state", url=store_url)
    yield s
    s.close()


def test_round_trip_survives_reopening(tmp_path, store_url):
    state = tmp_path / "state" / "nested"  # created on demand
    image = jpeg(scene(1))
    emb = unit(1)
    with ReferenceStore(state, url=store_url) as s:
        ref = s.add("front-door", "day", image, emb, "model-a", {"brightness": 0.4, "sharpness": 12.5},
                    created_at=1700000000.5)
    assert (state / DB_NAME).is_file() == (store_url is None)
    with ReferenceStore(state, url=store_url) as s:
        [got] = s.for_camera("front-door")
    assert got.id == ref.id and got.camera_id == "front-door" and got.label == "day"
    assert got.created_at == 1700000000.5
    assert got.image_jpeg == image
    assert got.embedding.dtype == np.float32 and got.dim == 8
    np.testing.assert_array_equal(got.embedding, emb)
    assert got.model_id == "model-a"
    assert got.stats == {"brightness": 0.4, "sharpness": 12.5}
    if store_url is not None:
        return
    con = sqlite3.connect(state / DB_NAME)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        con.close()


def test_stats_from_a_dataclass_are_stored_as_json(store):
    from dataclasses import dataclass

    @dataclass
    class Stats:
        brightness: float
        contrast: float

    ref = store.add("cam", "default", jpeg(scene(2)), unit(2), "m", Stats(0.5, 0.25))
    assert store.get(ref.id).stats == {"brightness": 0.5, "contrast": 0.25}


def test_several_labels_and_replacing_one(store):
    day = store.add("cam", "day", jpeg(scene(1)), unit(1), "m")
    night = store.add("cam", "night", jpeg(scene(2)), unit(2), "m")
    other = store.add("other", "day", jpeg(scene(3)), unit(3), "m")
    assert [r.label for r in store.for_camera("cam")] == ["day", "night"]

    day2, replaced = store.add_replacing("cam", "day", jpeg(scene(4)), unit(4), "m")
    assert replaced == [day.id]
    assert day2.id not in (day.id, night.id, other.id)  # ids are never reused
    refs = {r.label: r for r in store.for_camera("cam")}
    assert set(refs) == {"day", "night"}
    assert refs["day"].id == day2.id and refs["night"].id == night.id
    np.testing.assert_array_equal(refs["day"].embedding, unit(4))
    assert [r.id for r in store.for_camera("other")] == [other.id]


def test_list_remove_and_metric_helpers(store):
    a = store.add("a", "day", jpeg(scene(1)), unit(1), "m", created_at=1000.0)
    b = store.add("a", "night", jpeg(scene(2)), unit(2), "m", created_at=2000.0)
    c = store.add("b", "default", jpeg(scene(3)), unit(3), "m", created_at=3000.0)
    listed = store.list()
    assert [r.id for r in listed] == [a.id, b.id, c.id]
    assert all(r.image_jpeg == b"" for r in listed)  # listing does not load images
    assert [r.id for r in store.list("b")] == [c.id]
    assert store.list("nope") == []
    assert store.counts() == {"a": 2, "b": 1}
    summary = store.summary()
    assert (summary["a"].count, summary["a"].oldest_at, summary["a"].newest_at) == (2, 1000.0, 2000.0)
    assert store.ages(now=5000.0) == {"a": 3000.0, "b": 2000.0}
    assert store.camera_ids() == ["a", "b"]

    with pytest.raises(StoreError, match=r"no reference with id 999.*nothing removed"):
        store.remove([a.id, 999])
    assert store.counts() == {"a": 2, "b": 1}  # all or nothing
    assert store.remove([a.id]) == [a.id]
    assert store.get(a.id) is None and store.get(b.id) is not None
    assert store.remove_camera("a") == [b.id]
    assert store.remove_camera("a") == []
    assert store.counts() == {"b": 1}


def test_refuses_references_without_image_or_with_bad_embedding(store):
    with pytest.raises(StoreError, match="without its image"):
        store.add("cam", "day", b"", unit(1), "m")
    with pytest.raises(StoreError, match="non-finite"):
        store.add("cam", "day", jpeg(scene(1)), np.array([np.nan, 1.0]), "m")
    assert store.counts() == {}


def test_calibration_samples_persist_and_are_cleared_when_references_change(tmp_path, store_url):
    state = tmp_path / "s"
    with ReferenceStore(state, url=store_url) as s:
        s.add("cam", "day", jpeg(scene(1)), unit(1), "m")
        s.add("cam2", "day", jpeg(scene(2)), unit(2), "m")
        for sim in (0.91, 0.93, 0.95):
            s.add_calibration_sample("cam", "m", sim)
        s.add_calibration_sample("cam", "other-model", 0.5)
        s.add_calibration_sample("cam2", "m", 0.88)
    with ReferenceStore(state, url=store_url) as s:  # a restart does not forget calibration
        assert s.calibration_samples("cam", "m") == pytest.approx([0.91, 0.93, 0.95])
        assert s.calibration_samples("cam", "other-model") == pytest.approx([0.5])
        s.add("cam", "night", jpeg(scene(3)), unit(3), "m")  # references changed
        assert s.calibration_samples("cam", "m") == []
        assert s.calibration_samples("cam2", "m") == pytest.approx([0.88])  # other cameras keep theirs
        s.add_calibration_sample("cam2", "m", 0.9)
        s.remove_camera("cam2")
        assert s.calibration_samples("cam2", "m") == []


def test_doubtful_calibration_views_are_kept_apart_and_only_the_newest(tmp_path, store_url):
    """Doubtful early views (drifted on similarity alone) count for no threshold or structure scale, are
    read back on their own after a restart, and only the newest DOUBTFUL_KEPT of them stay."""
    from camwatch.store.references import DOUBTFUL_KEPT

    state = tmp_path / "s"
    with ReferenceStore(state, url=store_url) as s:
        s.add("cam", "day", jpeg(scene(1)), unit(1), "m")
        s.add_calibration_sample("cam", "m", 0.95, structure=0.1, stats={"brightness": 1.0}, reference_id=1)
        for i in range(DOUBTFUL_KEPT + 3):
            s.add_calibration_sample("cam", "m", 0.2, structure=0.9, stats={"brightness": float(i)},
                                     reference_id=1, doubtful=True)
    with ReferenceStore(state, url=store_url) as s:
        assert s.calibration_samples("cam", "m") == pytest.approx([0.95])
        assert s.calibration_structure("cam", "m") == pytest.approx([0.1])
        assert s.calibration_views("cam", "m") == [(1, {"brightness": 1.0})]
        doubtful = s.calibration_views("cam", "m", doubtful=True)
        assert [v["brightness"] for _, v in doubtful] == [float(i) for i in range(3, DOUBTFUL_KEPT + 3)]


def test_reembed_after_model_change_keeps_images_and_replaces_embeddings(tmp_path, store_url):
    from camwatch.vision.embedder import load_embedder

    a = load_embedder(str(tiny_model(tmp_path / "a.onnx", seed=1)), device="cpu")
    b = load_embedder(str(tiny_model(tmp_path / "b.onnx", seed=2)), device="cpu")
    assert a.spec.identity != b.spec.identity
    state = tmp_path / "state"
    images = {label: jpeg(scene(i)) for i, label in enumerate(["day", "night", "dusk"])}
    with ReferenceStore(state, url=store_url) as s:
        before = {}
        for label, data in images.items():
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            before[label] = s.add("cam", label, data, a.embed([img])[0], a.spec.identity, view_stats(img))
        s.add_calibration_sample("cam", a.spec.identity, 0.97)
        assert s.stale_count(b.spec.identity) == 3
        assert reembed(s, a) == 0  # nothing to do under the same model

    with ReferenceStore(state, url=store_url) as s:  # as the daemon does at start-up with a new model
        assert reembed(s, b, batch=2) == 3
        assert reembed(s, b) == 0
        refs = {r.label: r for r in s.for_camera("cam")}
        assert s.calibration_samples("cam", a.spec.identity) == []
    for label, data in images.items():
        r = refs[label]
        assert r.id == before[label].id and r.image_jpeg == data  # never a new baseline
        assert r.model_id == b.spec.identity
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_allclose(r.embedding, b.embed([img])[0], atol=1e-6)
        assert not np.allclose(r.embedding, before[label].embedding, atol=1e-3)


def test_statistics_from_an_older_route_are_measured_again_under_the_same_model(tmp_path, store_url):
    """A reference stored before STATS_ROUTE 2 (no "route" in its stats) gets its
    statistics re-measured from its image at start-up and is embedded again through
    today's model input (the same vector for a frame below HD, whose input did not
    change); its image stays, and so do calibration samples that carry a structure distance.
    Older samples (none) cannot scale the structure cue: that camera calibrates again,
    other cameras keep theirs."""
    from camwatch.vision.embedder import load_embedder

    a = load_embedder(str(tiny_model(tmp_path / "a.onnx", seed=1)), device="cpu")
    data = jpeg(scene(1))
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    old_stats = dataclasses.asdict(view_stats(img))
    del old_stats["route"]
    old_stats["sharpness"] *= 0.5                       # as the old route measured it
    with ReferenceStore(tmp_path / "state", url=store_url) as s:
        ref = s.add("cam", "day", data, a.embed([img])[0], a.spec.identity, old_stats)
        s.add_calibration_sample("cam", a.spec.identity, 0.97)
        current = s.add("cam2", "day", data, a.embed([img])[0], a.spec.identity, view_stats(img))
        s.add_calibration_sample("cam2", a.spec.identity, 0.95)
        ref3 = s.add("cam3", "day", data, a.embed([img])[0], a.spec.identity, old_stats)
        s.add_calibration_sample("cam3", a.spec.identity, 0.96, structure=0.05)
        # Embedded before the model input's route changed (vision.prepare.MODEL_INPUT_ROUTE): here a
        # stand-in vector, which re-embedding must replace with its image's embedding.
        s.add("cam4", "day", data, a.embed([scene(7)])[0], a.spec.identity, old_stats)
        # A sample whose view statistics the old route measured goes (the learned scene is made of them and
        # the reference alike); one measured by today's route stays.
        s.add("cam5", "day", data, a.embed([img])[0], a.spec.identity, old_stats)
        s.add_calibration_sample("cam5", a.spec.identity, 0.96, structure=0.05, stats=old_stats)
        s.add_calibration_sample("cam5", a.spec.identity, 0.97, structure=0.04, stats=view_stats(img))
        assert reembed(s, a) == 4
        assert reembed(s, a) == 0
        np.testing.assert_allclose(s.for_camera("cam4")[0].embedding, a.embed([img])[0], atol=1e-6)
        got = {r.camera_id: r for r in s.for_camera("cam") + s.for_camera("cam2")}
        assert got["cam"].stats == json.loads(json.dumps(dataclasses.asdict(view_stats(img))))
        assert got["cam"].id == ref.id and got["cam"].image_jpeg == data
        np.testing.assert_array_equal(got["cam"].embedding, ref.embedding)
        assert got["cam2"].stats == current.stats
        assert s.calibration_samples("cam", a.spec.identity) == []
        assert s.calibration_samples("cam2", a.spec.identity) == pytest.approx([0.95])
        assert s.calibration_samples("cam3", a.spec.identity) == pytest.approx([0.96])
        assert s.calibration_structure("cam3", a.spec.identity) == pytest.approx([0.05])
        assert s.for_camera("cam3")[0].stats["thumb"]            # re-measured with its thumbnail
        assert s.for_camera("cam3")[0].id == ref3.id             # the same reference, not a new one
        assert s.calibration_samples("cam5", a.spec.identity) == pytest.approx([0.97])
        assert [v["route"] for _, v in s.calibration_views("cam5", a.spec.identity)] == [STATS_ROUTE]


def test_reembed_failing_half_way_changes_nothing(tmp_path, store_url):
    from camwatch.vision.embedder import load_embedder

    a = load_embedder(str(tiny_model(tmp_path / "a.onnx", seed=1)), device="cpu")
    b = load_embedder(str(tiny_model(tmp_path / "b.onnx", seed=2)), device="cpu")

    class FailsOnSecondBatch:  # fault injection: a real embedder that dies part-way
        spec = b.spec
        calls = 0

        def embed(self, images):
            FailsOnSecondBatch.calls += 1
            if FailsOnSecondBatch.calls == 2:
                raise RuntimeError("embedder died")
            return b.embed(images)

    with ReferenceStore(tmp_path / "s", url=store_url) as s:
        for i in range(3):
            img = scene(i)
            s.add("cam", f"l{i}", jpeg(img), a.embed([img])[0], a.spec.identity)
        with pytest.raises(RuntimeError):
            reembed(s, FailsOnSecondBatch(), batch=1)
        assert {r.model_id for r in s.list()} == {a.spec.identity}
        assert s.stale_count(b.spec.identity) == 3


def test_damaged_pages_are_caught_at_open(tmp_path):
    state = tmp_path / "state"
    with ReferenceStore(state) as s:
        for i in range(40):
            s.add(f"cam{i}", "day", os.urandom(6000), unit(i), "m")
    # Fold the WAL into the main file, then scribble over pages after the header page.
    con = sqlite3.connect(state / DB_NAME)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    db = state / DB_NAME
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 8 * page
    data[page:page * 3] = b"\x07" * (page * 2)
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=rf"database {db}.*corrupt"):
        ReferenceStore(state)


def test_migrates_a_file_other_modules_already_use(tmp_path):
    """camwatch.db may already hold another module's tables (user_version 0): they stay."""
    state = tmp_path / "state"
    state.mkdir()
    con = sqlite3.connect(state / DB_NAME)
    con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    con.execute("INSERT INTO events (what) VALUES ('drifted')")
    con.commit()
    con.close()
    with ReferenceStore(state) as s:
        s.add("cam", "day", jpeg(scene(1)), unit(1), "m")
    con = sqlite3.connect(state / DB_NAME)
    try:
        assert con.execute("SELECT what FROM events").fetchall() == [("drifted",)]
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        con.close()


def test_state_dir_that_is_a_file_or_under_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=rf"state directory {blocker}: exists but is not a directory"):
        ReferenceStore(blocker)
    with pytest.raises(StoreError, match=rf"state directory {blocker / 'sub'}: cannot create it"):
        ReferenceStore(blocker / "sub")


def _open_as_nobody(path: Path) -> str:
    """Open a store in a forked child running as 'nobody' (root ignores permissions); return its error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                ReferenceStore(path).close()
                msg = "opened"
            except StoreError as exc:
                msg = f"StoreError: {exc}"
            os.write(w, msg.encode())
        except BaseException as exc:  # pragma: no cover - reported through the pipe
            os.write(w, f"child failed: {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_unwritable_state_dir(tmp_path):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="camwatch-ro-"))  # not under pytest's 0700 tmp
    try:
        base.chmod(0o755)
        ro = base / "state"
        ro.mkdir()
        ro.chmod(0o555)
        if os.geteuid() == 0:
            out = _open_as_nobody(ro)
            assert out.startswith("StoreError: "), out
            msg = out[len("StoreError: "):]
        else:
            with pytest.raises(StoreError) as err:
                ReferenceStore(ro)
            msg = str(err.value)
        assert msg.startswith(f"state directory {ro}: cannot write there")
        assert "settings.state_dir" in msg
        assert not (ro / DB_NAME).exists()
    finally:
        (base / "state").chmod(0o755)
        import shutil
        shutil.rmtree(base)


# -- labels at the door (issue 22 row 10) --------------------------------------------------------

@pytest.mark.parametrize("label", ["day\nID  CAMERA  forged", "\x1b[31mred", "tab\there", "bidi\u202eevil",
                                   "x" * 65, " padded", "nul\x00"])
def test_labels_with_control_characters_or_absurd_lengths_are_refused(store, label):
    with pytest.raises(StoreError) as err:
        store.add("lobby", label, jpeg(scene(1)), unit(1), "m")
    message = str(err.value)
    assert "\n" not in message and "\x1b" not in message and "\u202e" not in message
    assert store.list() == []


def test_ordinary_labels_pass(store):
    for label in ("day", "night shift", "Tür-2", "x" * 64):
        assert check_label(label) == label
        store.add("lobby", label, jpeg(scene(1)), unit(1), "m")
    assert len(store.list()) == 4
