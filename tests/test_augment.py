"""Training renderings (export/augment.py, export/views.py) that a model's behaviour rests on.

augment needs only numpy and OpenCV, so these run without torch.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from export import augment, views


@pytest.fixture
def scene() -> np.ndarray:
    """A textured 192x144 view: gradients and a grid, so every change shows."""
    h, w = 144, 192
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 60 + 0.5 * xx + 0.3 * yy + 40 * ((xx // 12 + yy // 12) % 2)
    return np.repeat(img[..., None], 3, axis=2)


def test_no_benign_change_at_strength_zero_and_a_seed_renders_the_same_view(scene):
    plain = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=0.0)
    np.testing.assert_array_equal(plain, scene)
    changed = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=1.0)
    again = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=1.0)
    np.testing.assert_array_equal(changed, again)
    assert not np.array_equal(changed, scene)


def test_a_triplet_is_fixed_by_its_seed_and_keeps_an_asked_for_kind(scene):
    frames = [np.clip(scene + 5 * k, 0, 255).astype(np.uint8) for k in range(3)]
    scenes = [SimpleNamespace(frames=frames[:2]), SimpleNamespace(frames=frames[2:])]
    a = augment.triplet(np.random.default_rng(7), scenes, 0)
    b = augment.triplet(np.random.default_rng(7), scenes, 0)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert a[3] == b[3] and a[3] in augment.NEGATIVE_KINDS
    kinds = {augment.triplet(np.random.default_rng(s), scenes, 0)[3] for s in range(40)}
    assert len(kinds) > 3                              # the negative's kind is drawn
    for kind in ("defocus", "moved:rotate", "redirected"):
        assert augment.triplet(np.random.default_rng(0), scenes, 0, kind=kind)[3] == kind
    assert augment.NEGATIVE_WEIGHTS.shape == (len(augment.NEGATIVE_KINDS),)
    assert augment.NEGATIVE_WEIGHTS.sum() == pytest.approx(1.0)


def test_benign_shake_stays_well_inside_the_smallest_move():
    """What the model learns to forgive (vibrate) never reaches what it must catch (moved_corners)."""
    win = views.Window(400, 300, 480, 270)
    shakes, moves = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        v = views.vibrate(rng, win)
        shakes.append(math.hypot((v.cx - win.cx) / win.w, (v.cy - win.cy) / win.h))
        assert abs(v.angle - win.angle) <= views.VIBRATION_ROLL
        assert abs(v.w / win.w - 1) <= views.VIBRATION_SCALE + 1e-9
        c = views.moved_corners(rng, win, "shift")
        centre = c.mean(axis=0)
        moves.append(math.hypot((centre[0] - win.cx) / win.w, (centre[1] - win.cy) / win.h))
    assert max(shakes) <= math.sqrt(2) * views.VIBRATION_SHIFT
    assert min(moves) >= 0.06 - 1e-9 and 0.06 >= 4 * views.VIBRATION_SHIFT


def _detail(img: np.ndarray) -> float:
    grey = img.astype(np.float32).mean(axis=2)
    return float(np.mean(np.abs(np.diff(grey, axis=1))) + np.mean(np.abs(np.diff(grey, axis=0))))


def test_a_near_object_is_large_and_in_focus(scene):
    """Close traffic as a benign change: a large region of the view, as sharp as the scene around it."""
    donor = np.random.default_rng(1).uniform(0, 255, (144, 192, 3)).astype(np.uint8)
    shares = []
    for seed in range(20):
        out = augment.near_object(np.random.default_rng(seed), scene.copy(), donor)
        changed = np.abs(out - scene).max(axis=2) > 1
        shares.append(float(changed.mean()))
        if changed.any():
            assert _detail(np.where(changed[..., None], out, 0)) > 0.5 * _detail(np.where(changed[..., None], scene, 0))
    assert max(shares) > 0.15 and np.median(shares) > 0.1
    # Without another scene's texture there is no near object: a plain colour would be drawn as a cover is.
    assert np.array_equal(augment.near_object(np.random.default_rng(0), scene.copy(), None), scene)


def test_lens_defocus_happens_at_full_size_and_gently(scene):
    """The focus ring's blur is applied to the frame before the view is cut and shrunk: detail drops,
    the layout stays, and its radius is a small share of the view's width."""
    frame = np.repeat(np.repeat(scene, 3, axis=0), 3, axis=1).astype(np.uint8)   # a 576-px frame
    soft = augment.lens_blur(np.random.default_rng(2), frame, view_w=576)
    assert soft.shape == frame.shape and soft.dtype == np.uint8 and np.isfinite(soft).all()
    assert _detail(soft) < 0.9 * _detail(frame)
    assert abs(float(soft.mean()) - float(frame.mean())) < 12      # light is kept, not dimmed


def test_covers_reach_corners_and_every_cover_kind_renders(scene):
    h, w = scene.shape[:2]
    corners = 0
    for seed in range(60):
        m = augment._cover_mask(np.random.default_rng(seed), h, w, 0.3)
        if m[: h // 4, : w // 4].mean() > 0.5 or m[-h // 4:, -w // 4:].mean() > 0.5 \
                or m[: h // 4, -w // 4:].mean() > 0.5 or m[-h // 4:, : w // 4].mean() > 0.5:
            corners += 1
    assert corners >= 5
    kinds = set()
    for seed in range(80):
        rng = np.random.default_rng(seed)
        kinds.add(augment.COVER_KINDS[int(np.random.default_rng(seed).integers(len(augment.COVER_KINDS)))])
        out = augment.cover(rng, scene.copy())
        assert out.shape == scene.shape and np.isfinite(out).all()
    assert "spray" in kinds
