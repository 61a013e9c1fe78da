"""Evidence JPEGs on a real directory: content, retention, no metadata and no secret inside."""

from __future__ import annotations

import os
import struct
import time

import cv2
import numpy as np
import pytest

from camwatch.core.errors import StoreError
from camwatch.store.evidence import (
    CAPTION_HEIGHT,
    PANEL_HEIGHT,
    caption_band,
    captions,
    compose,
    difference_map,
    evidence_dir,
    prune,
    write_evidence,
)


def scene(seed: int, h: int = 480, w: int = 640) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    for _ in range(25):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 60)), y + int(rng.integers(20, 60))), color, -1)
    return img


def jpeg_segments(data: bytes) -> list[int]:
    """Marker bytes of every JPEG segment before the image data (SOS)."""
    assert data[:2] == b"\xff\xd8"
    i, markers = 2, []
    while i < len(data):
        assert data[i] == 0xFF
        marker = data[i + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: metadata segments all come before it
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + length
    return markers


def test_three_panels_and_a_difference_where_the_view_changed(tmp_path):
    ref = scene(1)
    cur = ref.copy()
    cv2.rectangle(cur, (400, 50), (600, 250), (0, 0, 0), -1)  # a cover in the top right
    path = write_evidence(tmp_path, "front-door", ref, cur, similarity=0.41, threshold=0.8,
                          kind="covered", when=1_700_000_000.0, keep=10)
    assert path.parent == evidence_dir(tmp_path)
    assert path.name.startswith("front-door_20231114T221320Z_") and path.suffix == ".jpg"
    img = cv2.imread(str(path))
    assert img is not None
    h, w = img.shape[:2]
    assert h == PANEL_HEIGHT + CAPTION_HEIGHT and w == 3 * 480 + 8  # three 480x360 panels, captions above, 4px gaps
    diff = difference_map(ref, cur).astype(int).sum(axis=2)
    changed = diff[60:240, 410:590].mean()
    unchanged = diff[300:470, 20:380].mean()
    assert changed > 3 * unchanged + 100


def test_no_metadata_and_no_secret_in_the_file(tmp_path):
    secret = "s3cr3t-PASSWORD"
    ref = scene(2)
    path = write_evidence(tmp_path, "cam-1", ref, scene(3), 0.3, 0.8, "moved")
    data = path.read_bytes()
    assert secret.encode() not in data
    assert b"rtsp://" not in data and b"http" not in data
    markers = jpeg_segments(data)
    assert 0xE1 not in markers  # APP1: EXIF / XMP
    assert 0xFE not in markers  # COM: comment
    assert not any(0xE2 <= m <= 0xEF for m in markers)  # other APPn segments


def test_retention_keeps_the_newest(tmp_path):
    ref, cur = scene(4, 120, 160), scene(5, 120, 160)
    paths = [write_evidence(tmp_path, "c", ref, cur, 0.5, 0.8, when=1_700_000_000.0 + i * 60, keep=3)
             for i in range(6)]
    left = sorted(p.name for p in evidence_dir(tmp_path).iterdir())
    assert left == sorted(p.name for p in paths[-3:])
    # files camwatch did not write are never deleted
    (evidence_dir(tmp_path) / "notes.txt").write_text("mine")
    assert prune(evidence_dir(tmp_path), 0) == 3
    assert [p.name for p in evidence_dir(tmp_path).iterdir()] == ["notes.txt"]


def test_grey_and_odd_sizes(tmp_path):
    ref = cv2.cvtColor(scene(6, 300, 533), cv2.COLOR_BGR2GRAY)
    cur = scene(7, 720, 1280)
    path = write_evidence(tmp_path, "odd", ref, cur)
    assert cv2.imread(str(path)) is not None


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_dir_is_a_clear_error(tmp_path):
    state = tmp_path / "state"
    (state / "evidence").mkdir(parents=True)
    os.chmod(state / "evidence", 0o500)
    try:
        with pytest.raises(StoreError) as err:
            write_evidence(state, "cam-9", scene(8), scene(9))
        assert "cam-9" in str(err.value) and "evidence" in str(err.value)
    finally:
        os.chmod(state / "evidence", 0o700)


def test_a_file_in_place_of_the_dir_is_a_clear_error(tmp_path):
    (tmp_path / "evidence").write_text("not a dir")
    with pytest.raises(StoreError) as err:
        write_evidence(tmp_path, "cam-9", scene(8), scene(9))
    assert "cam-9" in str(err.value)


@pytest.fixture
def zone(monkeypatch):
    """The process's local time zone set to a fixed one with no daylight saving (TZ, as a host sets it)."""
    monkeypatch.setenv("TZ", "XYZ-3")
    time.tzset()
    yield "XYZ"
    monkeypatch.undo()
    time.tzset()


def test_every_panel_states_its_full_time_in_utc_and_local(zone):
    enrolled, seen = 1_690_000_000.0, 1_700_000_000.0    # 2023-07-22 04:26:40Z, 2023-11-14 22:13:20Z
    ref, cur, diff = captions("front-door", seen, 0.41, 0.8, "covered", reference_time=enrolled)
    assert ref == ("front-door reference, enrolled", "2023-07-22 04:26:40 UTC",
                   f"local 2023-07-22 07:26:40 {zone} (UTC+0300)")
    assert cur == ("front-door now", "2023-11-14 22:13:20 UTC", f"local 2023-11-15 01:13:20 {zone} (UTC+0300)")
    assert diff == ("difference  sim 0.410 < 0.800  covered", *cur[1:])
    # a reference of unknown age says so instead of showing a time it does not have
    assert captions("front-door", seen)[0] == ("front-door reference, enrolled", "at an unknown time")


def test_the_picture_carries_exactly_those_captions(zone):
    """The bands above the panels are the captions' own drawing, pixel for pixel (no OCR)."""
    ref_img, cur_img = scene(10), scene(11)
    args = ("front-door", 1_700_000_000.0, 0.41, 0.8, "covered", 1_690_000_000.0)
    image = compose(ref_img, cur_img, *args)
    x = 0
    for lines in captions(*args):
        band = caption_band(lines, 480)
        assert np.array_equal(image[:CAPTION_HEIGHT, x:x + 480], band)
        assert band.std() > 5                                    # something is drawn there
        x += 480 + 4
    other = compose(ref_img, cur_img, *args[:-1], reference_time=1_600_000_000.0)
    assert not np.array_equal(other[:CAPTION_HEIGHT, :480], image[:CAPTION_HEIGHT, :480])
