"""``camwatch enroll`` and ``camwatch references`` end to end, as a user runs them.

Each test runs ``python -m camwatch`` as a subprocess against a real config
file, real image files (file cameras), a real ONNX model (built here with
onnx.helper), a real SQLite state dir, a real refused TCP port and a real
server that accepts and then says nothing. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_references import scene, tiny_model

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cret-Pa55"


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAMWATCH_FORWARD_SECRET": SECRET}
    return subprocess.run([sys.executable, "-m", "camwatch", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def no_traceback(out: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr


def write_image(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def site(tmp_path):
    """A config with two file cameras and a real tiny model; returns (config path, folder)."""
    tiny_model(tmp_path / "tiny.onnx", seed=7)
    write_image(tmp_path / "lobby.png", scene(11, 160, 120))
    write_image(tmp_path / "yard.png", scene(12, 160, 120))
    return tmp_path


def write_config(folder: Path, cameras: str, timeout: float = 3) -> Path:
    cfg = folder / "cameras.yaml"
    cfg.write_text(f"""\
settings:
  model: tiny.onnx
  device: cpu
  state_dir: state
  timeout: {timeout}
  calibration: {{checks: 0}}
cameras:
{cameras}""")
    return cfg


def file_camera(cid: str, path: Path, extra: str = "") -> str:
    return f"  - id: {cid}\n    url: {path.as_uri()}\n{extra}"


def references(cfg: Path, *extra: str) -> list[dict]:
    out = run("references", "list", "--config", str(cfg), "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_enroll_file_cameras_list_and_replace(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png") + file_camera("yard", site / "yard.png"))
    out = run("enroll", "--config", str(cfg), "lobby", "yard")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["lobby: label default: reference 1", "yard: label default: reference 2"]

    refs = references(cfg)
    model_id = hashlib.sha256((site / "tiny.onnx").read_bytes()).hexdigest()
    assert [(r["id"], r["camera"], r["label"], r["dims"], r["model_id"]) for r in refs] == [
        (1, "lobby", "default", 8, model_id), (2, "yard", "default", 8, model_id)]
    assert (site / "state" / "camwatch.db").is_file()  # relative to the config's folder

    out = run("enroll", "--config", str(cfg), "lobby", "--label", "night")
    assert out.returncode == 0 and out.stdout.strip() == "lobby: label night: reference 3", out.stderr
    out = run("enroll", "--config", str(cfg), "lobby", "--label", "night")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lobby: label night: reference 4 (replaced reference 3 with label night)"
    assert [(r["id"], r["label"]) for r in references(cfg, "--camera", "lobby")] == [(1, "default"), (4, "night")]

    table = run("references", "list", "--config", str(cfg))
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "CAMERA", "LABEL", "CREATED", "MODEL", "DIMS"]
    assert len(lines) == 4 and lines[1].split()[:3] == ["1", "lobby", "default"]
    assert lines[1].split()[-2:] == [model_id[:12], "8"]


def test_enroll_image_file_stores_the_view_and_embeds_what_it_stores(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png"))
    other = write_image(site / "other.jpg", scene(99, 200, 150))
    out = run("enroll", "--config", str(cfg), "lobby", "--image", str(other), "--label", "day")
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(site / "state" / "camwatch.db")
    try:
        image, blob = con.execute("SELECT image_jpeg, embedding FROM camera_references").fetchone()
    finally:
        con.close()
    stored = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    assert stored.shape == (150, 200, 3)
    assert np.abs(stored.astype(int) - cv2.imread(str(other)).astype(int)).mean() < 3  # JPEG q95

    from camwatch.vision.embedder import load_embedder
    emb = load_embedder(str(site / "tiny.onnx"), device="cpu").embed([stored])[0]
    np.testing.assert_allclose(np.frombuffer(blob, "<f4"), emb, atol=1e-6)


def test_mask_is_applied_as_checks_apply_it(site):
    """Two views that differ only under the mask enrol to the same embedding."""
    base = scene(21, 160, 120)
    changed = base.copy()
    changed[:, :80] = np.random.default_rng(5).integers(0, 255, (120, 80, 3), dtype=np.uint8)
    write_image(site / "a.png", base)
    write_image(site / "b.png", changed)
    mask = "    mask: [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]\n"
    cfg = write_config(site, file_camera("a", site / "a.png", mask) + file_camera("b", site / "b.png", mask)
                       + file_camera("c", site / "b.png"))
    out = run("enroll", "--config", str(cfg), "--all")
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(site / "state" / "camwatch.db")
    try:
        embs = {cam: np.frombuffer(b, "<f4") for cam, b in
                con.execute("SELECT camera_id, embedding FROM camera_references")}
    finally:
        con.close()
    np.testing.assert_allclose(embs["a"], embs["b"], atol=1e-3)
    assert not np.allclose(embs["b"], embs["c"], atol=1e-2)  # without the mask the noise counts


def test_unknown_camera_is_one_clear_error_with_did_you_mean(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png"))
    out = run("enroll", "--config", str(cfg), "lobbby")
    no_traceback(out)
    assert out.returncode == 2
    assert "lobbby" in out.stderr and "lobby" in out.stderr.replace("lobbby", "")
    assert not (site / "state" / "camwatch.db").exists() or references(cfg) == []

    out = run("references", "list", "--config", str(cfg), "--camera", "lobbby")
    no_traceback(out)
    assert out.returncode == 2 and "lobbby" in out.stderr


def test_unreachable_and_hung_cameras_do_not_stop_the_others(site):
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    dead_port = refused.getsockname()[1]
    refused.close()  # nothing listens there now: connection refused

    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        cams = (file_camera("lobby", site / "lobby.png")
                + f"  - id: gate\n    url: http://admin:{SECRET}@127.0.0.1:{dead_port}/snap.jpg\n"
                + f"  - id: dock\n    url: http://admin:{SECRET}@127.0.0.1:{silent.getsockname()[1]}/snap.jpg\n"
                + file_camera("yard", site / "yard.png"))
        cfg = write_config(site, cams, timeout=2)
        start = time.monotonic()
        out = run("enroll", "--config", str(cfg), "--all")
        took = time.monotonic() - start
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        silent.close()
    no_traceback(out)
    assert out.returncode == 2
    assert SECRET not in out.stdout + out.stderr
    assert out.stdout.splitlines() == ["lobby: label default: reference 1", "yard: label default: reference 2"]
    err = out.stderr.splitlines()
    gate = [line for line in err if "gate" in line]
    dock = [line for line in err if "dock" in line]
    assert len(gate) == 1 and f"http://***@127.0.0.1:{dead_port}/snap.jpg" in gate[0]
    assert len(dock) == 1 and "127.0.0.1" in dock[0]
    assert err[-1] == "camwatch: enrolled 2 of 4 cameras"
    # The hung camera is bounded by its own timeout, fetched beside the others, not after them.
    assert took < 2 + 5 + 15, took
    assert [r["camera"] for r in references(cfg)] == ["lobby", "yard"]


def test_covered_view_is_refused(site):
    write_image(site / "black.png", np.full((120, 160, 3), 3, np.uint8))
    # Detail only under the mask, the visible half covered (flat grey).
    half = np.full((120, 160, 3), 90, np.uint8)
    half[:, :80] = scene(3, 80, 120)
    write_image(site / "half.png", half)
    mask = "    mask: [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]\n"
    cfg = write_config(site, file_camera("lobby", site / "black.png")
                       + file_camera("yard", site / "half.png", mask) + file_camera("dock", site / "half.png"))
    out = run("enroll", "--config", str(cfg), "lobby", "yard", "dock")
    no_traceback(out)
    assert out.returncode == 2
    err = out.stderr.splitlines()
    assert [line.split()[1] for line in err if "almost uniform" in line] == ["lobby", "yard"]
    assert out.stdout.splitlines() == ["dock: label default: reference 1"]  # unmasked, it has detail
    assert [r["camera"] for r in references(cfg)] == ["dock"]


def test_usage_errors_are_one_line(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png") + file_camera("yard", site / "yard.png"))
    cases = [
        (["enroll", "--config", str(cfg)], "name the cameras"),
        (["enroll", "--config", str(cfg), "lobby", "--all"], "not both"),
        (["enroll", "--config", str(cfg), "lobby", "yard", "--image", str(site / "lobby.png")], "one camera"),
        (["enroll", "--config", str(cfg), "lobby", "--image", str(site / "nope.png")], "nope.png: no such file"),
        (["enroll", "--config", str(cfg), "lobby", "--image", str(site / "cameras.yaml")], "not an image"),
        (["references", "remove", "--config", str(cfg)], "give reference ids"),
        (["references", "remove", "--config", str(cfg), "42"], "no reference with id 42"),
    ]
    for args, expected in cases:
        out = run(*args)
        no_traceback(out)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("camwatch: ") and expected in lines[0], (args, lines)


def test_remove_by_id_and_by_camera(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png") + file_camera("yard", site / "yard.png"))
    assert run("enroll", "--config", str(cfg), "--all").returncode == 0
    assert run("enroll", "--config", str(cfg), "lobby", "--label", "night").returncode == 0
    out = run("references", "remove", "--config", str(cfg), "1", "99")
    assert out.returncode == 2 and "99" in out.stderr
    assert len(references(cfg)) == 3  # all or nothing
    out = run("references", "remove", "--config", str(cfg), "1")
    assert out.returncode == 0 and out.stdout.strip() == "removed reference 1 (lobby, label default)"
    out = run("references", "remove", "--config", str(cfg), "--camera", "lobby")
    assert out.returncode == 0 and out.stdout.strip() == "lobby: removed 1 reference(s): 3"
    assert [r["camera"] for r in references(cfg)] == ["yard"]
    out = run("references", "remove", "--config", str(cfg), "--camera", "yrd")
    no_traceback(out)
    assert out.returncode == 2 and "yrd" in out.stderr
    assert [r["camera"] for r in references(cfg)] == ["yard"]


def test_corrupt_database_is_one_line_naming_the_file(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png"))
    (site / "state").mkdir()
    db = site / "state" / "camwatch.db"
    db.write_bytes(b"garbage" * 300)
    for args in (["enroll", "--config", str(cfg), "lobby"], ["references", "list", "--config", str(cfg)]):
        out = run(*args)
        no_traceback(out)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and str(db) in lines[0] and "corrupt" in lines[0]
    assert db.read_bytes() == b"garbage" * 300


@pytest.mark.timeout(120)
def test_ctrl_c_during_enroll_all_keeps_what_was_captured_and_says_so(site, http_snapshot_server):
    """SIGINT to a real ``enroll --all`` while one camera (a real HTTP server that never answers)
    holds it up: the two views already captured are enrolled, the line names who was and was not,
    exit 130, long before the hung camera's timeout."""
    server = http_snapshot_server
    server.image("/street.jpg", scene(21, 160, 120))
    server.hang("/lobby.jpg")
    write_image(site / "shop.png", scene(22, 160, 120))
    cams = (f"  - id: street\n    url: {server.url('/street.jpg')}\n"
            + file_camera("shop", site / "shop.png")
            + f"  - id: lobby\n    url: {server.url('/lobby.jpg')}\n")
    cfg = write_config(site, cams, timeout=60)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "camwatch", "enroll", "--config", str(cfg), "--all"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not (server.hits.get("/lobby.jpg") and server.hits.get("/street.jpg")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.0)                       # street's answer and shop's file are read by now
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err
    assert out.splitlines() == ["street: label default: reference 1", "shop: label default: reference 2"]
    assert err.splitlines()[-1] == "camwatch: interrupted: enrolled street, shop; not lobby"
    assert took < 15, took                    # not the hung camera's 60 s timeout
    assert [r["camera"] for r in references(cfg)] == ["shop", "street"]


def test_forged_labels_are_refused_and_stored_ones_are_printed_escaped(site):
    cfg = write_config(site, file_camera("lobby", site / "lobby.png"))
    for label in ("day\n2  yard  forged", "\x1b[31mred", "x" * 65):
        out = run("enroll", "--config", str(cfg), "lobby", "--label", label)
        no_traceback(out)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("camwatch: enroll --label: label "), lines
        assert "\x1b" not in out.stderr
    assert references(cfg) == []
    # A label already in the database (written by hand, or before labels were checked) is escaped.
    assert run("enroll", "--config", str(cfg), "lobby").returncode == 0
    con = sqlite3.connect(site / "state" / "camwatch.db")
    con.execute("UPDATE camera_references SET label = ?", ("day\n9  lobby  forged\x1b[2J",))
    con.commit()
    con.close()
    out = run("references", "list", "--config", str(cfg))
    assert out.returncode == 0 and "\x1b" not in out.stdout
    rows = out.stdout.splitlines()
    assert len(rows) == 2 and "day\\n9  lobby  forged\\x1b[2J" in rows[1]
    out = run("references", "remove", "--config", str(cfg), "1")
    assert out.stdout.splitlines() == ["removed reference 1 (lobby, label day\\n9  lobby  forged\\x1b[2J)"]
