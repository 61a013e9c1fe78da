"""benchmarks/replay.py: a clip through the daemon's decision and hysteresis, frame by frame.

A tiny synthetic clip written here as a real video file (a still scene, then a
cloth over the lens, then the scene again) and the shipped model: the real
enrolment, store, calibration, decision and monitor, only the clock is the
clip's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import replay  # noqa: E402
from tamper_cases import Span  # noqa: E402

from camwatch.vision.embedder import Embedder, load_embedder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FPS = 10
STILL, COVER, RESTORED = 30, 15, 15      # frames: 0-29 still, 30-44 covered, 45-59 still


def scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(40, 220, (12, 16, 3), dtype=np.uint8), (320, 240),
                     interpolation=cv2.INTER_NEAREST)
    for _ in range(30):
        x, y = int(rng.integers(0, 320)), int(rng.integers(0, 240))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), 2)
    return img


def write_clip(path: Path, covered: bool = True) -> None:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
    base = scene()
    cloth = np.full_like(base, 35)
    rng = np.random.default_rng(1)
    for i in range(STILL + COVER + RESTORED):
        frame = cloth if covered and STILL <= i < STILL + COVER else base
        vw.write(np.clip(frame + rng.normal(0, 1.5, base.shape), 0, 255).astype(np.uint8))
    vw.release()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder(None, device="cpu")


def test_cover_alerts_once_at_the_confirming_frame(tmp_path: Path, embedder: Embedder) -> None:
    clip = tmp_path / "corridor.avi"
    write_clip(clip)
    r = replay.replay_clip(clip, embedder)
    assert r.enrolled_frame == 0
    assert r.interval_s == pytest.approx(1 / FPS)
    assert len(r.checks) == STILL + COVER + RESTORED - 1
    # calibrated on the benign frames after enrolment, as the daemon does
    assert r.threshold_source == "calibrated"
    assert not any(c.drifted for c in r.checks if c.frame < STILL)
    # default confirm = 3: the third covered frame opens the one alert; recover = 2 clears it
    assert [(e.frame, e.type) for e in r.events] == [(STILL + 2, "drift_started"), (STILL + COVER + 1, "drift_cleared")]
    assert len(r.alerts) == 1 and r.alerts[0].at_s == pytest.approx((STILL + 2) / FPS)


def test_stride_judges_every_kth_frame(tmp_path: Path, embedder: Embedder) -> None:
    clip = tmp_path / "corridor.avi"
    write_clip(clip)
    r = replay.replay_clip(clip, embedder, stride=4)
    assert r.interval_s == pytest.approx(4 / FPS)
    assert all(c.frame % 4 == 0 for c in r.checks)
    # covered checks at frames 32, 36, 40: the third confirms
    assert [e.frame for e in r.alerts] == [40]


def test_timeline_delays(tmp_path: Path, embedder: Embedder) -> None:
    clip = tmp_path / "corridor.avi"
    write_clip(clip)
    r = replay.replay_clip(clip, embedder)
    spans = [Span(clip.name, 0, STILL - 1, 0, "benign"), Span(clip.name, STILL, STILL + COVER - 1, 1, "covered"),
             Span(clip.name, STILL + COVER, STILL + COVER + RESTORED - 1, 0, "benign")]
    normal, covered, restored = replay.judge_timeline(r, spans)
    assert normal.false_alerts == 0
    assert (covered.checks_to_alert, covered.alert_frame) == (3, STILL + 2)
    assert covered.held == pytest.approx((COVER - 2) / COVER, abs=1e-3)
    assert (restored.checks_to_clear, restored.clear_frame) == (2, STILL + COVER + 1)
    assert restored.false_alerts == 0


def test_still_clip_no_false_alert_in_a_real_process(tmp_path: Path) -> None:
    clip = tmp_path / "still.avi"
    write_clip(clip, covered=False)
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "replay.py"), str(clip), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["false_alerts"] == 0
    [entry] = doc["clips"]
    assert entry["camera"] == "still" and entry["checks"] == STILL + COVER + RESTORED - 1
    assert entry["false_alerts"] == 0 and entry["drifted_views"] == 0


def test_bad_stride_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "replay.py"), "nope.mp4", "--stride", "0"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "--stride" in out.stderr


def test_confirm_override_alerts_on_the_first_covered_frame(tmp_path: Path, embedder: Embedder) -> None:
    clip = tmp_path / "corridor.avi"
    write_clip(clip)
    r = replay.replay_clip(clip, embedder, confirm=1)
    assert [e.frame for e in r.alerts] == [STILL]
    assert replay.effective(None, None, None) == (3, 2, 8)    # the product's defaults (config.schema)
