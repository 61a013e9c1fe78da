"""``camwatch check``: one-shot checks as a user runs them, and their exit codes.

Real subprocesses on a real config: file cameras (real image files swapped
under them, the way a turned camera shows another window of its world), a real
ONNX model (modelkit's grid model: keeps position, so a moved view is far from
its reference), a real SQLite state dir, a real HTTP server requiring a
password (the ``http_snapshot_server`` fixture), and a real refused TCP port. Nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_helpers import camwatch, free_port, write_config
from media import scene_image, write_image
from modelkit import grid_model

SECRET = "Pa55-w0rd-xyz"


@pytest.fixture
def site(tmp_path: Path):
    """Two enrolled file cameras (lobby, yard) and the config; returns (config, folder)."""
    grid_model(tmp_path / "grid.onnx")
    write_image(tmp_path / "lobby.png", scene_image(seed=1, scene="lobby"))
    write_image(tmp_path / "yard.png", scene_image(seed=2, scene="street"))
    cams = [{"id": "lobby", "url": str(tmp_path / "lobby.png")},
            {"id": "yard", "url": str(tmp_path / "yard.png")}]
    cfg = write_config(tmp_path / "cameras.yaml", cams, model=str(tmp_path / "grid.onnx"), device="cpu")
    out = camwatch("enroll", "--all", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    return cfg, tmp_path


def rows(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in stdout.splitlines() if line.strip()}


def test_all_as_enrolled_exits_0(site):
    cfg, folder = site
    # Same view a moment later: people moved, new sensor noise. Still as enrolled.
    write_image(folder / "lobby.png", scene_image(seed=1, scene="lobby", t=3.0))
    out = camwatch("check", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    got = rows(out.stdout)
    assert set(got) == {"lobby", "yard"}
    for cid in ("lobby", "yard"):
        assert got[cid][1] == "ok"
        sim = float(got[cid][got[cid].index("similarity") + 1])
        thr = float(got[cid][got[cid].index("threshold") + 1])
        assert sim >= thr


def test_moved_camera_exits_1_and_names_it(site):
    cfg, folder = site
    write_image(folder / "yard.png", scene_image(seed=2, scene="street", moved=True))
    out = camwatch("check", "--config", str(cfg))
    assert out.returncode == 1, out.stdout + out.stderr
    got = rows(out.stdout)
    assert got["yard"][1] == "drifted" and got["lobby"][1] == "ok"
    assert "kind" in got["yard"]
    # Only the named camera is checked when one is named.
    out = camwatch("check", "--config", str(cfg), "lobby")
    assert out.returncode == 0 and set(rows(out.stdout)) == {"lobby"}


def test_no_reference_unknown_camera_and_unreachable_exit_2(site):
    cfg, folder = site
    write_image(folder / "new.png", scene_image(seed=5, scene="shop"))
    text = cfg.read_text().replace("cameras:\n", f"cameras:\n- id: fresh\n  url: {folder / 'new.png'}\n")
    cfg.write_text(text)
    out = camwatch("check", "--config", str(cfg), "fresh")
    assert out.returncode == 2
    assert "no_reference" in out.stdout and "camwatch enroll fresh" in out.stdout

    out = camwatch("check", "--config", str(cfg), "lobbby")
    assert out.returncode == 2
    assert "lobbby" in out.stdout and "lobby" in out.stdout  # did-you-mean
    assert "Traceback" not in out.stdout + out.stderr

    (folder / "yard.png").unlink()
    out = camwatch("check", "--config", str(cfg))
    assert out.returncode == 2
    got = rows(out.stdout)
    assert got["yard"][1] == "unavailable" and got["lobby"][1] == "ok"


def test_json_has_no_secret(tmp_path, http_snapshot_server):
    grid_model(tmp_path / "grid.onnx")
    http_snapshot_server.basic("/snap.jpg", "admin", SECRET, scene_image(seed=3, scene="shop"))
    dead = free_port()
    # auth: basic: a Basic challenge over plain HTTP is answered only when the config says so.
    cams = [{"id": "shop", "url": http_snapshot_server.url("/snap.jpg", "admin", SECRET), "auth": "basic"},
            {"id": "gone", "url": f"http://admin:{SECRET}@127.0.0.1:{dead}/snap.jpg", "auth": "basic"},
            {"id": "rtsp", "url": f"rtsp://admin:{SECRET}@127.0.0.1:{dead}/live", "timeout": 2}]
    cfg = write_config(tmp_path / "cameras.yaml", cams, model=str(tmp_path / "grid.onnx"), device="cpu")
    out = camwatch("enroll", "shop", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    out = camwatch("check", "--json", "--config", str(cfg))
    assert SECRET not in out.stdout + out.stderr
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    by_id = {c["id"]: c for c in doc["cameras"]}
    assert by_id["shop"]["state"] == "ok" and by_id["shop"]["similarity"] >= by_id["shop"]["threshold"]
    assert by_id["gone"]["state"] == "unavailable" and by_id["gone"]["error"]
    assert by_id["rtsp"]["state"] == "unavailable"
    assert "***" in by_id["shop"]["url"] and "127.0.0.1" in by_id["shop"]["url"]
    assert doc["exit_code"] == 2


def test_validate_warns_when_a_timeout_outlasts_the_interval(tmp_path):
    """``camwatch validate`` (a real subprocess): a camera whose timeout is longer than its interval
    is a warning naming the camera and both values, not a failure; others are not named."""
    grid_model(tmp_path / "grid.onnx")
    cams = [{"id": "lobby", "url": "demo:lobby", "interval": "10s", "timeout": "30s"},
            {"id": "yard", "url": "demo:street", "interval": "10s", "timeout": "5s"},
            {"id": "spare", "url": "demo:street", "interval": "10s", "timeout": "30s", "enabled": False}]
    cfg = write_config(tmp_path / "cameras.yaml", cams, model=str(tmp_path / "grid.onnx"), device="cpu")
    out = camwatch("validate", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{cfg}: OK (3 cameras, 2 enabled)"
    warnings = [line for line in out.stderr.splitlines() if line.startswith("camwatch: warning: ")]
    assert len(warnings) == 1, out.stderr
    w = warnings[0]
    assert w.startswith(f"camwatch: warning: {cfg}:") and "cameras[0].timeout" in w
    assert "camera lobby: timeout 30 s is longer than its interval 10 s" in w
    assert "yard" not in out.stderr and "spare" not in out.stderr
