"""Demo scenes (``demo:`` URLs): textured, living scenes whose view holds until drift_after."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from test_sources import likeness

from camwatch.core.errors import SourceError
from camwatch.sources import open_source
from camwatch.sources.demo import DRIFTS, SCENES, DemoScene, DemoSource, parse_demo_url


def detail(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


def test_urls_parse_and_bad_ones_name_camera_and_key(make_camera):
    spec = parse_demo_url("demo:lobby?seed=3&drift_after=30&drift=turn")
    assert (spec.scene, spec.seed, spec.drift_after, spec.drift) == ("lobby", 3, 30.0, "turn")
    assert parse_demo_url("demo:street").drift_after is None
    for url, words in (("demo:garage", ["garage", "street"]),
                       ("demo:shop?sead=1", ["sead"]),
                       ("demo:shop?drift=spin", ["spin", "turn"]),
                       ("demo:shop?drift_after=soon", ["drift_after", "soon"]),
                       ("demo:shop?width=5", ["width"])):
        with pytest.raises(SourceError) as info:
            open_source(make_camera(url, id="hall"))
        msg = str(info.value)
        assert info.value.reason == "unsupported" and "hall" in msg and "\n" not in msg
        assert all(w in msg for w in words), msg


@pytest.mark.parametrize("scene", SCENES)
def test_scenes_are_textured_alive_and_stable(scene):
    world = DemoScene(parse_demo_url(f"demo:{scene}?seed=5"))
    frames = [world.frame(t) for t in (0.0, 2.0, 4.0, 20.0)]
    for f in frames:
        assert f.shape == (360, 640, 3) and f.dtype == np.uint8
        grey = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        assert grey.std() > 20 and detail(f) > 50  # real texture, not a flat card
    # People/cars move and the noise differs: no two frames are equal ...
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() > 1.0 for a, b in zip(frames, frames[1:]))
    # ... but the view is the same one.
    assert all(likeness(frames[0], f) > 0.85 for f in frames[1:])
    # Light changes slowly over the cycle (default 120 s).
    assert abs(float(world.frame(0.0).mean()) - float(world.frame(30.0).mean())) > 10
    # Another seed is another place.
    other = DemoScene(parse_demo_url(f"demo:{scene}?seed=6")).frame(0.0)
    assert likeness(frames[0], other) < 0.8


def test_size_can_be_chosen():
    f = DemoScene(parse_demo_url("demo:shop?width=320&height=200")).frame(1.0)
    assert f.shape == (200, 320, 3)


@pytest.mark.parametrize("drift", DRIFTS)
def test_each_drift_kind_changes_the_view_its_own_way(drift):
    world = DemoScene(parse_demo_url(f"demo:street?seed=2&drift={drift}"))
    normal, drifted = world.frame(3.0), world.frame(3.0, drifted=True)
    assert drifted.shape == normal.shape
    if drift in ("turn", "zoom"):
        assert likeness(normal, drifted) < 0.5
    elif drift == "blur":
        assert detail(drifted) < 0.35 * detail(normal)  # sensor noise stays sharp
    elif drift == "black":
        assert drifted.mean() < 20 < normal.mean()
    elif drift == "cover":
        dark = cv2.cvtColor(drifted, cv2.COLOR_BGR2GRAY) < 40
        assert dark.mean() > 0.5 > (cv2.cvtColor(normal, cv2.COLOR_BGR2GRAY) < 40).mean()


def test_demo_source_drifts_after_drift_after_and_not_before(make_camera):
    src = open_source(make_camera("demo:lobby?seed=3&drift_after=1.0&drift=turn", id="lobby"))
    assert isinstance(src, DemoSource)
    first = src.read()
    before = []
    while time.monotonic() - src.opened_at < 0.8:
        before.append(src.read())
        time.sleep(0.1)
    assert before and all(likeness(first.image, f.image) > 0.85 for f in before)
    assert not src.drifted
    time.sleep(max(0.0, 1.05 - (time.monotonic() - src.opened_at)))
    after = [src.read() for _ in range(3)]
    assert src.drifted
    assert all(likeness(first.image, f.image) < 0.5 for f in after)
    assert after[-1].captured_at >= first.captured_at
    src.close()


def test_demo_time_starts_when_the_source_opens(make_camera):
    """Two sources of one URL opened apart: each drifts drift_after after its own opening."""
    clock = [100.0]
    cam = make_camera("demo:shop?seed=1&drift_after=30")
    a = DemoSource(cam, clock=lambda: clock[0])
    clock[0] = 120.0
    b = DemoSource(cam, clock=lambda: clock[0])
    clock[0] = 131.0
    assert a.drifted and not b.drifted
    clock[0] = 150.0
    assert b.drifted


def test_the_shipped_model_sees_a_demo_view_as_stable_and_a_turn_as_drift():
    """The demo exists to show the daemon working: with the shipped model, frames of one
    view (people, light, noise changing) stay above the model's threshold and far above
    the turned view of the same place."""
    from camwatch.vision.embedder import load_embedder, shipped_model_path

    if not shipped_model_path().is_file():
        pytest.skip("no shipped model yet (camwatch/models/camwatch-drift.onnx)")
    embedder = load_embedder(None, device="cpu")
    for scene in SCENES:
        world = DemoScene(parse_demo_url(f"demo:{scene}?seed=3&drift=turn"))
        ref = embedder.embed([world.frame(0.0)])[0]
        same = embedder.embed([world.frame(t) for t in (3.0, 20.0, 45.0, 90.0)]) @ ref
        turned = float(embedder.embed([world.frame(20.0, drifted=True)])[0] @ ref)
        assert same.min() > embedder.spec.threshold, (scene, same)
        assert same.min() > turned + 0.3, (scene, same, turned)
