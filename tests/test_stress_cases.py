"""benchmarks/stress_cases.py: every kind made, labelled right, in its intended band, deterministic.

Synthetic frames made here (a textured scene, written as a real video file for the
whole-folder test); the effects themselves are pure functions of the frame and the
seeded generator.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import stress_cases as sc  # noqa: E402
import stress_effects as fx  # noqa: E402


def scene(seed: int = 0, w: int = 320, h: int = 240) -> np.ndarray:
    """A textured outdoor-ish frame: blocks, edges and fine grain, as a camera sees a street."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(40, 220, (12, 16, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    for _ in range(30):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), 2)
    grain = rng.normal(0, 6, img.shape)
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def write_clip(path: Path, n: int = 40) -> None:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    base = scene(1)
    rng = np.random.default_rng(2)
    for _ in range(n):
        vw.write(np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8))
    vw.release()


@pytest.mark.parametrize("target", [0.2, 0.35, 0.5])
def test_defocus_lowers_full_size_detail_into_the_band(target: float) -> None:
    img = scene()
    out, params = fx.defocus(img, np.random.default_rng(0), target=target)
    ratio = fx.detail(out) / fx.detail(img)
    assert abs(ratio - target) < 0.05, (ratio, params)
    assert params["radius_px"] > 0


def test_defocus_draws_its_target_in_the_guide_band() -> None:
    img = scene()
    for seed in range(6):
        out, params = fx.defocus(img, np.random.default_rng(seed))
        ratio = fx.detail(out) / fx.detail(img)
        assert 0.17 <= ratio <= 0.53, (seed, ratio, params)


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.6])
def test_partial_cover_covers_the_intended_fraction(fraction: float) -> None:
    img = scene()
    for seed in range(8):   # polygons, blobs and strips at edges, corners, the centre
        mask, params = fx.cover_mask(img.shape[:2], np.random.default_rng(seed), fraction)
        assert abs(float(mask.mean()) - fraction) < 0.03, (seed, params, float(mask.mean()))
        out, p2 = fx.partial_cover(img, np.random.default_rng(seed), fraction)
        changed = (np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 0).mean()
        assert changed >= 0.9 * fraction, (seed, p2, changed)
        assert abs(float(p2["covered"]) - fraction) < 0.03


def test_no_cover_falls_short_of_its_fraction() -> None:
    """A polygon at a corner whose points all lie outside the view covered nothing: a query
    labelled covered with nothing on it. Every draw now reaches its fraction within a quarter."""
    for seed in range(300):
        rng = np.random.default_rng(seed)
        fraction = float(rng.uniform(*fx.PARTIAL_BAND))
        mask, params = fx.cover_mask((90, 160), rng, fraction)
        assert abs(float(mask.mean()) - fraction) <= 0.25 * fraction, (seed, params, float(mask.mean()))


def test_cover_shapes_and_places_vary() -> None:
    shapes, places = set(), set()
    for seed in range(40):
        _, params = fx.cover_mask((120, 160), np.random.default_rng(seed), 0.3)
        shapes.add(params["shape"])
        places.add(params["place"])
    assert shapes == {"polygon", "blob", "strip"}
    assert places == {"edge", "corner", "centre", "anywhere"}


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_parked_object_stays_in_focus_and_sized(seed: int) -> None:
    img = scene()
    out, params = fx.parked(img, np.random.default_rng(seed), fraction=0.3)
    assert abs(float(params["covered"]) - 0.3) < 0.03
    # in focus: inside the object, detail (gain-free, as fx.detail) is above what the
    # gentlest defocus leaves of the scene there
    mask, _ = fx.vehicle_mask(img.shape[:2], np.random.default_rng(seed), 0.3)
    inside = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    soft, _ = fx.defocus(img, np.random.default_rng(seed), target=0.5)

    def local(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
        return float(np.mean(lap[inside] ** 2)) / (float(grey[inside].std()) ** 2 + 1.0)
    assert local(out) > local(soft)


def test_glare_saturates_a_region_not_the_whole_view() -> None:
    img = scene()
    for seed in range(5):
        _, params = fx.glare(img, np.random.default_rng(seed))
        assert 0.005 < float(params["saturated"]) < 0.6, params


def test_spray_softens_and_washes_most_of_the_view() -> None:
    img = scene()
    out, params = fx.spray(img, np.random.default_rng(0))
    assert float(params["coverage"]) >= 0.7
    assert fx.detail(out) < 0.5 * fx.detail(img)


def test_folder_clip_frames_in_natural_order(tmp_path: Path) -> None:
    for name in ("10.png", "2.png", "1.png", "notes.txt", "frame_003.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in sc.image_files(tmp_path)] == ["1.png", "2.png", "10.png", "frame_003.jpg"]


def test_the_kinds_are_the_effects() -> None:
    assert set(fx.effects()) == set(sc.KINDS)
    assert all(sc.label_of(k) == 1 for k in sc.DRIFTED) and all(sc.label_of(k) == 0 for k in sc.BENIGN)


def test_every_effect_keeps_the_frame_shape() -> None:
    img = scene()
    for kind, effect in fx.effects().items():
        out, _ = effect(img, np.random.default_rng(0))
        assert out.shape == img.shape and out.dtype == np.uint8, kind


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_case_folder_every_kind_labelled_and_deterministic(tmp_path: Path) -> None:
    clip = tmp_path / "street cam.avi"
    write_clip(clip)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    rows = sc.build([clip], a, seed=5, per_kind=2, calibration=4)
    sc.build([clip], b, seed=5, per_kind=2, calibration=4)
    sc.build([clip], c, seed=6, per_kind=2, calibration=4)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    with open(a / "cases.csv", newline="") as fh:
        cases = list(csv.DictReader(fh))
    assert [tuple(r) for r in rows] == [(r["camera"], r["query"], int(r["label"]), r["kind"]) for r in cases]
    kinds = {r["kind"] for r in cases}
    assert kinds == set(sc.KINDS)
    for r in cases:
        assert r["camera"] == "street_cam"
        assert int(r["label"]) == (0 if r["kind"].startswith("benign") else 1)
        assert (a / r["query"]).is_file()
    assert (a / "cameras/street_cam/reference.jpg").is_file()
    assert len(list((a / "cameras/street_cam/calibration").iterdir())) == 4
    with open(a / "params.csv", newline="") as fh:
        params = {r["query"]: json.loads(r["params"]) for r in csv.DictReader(fh)}
    assert set(params) == {r["query"] for r in cases}
    # queries come from after the calibration stretch (the clip's first fifth)
    assert min(p["frame"] for p in params.values()) >= 8


def test_case_folder_reads_in_camwatch_evaluate(tmp_path: Path) -> None:
    from camwatch.tools.evaluate import kind_family, read_cases

    clip = tmp_path / "cam.avi"
    write_clip(clip, 20)
    sc.build([clip], tmp_path / "f", seed=1, per_kind=1, calibration=2)
    cases = read_cases(tmp_path / "f")
    families = {kind_family(c.kind) for c in cases if c.label == 1}
    assert families == {"covered", "defocused", "blinded"}
