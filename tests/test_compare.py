"""``camwatch compare`` as a subprocess on images made here, with a real ONNX grid model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from camwatch.compare import confidence
from modelkit import grid_model, view, world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("compare")
    w = world(8)
    out = {"a": view(w), "same": view(w, x=202, y=151), "moved": view(w, x=360, y=260)}
    paths = {k: d / f"{k}.jpg" for k in out}
    for k, img in out.items():
        cv2.imwrite(str(paths[k]), img)
    paths["model"] = grid_model(d / "grid.onnx")
    (d / "junk.jpg").write_bytes(b"no picture here")
    paths["junk"] = d / "junk.jpg"
    return paths


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwatch", "compare", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_same_view(files) -> None:
    out = run(str(files["a"]), str(files["same"]), "--model", str(files["model"]), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["same"] is True and doc["similarity"] > 0.95
    assert doc["distance"] == pytest.approx(math.sqrt(2 - 2 * doc["similarity"]), abs=1e-5)
    assert doc["confidence"] > 0.9 and doc["threshold"] == 0.9


def test_moved_view_is_different(files) -> None:
    out = run(str(files["a"]), str(files["moved"]), "--model", str(files["model"]))
    assert out.returncode == 1, out.stderr
    assert "verdict:    DIFFERENT views" in out.stdout
    assert "similarity:" in out.stdout and "confidence:" in out.stdout


def test_confidence_agrees_with_the_verdict() -> None:
    assert confidence(0.8, 0.8) == 0.5
    assert confidence(0.81, 0.8) > 0.5 > confidence(0.79, 0.8)
    assert confidence(-1.0, 0.8) == 0.0 and confidence(1.0, 0.8) > 0.99


def test_bad_images_are_one_line_errors(files, tmp_path: Path) -> None:
    for args, expect in (([str(tmp_path / "x.jpg"), str(files["a"])], "x.jpg: no such image file"),
                         ([str(files["a"]), str(files["junk"])], "junk.jpg: not an image OpenCV can decode")):
        out = run(*args, "--model", str(files["model"]))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.strip().count("\n") == 0 and expect in out.stderr


def test_face_crop(files, tmp_path: Path) -> None:
    """With a cascade-capable OpenCV a faceless image is refused by name; OpenCV 5.0 has no
    Haar detector at all, and says so instead of failing obscurely."""
    out = run(str(files["a"]), str(files["same"]), "--model", str(files["model"]), "--crop", "face")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    if hasattr(cv2, "CascadeClassifier"):
        assert "no face found" in out.stderr or "CAMWATCH_FACE_CASCADE" in out.stderr
    else:
        assert "does not include" in out.stderr and "--crop face" in out.stderr
