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
from modelkit import grid_model, view, world

from camwatch.tools.compare import confidence

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


# --- --crop face -----------------------------------------------------------------------

HAS_CASCADE = hasattr(cv2, "CascadeClassifier")
needs_cascade = pytest.mark.skipif(
    not HAS_CASCADE, reason=f"OpenCV {cv2.__version__} has no Haar cascade detector (removed in 5.0); "
                            "camwatch depends on opencv-python-headless>=4.10,<5")


def drawn_face(size: int) -> np.ndarray:
    """A grey drawn face the frontal Haar cascade finds: hair, shaded eye sockets, dark eyes
    and brows, a nose shadow and a mouth on a light oval, blurred like a photo. (Even the
    bare blurred oval is taken for a face after histogram equalisation, so the faceless
    image below has no oval at all.)"""
    img = np.full((size, size), 90, np.float32)
    c, fw, fh = size // 2, int(size * 0.28), int(size * 0.36)
    cv2.ellipse(img, (c, c), (fw, fh), 0, 0, 360, 200, -1)
    cv2.ellipse(img, (c, c - int(fh * 0.75)), (int(fw * 1.05), int(fh * 0.45)), 0, 180, 360, 40, -1)
    ey, ex = c - int(fh * 0.18), int(fw * 0.42)
    for s in (-1, 1):
        cv2.ellipse(img, (c + s * ex, ey), (int(fw * 0.28), int(fh * 0.12)), 0, 0, 360, 110, -1)
        cv2.ellipse(img, (c + s * ex, ey), (int(fw * 0.16), int(fh * 0.06)), 0, 0, 360, 60, -1)
        cv2.circle(img, (c + s * ex, ey), int(fw * 0.06), 20, -1)
        cv2.ellipse(img, (c + s * ex, ey - int(fh * 0.16)), (int(fw * 0.24), int(fh * 0.04)),
                    0, 0, 360, 60, -1)
    cv2.ellipse(img, (c, c + int(fh * 0.2)), (int(fw * 0.15), int(fh * 0.07)), 0, 0, 360, 140, -1)
    cv2.ellipse(img, (c, c + int(fh * 0.48)), (int(fw * 0.35), int(fh * 0.08)), 0, 0, 360, 90, -1)
    img = cv2.GaussianBlur(img, (0, 0), size / 150)
    return cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def photo(faces: list[tuple[int, int, int]], seed: int) -> np.ndarray:
    """A 640x480 'photo': coloured clutter on grey, with drawn faces (centre x, centre y, size)."""
    rng = np.random.default_rng(seed)
    img = np.full((480, 640, 3), 90, np.uint8)
    for _ in range(12):
        x, y, w, h = (int(v) for v in (rng.integers(0, 640), rng.integers(0, 480),
                                       rng.integers(10, 60), rng.integers(10, 60)))
        cv2.rectangle(img, (x, y), (x + w, y + h), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    for cx, cy, size in faces:
        img[cy - size // 2:cy - size // 2 + size, cx - size // 2:cx - size // 2 + size] = \
            drawn_face(size)
    return img


@pytest.fixture(scope="module")
def face_files(files, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("faces")
    images = {
        "left": photo([(160, 240, 240)], seed=0),
        # the same face elsewhere, other clutter, brighter: a different view, the same face
        "right": cv2.convertScaleAbs(photo([(480, 260, 240)], seed=1), alpha=1.1, beta=10),
        "two": photo([(180, 250, 280), (520, 120, 120)], seed=3),
        "faceless": photo([], seed=2),  # clutter only
    }
    out = {}
    for k, img in images.items():
        out[k] = d / f"{k}.jpg"
        cv2.imwrite(str(out[k]), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


@needs_cascade
def test_face_crop_matches_the_same_face_in_another_view(files, face_files) -> None:
    """The whole photos are different views (the face moved); their face crops are the same."""
    a, b, model = str(face_files["left"]), str(face_files["right"]), str(files["model"])
    whole = run(a, b, "--model", model)
    assert whole.returncode == 1 and "DIFFERENT views" in whole.stdout, whole.stderr
    out = run(a, b, "--model", model, "--crop", "face", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["crop"] == "face" and doc["same"] is True and doc["similarity"] > 0.95
    text = run(a, b, "--model", model, "--crop", "face")
    assert text.returncode == 0 and "verdict:    SAME face crops" in text.stdout


@needs_cascade
def test_face_crop_takes_the_largest_face_with_a_margin(face_files) -> None:
    from camwatch.tools.compare import largest_face, read_image

    image = read_image(str(face_files["two"]))
    detector = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    found = detector.detectMultiScale(cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)),
                                      scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    assert len(found) == 2, found  # both faces are seen, so taking the larger one is a choice
    crop = largest_face(image, "two.jpg")
    # the 280 px drawn face holds a ~200 px detection; a quarter margin each side
    assert 220 <= crop.shape[0] <= 340 and crop.shape[0] == crop.shape[1]
    _, _, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(image, crop, cv2.TM_CCOEFF_NORMED))
    cx, cy = x + crop.shape[1] // 2, y + crop.shape[0] // 2
    assert abs(cx - 180) < 30 and abs(cy - 250) < 30, (cx, cy)


@needs_cascade
def test_no_face_is_a_one_line_error(files, face_files) -> None:
    out = run(str(face_files["left"]), str(face_files["faceless"]), "--model", str(files["model"]),
              "--crop", "face")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert f"{face_files['faceless']}: no face found" in out.stderr


@needs_cascade
def test_face_cascade_override(files, face_files, tmp_path: Path, monkeypatch) -> None:
    """CAMWATCH_FACE_CASCADE is used when set (a copy of the bundled file works), and a
    missing or broken file there is one clear line, never a silent fallback or a traceback."""
    args = (str(face_files["left"]), str(face_files["right"]), "--model", str(files["model"]),
            "--crop", "face")
    copy = tmp_path / "faces.xml"
    copy.write_bytes((Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml").read_bytes())
    broken = tmp_path / "broken.xml"
    broken.write_text("<?xml version='1.0'?><opencv_storage><x>1</x></opencv_storage>")
    junk = tmp_path / "junk.xml"
    junk.write_text("not xml")
    monkeypatch.setenv("CAMWATCH_FACE_CASCADE", str(copy))
    assert run(*args).returncode == 0
    for bad, expect in ((tmp_path / "nope.xml", "CAMWATCH_FACE_CASCADE="),
                        (broken, "is not a usable Haar cascade file"),
                        (junk, "is not a usable Haar cascade file")):
        monkeypatch.setenv("CAMWATCH_FACE_CASCADE", str(bad))
        out = run(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().count("\n") == 0 and expect in out.stderr and str(bad) in out.stderr


@pytest.mark.skipif(HAS_CASCADE, reason="this OpenCV has the Haar cascade detector")
def test_face_crop_without_a_cascade_detector_says_so(files) -> None:
    """OpenCV 5.0 has no Haar detector at all: --crop face says so instead of failing obscurely."""
    out = run(str(files["a"]), str(files["same"]), "--model", str(files["model"]), "--crop", "face")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "does not include" in out.stderr and "--crop face" in out.stderr
