"""Training renderings (export/augment.py) that a model's behaviour rests on.

augment needs only numpy and OpenCV, so these run without torch.
"""

from __future__ import annotations

import numpy as np
import pytest

from export import augment


@pytest.fixture
def scene() -> np.ndarray:
    """A textured 192x144 view: gradients and a grid, so every change shows."""
    h, w = 144, 192
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 60 + 0.5 * xx + 0.3 * yy + 40 * ((xx // 12 + yy // 12) % 2)
    return np.repeat(img[..., None], 3, axis=2)


@pytest.fixture
def traffic_rate():
    before = augment.TRAFFIC, augment.TRAFFIC_COVER_PAIRS
    yield augment.use_traffic
    augment.use_traffic(*before)


def test_near_traffic_stands_on_the_ground_and_leaves_most_of_the_view(scene):
    donor = np.full((300, 400, 3), 200, np.float32)
    shares = []
    for seed in range(60):
        out = augment.traffic(np.random.default_rng(seed), scene, donor if seed % 2 else None)
        changed = np.abs(out - scene).max(axis=2) > 8
        # nothing in the top quarter: things stand on the ground, not on the lens
        assert not changed[: int(0.25 * scene.shape[0])].any(), seed
        shares.append(changed.mean())
    # the things together (with their shadows) stay well short of a cover's 25-100%
    assert max(shares) < 0.36 and min(shares) > 0.01
    assert np.median(shares) > 0.05


def test_traffic_is_off_unless_asked_and_then_pastes(scene, traffic_rate):
    traffic_rate(0.0)
    plain = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=0.0)
    np.testing.assert_array_equal(plain, scene)
    traffic_rate(1.0)
    pasted = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=1.0, passers=0.0)
    again = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=1.0, passers=0.0)
    np.testing.assert_array_equal(pasted, again)            # a seed still renders the same view
    traffic_rate(0.0)
    without = augment.benign_scene(np.random.default_rng(3), scene.copy(), None, strength=1.0, passers=0.0)
    assert not np.array_equal(pasted, without)


def test_a_traffic_rate_outside_0_to_1_is_refused(traffic_rate):
    with pytest.raises(ValueError, match="traffic rate"):
        traffic_rate(1.5)
    with pytest.raises(ValueError, match="cover-pair share"):
        traffic_rate(0.5, -0.1)


def test_traffic_cover_pairs_set_near_traffic_against_a_cover_of_the_same_view(scene, traffic_rate):
    from types import SimpleNamespace

    frames = [np.clip(scene + 5 * k, 0, 255).astype(np.uint8) for k in range(3)]
    scenes = [SimpleNamespace(frames=frames[:2]), SimpleNamespace(frames=frames[2:])]
    traffic_rate(0.3)
    kinds = [augment.triplet(np.random.default_rng(s), scenes, 0)[3] for s in range(60)]
    assert len(set(kinds)) > 3                      # without pairs the negative's kind is drawn as ever
    traffic_rate(1.0, 1.0)
    for seed in range(20):
        assert augment.triplet(np.random.default_rng(seed), scenes, 0)[3] == "covered", seed
    traffic_rate(1.0, 1.0)                          # an asked-for kind is never replaced
    assert augment.triplet(np.random.default_rng(0), scenes, 0, kind="defocus")[3] == "defocus"


def test_printed_covers_come_only_with_traffic_and_a_donor(scene, traffic_rate):
    donor = np.zeros((120, 160, 3), np.float32)
    donor[::2] = 255                      # stripes no other cover fill makes
    traffic_rate(0.0)
    assert "print" not in augment.COVER_KINDS
    traffic_rate(0.25)
    seen_stripes = False
    for seed in range(80):
        out = augment.cover(np.random.default_rng(seed), scene, donor)
        rows = out[40:100, 60:130, 0].mean(axis=1)
        seen_stripes |= bool(np.abs(np.diff(rows)).mean() > 40)
    assert seen_stripes


def test_cover_weight_raises_covers_share_and_none_restores_the_old_draws():
    before = augment.NEGATIVE_WEIGHTS.copy()
    cov = augment.NEGATIVE_KINDS.index("covered")
    try:
        augment.use_cover_weight(0.44)
        w = augment.NEGATIVE_WEIGHTS
        assert w.sum() == pytest.approx(1.0)
        assert w[cov] == pytest.approx(0.44 / 1.22)       # 0.22 of 1.00 became 0.44 of 1.22
        # the other kinds keep their proportions to one another
        others = np.delete(w, cov) / np.delete(before, cov)
        assert np.allclose(others, others[0])
        with pytest.raises(ValueError, match="cover weight"):
            augment.use_cover_weight(0.0)
        augment.use_cover_weight(None)
        np.testing.assert_array_equal(augment.NEGATIVE_WEIGHTS, before)
    finally:
        augment.use_cover_weight(None)
