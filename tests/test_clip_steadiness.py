"""benchmarks/clip_steadiness.py: a still camera under traffic reads still, a panning one does not.

The clips are real video files written here: a textured street with blocks
driving across it, filmed by a camera that stays put or pans one pixel a frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import clip_steadiness as cs  # noqa: E402

W, H = 240, 160


def street(seed: int = 3) -> np.ndarray:
    """A scene wider than the view, so a panning window always has picture: lane marks, blocks, grain."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(60, 200, (10, 30, 3), dtype=np.uint8), (3 * W, H), interpolation=cv2.INTER_NEAREST)
    for _ in range(80):
        x, y = int(rng.integers(0, 3 * W)), int(rng.integers(0, H))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 20)), y + int(rng.integers(4, 20))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), 1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def write(path: Path, pan_per_frame: int, frames: int = 60) -> None:
    scene = street()
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert out.isOpened()
    for i in range(frames):
        x0 = W // 2 + pan_per_frame * i
        view = scene[:, x0:x0 + W].copy()
        # traffic: two solid blocks driving across, different in every frame
        for lane, speed in ((30, 7), (100, -5)):
            x = (20 + speed * i) % W
            cv2.rectangle(view, (x, lane), (x + 40, lane + 25), (20, 20, 200), -1)
        out.write(view)
    out.release()


def test_a_still_camera_under_traffic_stays_within_a_fraction_of_a_pixel(tmp_path: Path) -> None:
    clip = tmp_path / "still.avi"
    write(clip, 0)
    rows = cs.shifts(cs.grey_frames(clip), 10)
    assert len(rows) == 6
    assert max(max(abs(dx), abs(dy)) for _, dx, dy, _ in rows) < 0.3


def test_a_panning_camera_shows_its_pan(tmp_path: Path) -> None:
    clip = tmp_path / "pan.avi"
    write(clip, 1)
    rows = cs.shifts(cs.grey_frames(clip), 10)
    # the scene slides left by one pixel a frame: each window's median is ten pixels on from the last
    dxs = [dx for _, dx, _, _ in rows]
    assert dxs[-1] == pytest.approx(-50, abs=2)
    assert all(b < a for a, b in zip(dxs, dxs[1:]))


def test_prints_the_largest_shift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "still.avi"
    write(clip, 0, frames=20)
    assert cs.main([str(clip), "--window", "10"]) == 0
    out = capsys.readouterr().out
    assert "20 frames of 240x160" in out and "largest shift" in out


def test_a_clip_shorter_than_a_window_is_a_one_line_error(tmp_path: Path) -> None:
    clip = tmp_path / "short.avi"
    write(clip, 0, frames=5)
    with pytest.raises(SystemExit, match="fewer than --window 10"):
        cs.main([str(clip), "--window", "10"])
