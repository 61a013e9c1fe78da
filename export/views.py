"""A camera's view: a window into a scene frame, rendered, shaken a little, or moved.

The trainer's notion of "the same view" lives here: a fixed camera is a window
(55-85% of a scene frame); benign shake moves it within VIBRATION_*; a moved
camera's window is shifted, zoomed, rolled or seen in perspective, always at
least four times further than the shake (export/augment.py composes these
into triplets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Views are rendered at most this wide (1.5x the model's 128), then go through vision.prepare.prepare.
RENDER_WIDTH = 192


@dataclass(frozen=True)
class Window:
    """A camera view inside a scene frame: centre, size (pixels) and roll (degrees)."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float = 0.0

    def corners(self) -> np.ndarray:
        a = math.radians(self.angle)
        r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [self.w / 2, self.h / 2]
        return half @ r.T + [self.cx, self.cy]


def sample_window(rng: np.random.Generator, fw: int, fh: int, lo: float = 0.55, hi: float = 0.85) -> Window:
    """A fixed camera's view: 55-85% of the frame, with the frame's aspect ratio."""
    s = rng.uniform(lo, hi)
    w, h = s * fw, s * fh
    cx = rng.uniform(w / 2, fw - w / 2)
    cy = rng.uniform(h / 2, fh - h / 2)
    return Window(cx, cy, w, h, 0.0)


def inside(corners: np.ndarray, fw: int, fh: int, slack: float = 0.5) -> bool:
    return bool(np.all(corners[:, 0] >= -slack) and np.all(corners[:, 0] <= fw + slack)
                and np.all(corners[:, 1] >= -slack) and np.all(corners[:, 1] <= fh + slack))


def out_size(win: Window) -> tuple[int, int]:
    ow = int(round(min(RENDER_WIDTH, win.w)))
    oh = max(8, int(round(ow * win.h / win.w)))
    return max(8, ow), oh


def render(frame: np.ndarray, corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The pixels of ``frame`` inside the quadrilateral ``corners`` (tl, tr, br, bl) at ``size``."""
    ow, oh = size
    dst = np.array([[0, 0], [ow, 0], [ow, oh], [0, oh]], np.float32)
    m = cv2.getPerspectiveTransform(dst, corners.astype(np.float32))
    scale = math.dist(corners[0], corners[1]) / ow
    src = frame
    if scale > 1.6:  # pre-blur against aliasing, as a real sensor integrates over its pixels
        src = cv2.GaussianBlur(frame, (0, 0), 0.45 * scale)
    return cv2.warpPerspective(src, m, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT101)


#: Benign shake the model learns to ignore: shift (fraction of the view), roll (degrees), scale.
#: Wider than the "small vibration" operators mean (~1%, ~0.5 degrees), so that the
#: envelope's edge is not the edge of what the model saw; the smallest move it must
#: catch (moved:shift, 6% in training) stays four times further.
VIBRATION_SHIFT, VIBRATION_ROLL, VIBRATION_SCALE = 0.015, 1.0, 0.008


def vibrate(rng: np.random.Generator, win: Window) -> Window:
    """Benign shake within VIBRATION_SHIFT / VIBRATION_ROLL / VIBRATION_SCALE."""
    s = 1 + rng.uniform(-VIBRATION_SCALE, VIBRATION_SCALE)
    d = VIBRATION_SHIFT
    return Window(win.cx + rng.uniform(-d, d) * win.w, win.cy + rng.uniform(-d, d) * win.h,
                  win.w * s, win.h * s, win.angle + rng.uniform(-VIBRATION_ROLL, VIBRATION_ROLL))


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def moved_corners(rng: np.random.Generator, win: Window, kind: str) -> np.ndarray:
    """Corners of the window after the camera was moved (shift, zoom, rotate, perspective)."""
    if kind == "shift":
        d = rng.uniform(0.06, 0.30)
        a = rng.uniform(0, 2 * math.pi)
        w2 = Window(win.cx + d * win.w * math.cos(a), win.cy + d * win.h * math.sin(a), win.w, win.h, win.angle)
        return w2.corners()
    if kind == "zoom":
        z = rng.uniform(0.65, 0.9) if rng.random() < 0.45 else rng.uniform(1.12, 1.6)
        off = rng.uniform(-0.04, 0.04, 2) * [win.w, win.h]
        return Window(win.cx + off[0], win.cy + off[1], win.w / z, win.h / z, win.angle).corners()
    if kind == "rotate":
        return Window(win.cx, win.cy, win.w, win.h, win.angle + _sign(rng) * rng.uniform(3, 20)).corners()
    if kind == "perspective":  # pan or tilt: one edge shrinks, the view slides towards it
        c = win.corners().copy()
        k = rng.uniform(0.06, 0.18)
        slide = rng.uniform(0.05, 0.20)
        if rng.random() < 0.5:   # pan: left/right edges change height
            side = [0, 3] if rng.random() < 0.5 else [1, 2]
            c[side[0], 1] += k * win.h
            c[side[1], 1] -= k * win.h
            c[:, 0] += _sign(rng) * slide * win.w
        else:                    # tilt: top/bottom edges change width
            side = [0, 1] if rng.random() < 0.5 else [3, 2]
            c[side[0], 0] += k * win.w
            c[side[1], 0] -= k * win.w
            c[:, 1] += _sign(rng) * slide * win.h
        return c
    raise ValueError(kind)
