"""Synthetic demo cameras (``demo:`` URLs): the daemon can be tried with no camera.

``demo:street?seed=1``, ``demo:shop?seed=2``, ``demo:lobby?seed=3&drift_after=30&drift=turn``.
Each scene is a textured world (fractal noise, buildings, shelves, floor tiles,
gradients) rendered once when the source opens; every frame is a window of it
with moving people and cars, a slow light cycle and sensor noise, so a model
trained on real footage sees a stable view whose *scene* changes. After
``drift_after`` seconds the *view* changes instead: ``turn`` (the window moves
and tilts), ``zoom``, ``cover``, ``blur`` or ``black``. No files, no network.

Query keys: seed (int), drift_after (seconds from open), drift (kind),
width, height (default 640x360), light (seconds per light cycle, default 120).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from camwatch.config import CameraConfig
from camwatch.core.errors import SourceError
from camwatch.core.types import Frame

SCENES = ("street", "shop", "lobby")
DRIFTS = ("turn", "zoom", "cover", "blur", "black")
#: The world is this much larger than the view, so a turned window stays inside it.
MARGIN = 0.35


@dataclass(frozen=True)
class DemoSpec:
    """What a ``demo:`` URL asks for."""

    scene: str
    seed: int = 0
    width: int = 640
    height: int = 360
    drift_after: float | None = None
    drift: str = "turn"
    light_period: float = 120.0


def parse_demo_url(url: str, where: str = "demo url") -> DemoSpec:
    """A DemoSpec from ``demo:scene?key=value``; SourceError("unsupported") naming the bad part."""
    parts = urlsplit(url)
    scene = (parts.path or parts.netloc).strip("/").lower()
    if scene not in SCENES:
        raise SourceError("unsupported", f"{where}: unknown demo scene {scene!r} (use one of {', '.join(SCENES)})")
    values: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            if key == "seed":
                values["seed"] = int(value)
            elif key in ("width", "height"):
                values[key] = int(value)
                if not 32 <= values[key] <= 4096:
                    raise ValueError
            elif key == "drift_after":
                values["drift_after"] = float(value)
                if values["drift_after"] < 0:
                    raise ValueError
            elif key == "light":
                values["light_period"] = float(value)
                if values["light_period"] <= 0:
                    raise ValueError
            elif key == "drift":
                if value not in DRIFTS:
                    raise SourceError("unsupported",
                                      f"{where}: drift={value!r} is not one of {', '.join(DRIFTS)}")
                values["drift"] = value
            else:
                raise SourceError("unsupported", f"{where}: unknown key {key!r} "
                                  "(seed, drift_after, drift, width, height, light)")
        except ValueError:
            raise SourceError("unsupported", f"{where}: {key}={value!r} is not a valid value") from None
    return DemoSpec(scene=scene, **values)


# -- texture ----------------------------------------------------------------------


def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 5,
                  base: int = 4, persistence: float = 0.55) -> np.ndarray:
    """Value noise summed over octaves, float32 in 0..1: cheap natural-looking texture."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    cells = base
    for _ in range(octaves):
        grid = rng.random((cells + 1, int(cells * width / height) + 2)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
        cells *= 2
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(1e-6, hi - lo)


def _shade(noise: np.ndarray, colour: tuple[int, ...], spread: float) -> np.ndarray:
    """A BGR float image: colour modulated by noise (+-spread)."""
    c = np.array(colour, np.float32)[None, None, :]
    return c * (1.0 - spread + 2 * spread * noise[..., None])


def _paste(world: np.ndarray, x0: int, y0: int, x1: int, y1: int, patch: np.ndarray) -> None:
    h, w = world.shape[:2]
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if xb > xa and yb > ya:
        world[ya:yb, xa:xb] = patch[ya - y0:yb - y0, xa - x0:xb - x0]


def _street(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[dict]]:
    n = fractal_noise(rng, h, w)
    world = np.empty((h, w, 3), np.float32)
    horizon, kerb = int(h * 0.55), int(h * 0.72)
    # sky: a vertical gradient with soft cloud noise
    ramp = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    sky = (1 - ramp) * np.array([210, 170, 120], np.float32) + ramp * np.array([235, 215, 190], np.float32)
    world[:horizon] = sky + 25 * (n[:horizon, :, None] - 0.5)
    world[horizon:kerb] = _shade(n[horizon:kerb], (150, 155, 160), 0.18)       # pavement
    world[kerb:] = _shade(n[kerb:], (85, 85, 88), 0.25)                         # asphalt
    world[kerb:kerb + 4] = (200, 200, 200)
    for x in range(0, w, 90):                                                   # lane marks
        world[int(h * 0.86):int(h * 0.86) + 5, x:x + 45] = (230, 235, 235)
    for x in range(0, w, 40):                                                   # paving joints
        world[horizon:kerb, x:x + 2] *= 0.8
    x = 0
    while x < w:                                                                # buildings
        bw = int(rng.integers(w // 14, w // 6))
        top = int(rng.integers(int(h * 0.08), int(h * 0.35)))
        colour = tuple(int(v) for v in rng.integers(60, 200, 3))
        face = _shade(fractal_noise(rng, horizon - top, bw, octaves=4, base=3), colour, 0.2)
        for wy in range(top + 12, horizon - 25, 28):                            # windows
            for wx in range(8, bw - 14, 22):
                lit = rng.random() < 0.3
                face[wy - top:wy - top + 14, wx:wx + 10] = (120, 200, 230) if lit else (60, 50, 45)
        door = int(rng.integers(10, max(11, bw - 30)))
        face[-30:, door:door + 18] = (40, 45, 60)
        _paste(world, x, top, x + bw, horizon, face)
        world[top:top + 3, x:x + bw] *= 0.6
        x += bw + int(rng.integers(0, 12))
    for _ in range(max(2, w // 200)):                                           # trees
        tx, ty = int(rng.integers(0, w)), int(rng.integers(horizon - 40, horizon))
        cv2.rectangle(world, (tx - 4, ty), (tx + 4, ty + 45), (40, 60, 80), -1)
        cv2.circle(world, (tx, ty - 20), int(rng.integers(22, 40)), (50, 120, 60), -1)
    movers = []
    for i in range(3):
        movers.append(dict(kind="car", y=int(h * (0.78 + 0.08 * (i % 2))),
                           speed=float(rng.uniform(60, 140)) * (1 if i % 2 else -1),
                           phase=float(rng.uniform(0, w)), size=(int(rng.integers(70, 110)), 34),
                           colour=tuple(int(v) for v in rng.integers(30, 230, 3))))
    for _ in range(4):
        movers.append(dict(kind="person", y=int(rng.integers(horizon + 5, kerb - 10)),
                           speed=float(rng.uniform(12, 30)) * (1 if rng.random() < 0.5 else -1),
                           phase=float(rng.uniform(0, w)), size=(12, 40),
                           colour=tuple(int(v) for v in rng.integers(20, 200, 3))))
    return world, movers


def _shop(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[dict]]:
    n = fractal_noise(rng, h, w)
    wall = tuple(int(v) for v in rng.integers(140, 215, 3))
    world = _shade(n, wall, 0.1)                                                # back wall
    floor = int(h * rng.uniform(0.62, 0.76))
    tile = int(rng.integers(24, 48))
    yy, xx = np.mgrid[floor:h, 0:w]
    checker = ((yy // tile + xx // tile) % 2).astype(np.float32)
    world[floor:] = _shade(n[floor:], (150, 160, 170), 0.12) * (0.85 + 0.15 * checker[..., None])
    shelf_w = int(w * rng.uniform(0.12, 0.26))
    levels = int(rng.integers(3, 7))
    top = int(h * rng.uniform(0.05, 0.2))
    for sx in range(int(rng.integers(0, w // 8)), w - shelf_w, shelf_w + int(w * rng.uniform(0.03, 0.12))):
        cv2.rectangle(world, (sx, top), (sx + shelf_w, floor + 10), (70, 90, 110), -1)   # shelves
        for level in range(levels):
            ly = top + 4 + level * int((floor - top) / levels)
            cv2.rectangle(world, (sx, ly + 26), (sx + shelf_w, ly + 30), (40, 50, 60), -1)
            px = sx + 3
            while px < sx + shelf_w - 8:                                        # products
                pw, ph = int(rng.integers(6, 18)), int(rng.integers(12, 25))
                colour = tuple(int(v) for v in rng.integers(20, 250, 3))
                cv2.rectangle(world, (px, ly + 26 - ph), (px + pw, ly + 25), colour, -1)
                cv2.line(world, (px, ly + 26 - ph + 3), (px + pw, ly + 26 - ph + 3), (240, 240, 240), 1)
                px += pw + 2
    for lx in range(int(rng.integers(0, w // 5)), w, int(w * rng.uniform(0.15, 0.3))):  # ceiling lights
        cv2.rectangle(world, (lx, 4), (lx + 60, 12), (250, 250, 250), -1)
    cx = int(w * rng.uniform(0.1, 0.7))
    counter = tuple(int(v) for v in rng.integers(40, 160, 3))
    cv2.rectangle(world, (cx, floor - int(h * 0.15)), (cx + int(w * 0.25), floor + 25), counter, -1)  # counter
    movers = [dict(kind="person", y=int(rng.integers(floor - 20, h - 50)),
                   speed=float(rng.uniform(10, 25)) * (1 if rng.random() < 0.5 else -1),
                   phase=float(rng.uniform(0, w)), size=(16, 60),
                   colour=tuple(int(v) for v in rng.integers(20, 200, 3))) for _ in range(3)]
    return world, movers


def _lobby(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[dict]]:
    n = fractal_noise(rng, h, w)
    world = np.empty((h, w, 3), np.float32)
    floor = int(h * rng.uniform(0.5, 0.68))
    wall = tuple(int(v) for v in rng.integers(140, 215, 3))
    world[:floor] = _shade(n[:floor], wall, 0.12)                               # wall
    ramp = np.linspace(0.8, 1.1, h - floor, dtype=np.float32)[:, None, None]
    marble = fractal_noise(rng, h - floor, w, octaves=6, base=6)
    world[floor:] = _shade(marble, (200, 195, 190), 0.35) * ramp                # floor
    for y in range(floor, h, 40):
        world[y:y + 2] *= 0.75
    for x in range(0, w, 60):
        world[floor:, x:x + 2] *= 0.75
    for px in range(int(rng.integers(0, w // 6)), w, int(w * rng.uniform(0.14, 0.3))):  # pillars
        cv2.rectangle(world, (px, 0), (px + 34, floor + 8), (150, 150, 160), -1)
        cv2.rectangle(world, (px + 26, 0), (px + 34, floor + 8), (110, 110, 120), -1)
    for dx in range(int(rng.integers(w // 10, w // 4)), w - 80, int(w * rng.uniform(0.2, 0.4))):  # doors
        cv2.rectangle(world, (dx, int(floor * 0.45)), (dx + 70, floor), (60, 80, 100), -1)
        cv2.rectangle(world, (dx + 6, int(floor * 0.5)), (dx + 64, floor - 6), (140, 120, 90), -1)
    for _ in range(4):                                                          # plants
        cx, cy = int(rng.integers(0, w)), floor + int(rng.integers(-10, 20))
        cv2.rectangle(world, (cx - 12, cy), (cx + 12, cy + 28), (60, 80, 120), -1)
        for _ in range(6):
            cv2.circle(world, (cx + int(rng.integers(-20, 20)), cy - int(rng.integers(5, 40))),
                       int(rng.integers(8, 16)), (40, int(rng.integers(100, 150)), 50), -1)
    world[:int(h * 0.06)] *= 0.55                                               # ceiling band
    for lx in range(int(rng.integers(0, w // 6)), w, int(w * 0.12)):           # downlights
        cv2.circle(world, (lx, int(h * 0.03)), 6, (245, 250, 255), -1)
    world[floor - 8:floor] *= 0.5                                               # skirting
    for _ in range(int(rng.integers(3, 6))):                                    # pictures and signs
        px, py = int(rng.integers(0, w - 90)), int(rng.integers(int(h * 0.1), max(int(h * 0.11), floor - 120)))
        pw, ph = int(rng.integers(40, 90)), int(rng.integers(30, 70))
        texture = fractal_noise(rng, ph, pw, octaves=3, base=2)  # before the tint: same draws as always
        art = _shade(texture, tuple(int(v) for v in rng.integers(30, 230, 3)), 0.5)
        cv2.rectangle(world, (px - 4, py - 4), (px + pw + 4, py + ph + 4), (35, 30, 30), -1)
        _paste(world, px, py, px + pw, py + ph, art)
    dx = int(rng.integers(0, w - w // 4))                                        # reception desk
    cv2.rectangle(world, (dx, floor - int(h * 0.12)), (dx + w // 4, floor + int(h * 0.06)), (45, 70, 100), -1)
    cv2.rectangle(world, (dx, floor - int(h * 0.12)), (dx + w // 4, floor - int(h * 0.11)), (200, 200, 205), -1)
    cv2.rectangle(world, (int(w * 0.4), int(h * 0.1)), (int(w * 0.6), int(h * 0.2)), (30, 30, 30), -1)  # screen
    movers = [dict(kind="person", y=int(rng.integers(floor - 30, h - 70)),
                   speed=float(rng.uniform(10, 30)) * (1 if rng.random() < 0.5 else -1),
                   phase=float(rng.uniform(0, w)), size=(18, 70),
                   colour=tuple(int(v) for v in rng.integers(20, 200, 3))) for _ in range(4)]
    return world, movers


_BUILDERS = {"street": _street, "shop": _shop, "lobby": _lobby}


class DemoScene:
    """A rendered world plus its movers; ``frame(t, drifted)`` is one camera picture."""

    def __init__(self, spec: DemoSpec):
        self.spec = spec
        rng = np.random.default_rng([spec.seed, SCENES.index(spec.scene)])
        self.ww = int(spec.width * (1 + 2 * MARGIN))
        self.wh = int(spec.height * (1 + 2 * MARGIN))
        world, self.movers = _BUILDERS[spec.scene](rng, self.wh, self.ww)
        self.world = np.clip(world, 0, 255).astype(np.uint8)
        self.ox, self.oy = int(spec.width * MARGIN), int(spec.height * MARGIN)
        # Sensor noise: a small bank of zero-centred frames picked per frame.
        noise = rng.normal(0, 4.0, (3, spec.height, spec.width, 3))
        self._noise = [np.clip(k + 8, 0, 255).astype(np.uint8) for k in noise]
        self._noise_bias = np.full((spec.height, spec.width, 3), 8, np.uint8)
        self._rng = rng
        self._count = 0

    def frame(self, t: float, drifted: bool = False) -> np.ndarray:
        """The view at ``t`` seconds after opening, as BGR uint8 (height x width x 3)."""
        s = self.spec
        drift = s.drift if drifted else None
        if drift == "turn":
            # The window the camera now sees: world region to the right of and above the usual one.
            x0 = self.ox + int(s.width * 0.22)
            y0 = self.oy - int(s.height * 0.08)
        else:
            x0, y0 = self.ox, self.oy
        pad = 24
        xa, ya = max(0, x0 - pad), max(0, y0 - pad)
        view = self.world[ya:y0 + s.height + pad, xa:x0 + s.width + pad].copy()
        for m in self.movers:                                   # people and cars, world coordinates
            mw, mh = m["size"]
            x = (m["phase"] + m["speed"] * t) % (self.ww + mw) - mw
            cx, cy = int(x) - xa, m["y"] - ya
            if m["kind"] == "car":
                cv2.rectangle(view, (cx, cy - mh), (cx + mw, cy), m["colour"], -1)
                cv2.rectangle(view, (cx + mw // 5, cy - mh - 14), (cx + mw * 4 // 5, cy - mh), m["colour"], -1)
                cv2.rectangle(view, (cx + mw // 5 + 4, cy - mh - 11), (cx + mw * 4 // 5 - 4, cy - mh - 2),
                              (90, 70, 60), -1)
                cv2.circle(view, (cx + mw // 5, cy), 8, (20, 20, 20), -1)
                cv2.circle(view, (cx + mw * 4 // 5, cy), 8, (20, 20, 20), -1)
            else:
                step = int(3 * math.sin(t * 6 + m["phase"]))
                cv2.ellipse(view, (cx, cy - mh // 2), (mw // 2, mh // 2 - 6), 0, 0, 360, m["colour"], -1)
                cv2.circle(view, (cx, cy - mh + 2), max(4, mw // 3), (120, 150, 190), -1)
                cv2.line(view, (cx - 3, cy - 8), (cx - 3 + step, cy + 4), (40, 40, 50), 3)
                cv2.line(view, (cx + 3, cy - 8), (cx + 3 - step, cy + 4), (40, 40, 50), 3)
        view = view[y0 - ya:y0 - ya + s.height, x0 - xa:x0 - xa + s.width]
        if drift == "turn":
            view = cv2.warpAffine(view, cv2.getRotationMatrix2D((s.width / 2, s.height / 2), 4.0, 1.0),
                                  (s.width, s.height), borderMode=cv2.BORDER_REFLECT)
        elif drift == "zoom":
            cw, ch = int(s.width * 0.55), int(s.height * 0.55)
            xa2, ya2 = (s.width - cw) // 2, (s.height - ch) // 2
            view = cv2.resize(view[ya2:ya2 + ch, xa2:xa2 + cw], (s.width, s.height), interpolation=cv2.INTER_LINEAR)
        elif drift == "blur":
            view = cv2.GaussianBlur(view, (0, 0), 6)
        elif drift == "cover":
            view = np.ascontiguousarray(view)
            cv2.ellipse(view, (int(s.width * 0.45), int(s.height * 0.5)),
                        (int(s.width * 0.5), int(s.height * 0.45)), 10, 0, 360, (28, 30, 32), -1)
        # Slow light cycle (day/evening) and a flicker of auto-exposure.
        gain = 0.78 + 0.2 * math.sin(2 * math.pi * t / s.light_period) + 0.01 * math.sin(t * 3.1)
        if drift == "black":
            gain = 0.04
        view = cv2.convertScaleAbs(view, alpha=gain, beta=0)
        self._count += 1
        noise = self._noise[self._count % len(self._noise)]
        view = cv2.subtract(cv2.add(view, noise), self._noise_bias)
        return view


class DemoSource:
    """FrameSource for ``demo:`` URLs; time starts when the source is opened."""

    def __init__(self, camera: CameraConfig, clock: Callable[[], float] = time.monotonic):
        self.spec = parse_demo_url(str(camera.url), where=f"camera {camera.id} ({camera.url})")
        self.scene = DemoScene(self.spec)
        self._clock = clock
        self.opened_at = clock()

    @property
    def drifted(self) -> bool:
        after = self.spec.drift_after
        return after is not None and self._clock() - self.opened_at >= after

    def read(self) -> Frame:
        t = self._clock() - self.opened_at
        image = self.scene.frame(t, drifted=self.drifted)
        return Frame(image=image, captured_at=time.time())

    def close(self) -> None:
        pass
