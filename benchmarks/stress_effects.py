#!/usr/bin/env python3
"""The pixel effects of ``stress_cases.py``: each kind as a pure function of a frame and a seeded generator.

Each effect takes a BGR frame at the clip's FULL resolution and a
``numpy.random.Generator`` and returns the changed frame and the parameters it
drew (written to the case folder's ``params.csv``). Their ranges are documented
in ``stress_cases.py``'s docstring, the one place a reader looks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

Params = dict[str, float | int | str]
Effect = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Params]]

#: The band a gentle defocus's detail ratio is drawn from (GUIDE: a focus ring at 0.2x).
DEFOCUS_BAND = (0.2, 0.5)
PARTIAL_BAND = (0.2, 0.6)
PARKED_BAND = (0.2, 0.4)
#: Colours (BGR) of what covers a lens by hand: skin, cloth, cardboard, boards, tape.
COVER_COLOURS = ((90, 120, 170), (60, 90, 140), (40, 40, 40), (120, 70, 30), (150, 150, 150),
                 (70, 110, 150), (230, 230, 225), (20, 20, 25), (40, 60, 110))
#: Spray paint (BGR): black, white, red, blue, green, silver.
PAINT_COLOURS = ((15, 15, 15), (235, 235, 235), (30, 30, 200), (170, 60, 20), (40, 140, 40), (180, 180, 170))


# -- measures -------------------------------------------------------------------------------


def detail(image: np.ndarray) -> float:
    """Gain-free detail at the image's own size: mean squared Laplacian / (contrast^2 + 1).

    The same measure as ``vision.stats`` (``ViewStats.detail``), taken at full size as the
    GUIDE's focus-ring figures are.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    contrast = float(grey.std())
    return float(np.mean(lap * lap)) / (contrast * contrast + 1.0)


# -- shapes ---------------------------------------------------------------------------------


def _fit_fraction(make: Callable[[float], np.ndarray], target: float, hi: float) -> np.ndarray:
    """The mask ``make(scale)`` whose covered share is nearest ``target`` (bisection on scale)."""
    lo, best, best_err = 0.0, make(hi), 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        mask = make(mid)
        share = float(mask.mean())
        if abs(share - target) < best_err:
            best, best_err = mask, abs(share - target)
        if share < target:
            lo = mid
        else:
            hi = mid
    return best


def _anchor(rng: np.random.Generator, w: int, h: int) -> tuple[str, float, float]:
    """Where a cover sits: an edge, a corner, the centre or anywhere."""
    place = str(rng.choice(["edge", "corner", "centre", "anywhere"]))
    if place == "corner":
        return place, float(rng.choice([0, w])), float(rng.choice([0, h]))
    if place == "edge":
        side = int(rng.integers(4))
        along = float(rng.uniform(0.2, 0.8))
        x, y = [(along * w, 0.0), (along * w, float(h)), (0.0, along * h), (float(w), along * h)][side]
        return place, x, y
    if place == "centre":
        return place, w / 2 + float(rng.normal(0, 0.05 * w)), h / 2 + float(rng.normal(0, 0.05 * h))
    return place, float(rng.uniform(0, w)), float(rng.uniform(0, h))


#: Draws of a cover's shape before giving up on reaching its fraction (a polygon anchored at a
#: corner whose points all lie outside the view covers nothing however large it grows).
_COVER_TRIES = 8


def cover_mask(shape: tuple[int, int], rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, Params]:
    """A boolean mask of a polygon, blob or strip over ``fraction`` of an ``(h, w)`` view
    (within a quarter of it: a shape that cannot reach it is drawn again)."""
    for _ in range(_COVER_TRIES):
        mask, params = _cover_shape(shape, rng, fraction)
        if abs(float(mask.mean()) - fraction) <= 0.25 * fraction:
            break
    return mask, params


def _cover_shape(shape: tuple[int, int], rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, Params]:
    h, w = shape
    kind = str(rng.choice(["polygon", "blob", "strip"]))
    if kind == "strip":
        side = int(rng.integers(4))
        tilt = float(rng.uniform(-0.25, 0.25))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        # distance into the view from the chosen edge, the edge a little slanted
        depth = [yy / h + tilt * (xx / w - 0.5), 1 - yy / h + tilt * (xx / w - 0.5),
                 xx / w + tilt * (yy / h - 0.5), 1 - xx / w + tilt * (yy / h - 0.5)][side]
        mask = _fit_fraction(lambda s: depth < s - 0.5, fraction, 2.0)
        return mask, {"shape": "strip", "place": "edge", "side": side}
    place, cx, cy = _anchor(rng, w, h)
    if kind == "polygon":
        n = int(rng.integers(4, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.6, 1.0, n)
        rot = float(rng.uniform(0, np.pi))

        def make(s: float) -> np.ndarray:
            pts = np.stack([cx + s * radii * np.cos(angles + rot), cy + s * radii * np.sin(angles + rot)], 1)
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
            return m.astype(bool)
    else:
        k = int(rng.integers(2, 5))
        offs = rng.normal(0, 0.35, (k, 2))
        sizes = rng.uniform(0.5, 1.0, k)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

        def make(s: float) -> np.ndarray:
            field = np.zeros((h, w), np.float32)
            for (ox, oy), sz in zip(offs, sizes):
                r2 = ((xx - cx - ox * s) ** 2 + (yy - cy - oy * s) ** 2) / max((sz * s) ** 2, 1e-6)
                field += np.exp(-r2)
            return field > 0.5
    mask = _fit_fraction(make, fraction, 3.0 * float(np.hypot(w, h)))
    return mask, {"shape": kind, "place": place}


def _texture(shape: tuple[int, int], rng: np.random.Generator, colour: Sequence[int], textured: bool,
             sharp: bool = False) -> np.ndarray:
    """A fill of ``colour``: flat with a little shading, or with cloth/board texture too
    (``sharp``: fine, in-focus grain, as on a thing far from the lens)."""
    h, w = shape
    low = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fill = np.empty((h, w, 3), np.float32)
    fill[:] = np.asarray(colour, np.float32)
    fill += (8.0 * low)[..., None]
    if textured:
        blur = float(rng.uniform(0.3, 0.6)) if sharp else float(rng.uniform(0.7, 2.0))
        fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), blur)
        fill += (float(rng.uniform(10, 25)) * fine / max(float(fine.std()), 1e-6))[..., None]
    return fill


def _blend(image: np.ndarray, fill: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float32)
    return np.clip(image.astype(np.float32) * (1 - a) + fill * a, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator, colours: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    c = colours[int(rng.integers(len(colours)))]
    return (int(c[0]), int(c[1]), int(c[2]))


# -- drifted --------------------------------------------------------------------------------


def partial_cover(image: np.ndarray, rng: np.random.Generator,
                  fraction: float | None = None) -> tuple[np.ndarray, Params]:
    """``covered:partial``: a flat or textured thing over 20-60 % of the view (``params['covered']``)."""
    h, w = image.shape[:2]
    fraction = float(rng.uniform(*PARTIAL_BAND)) if fraction is None else fraction
    mask, params = cover_mask((h, w), rng, fraction)
    textured = bool(rng.random() < 0.5)
    fill = _texture((h, w), rng, _colour(rng, COVER_COLOURS), textured)
    feather = max(0.5, 0.006 * w * float(rng.uniform(0.3, 1.0)))
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), feather)
    return _blend(image, fill, alpha), {**params, "covered": round(float(mask.mean()), 4),
                                        "textured": int(textured), "feather_px": round(feather, 2)}


def spray(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """``covered:spray``: a blurred colour wash over most of the view, the scene softened under it."""
    h, w = image.shape[:2]
    sigma = float(rng.uniform(0.004, 0.012)) * w
    soft = cv2.GaussianBlur(image, (0, 0), sigma)
    blobs = cv2.resize(rng.uniform(0, 1, (3, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    coverage = float(rng.uniform(0.7, 1.0))
    cut = float(np.quantile(blobs, 1 - coverage))
    strength = float(rng.uniform(0.6, 0.95))
    alpha = cv2.GaussianBlur((blobs >= cut).astype(np.float32), (0, 0), 0.05 * w) * strength
    fill = _texture((h, w), rng, _colour(rng, PAINT_COLOURS), False)
    return _blend(soft, fill, alpha), {"coverage": round(coverage, 3), "alpha": round(strength, 3),
                                       "soften_px": round(sigma, 2)}


def disc_kernel(radius: float) -> np.ndarray:
    """A lens's out-of-focus disc (bokeh), anti-aliased so the radius may be fractional."""
    n = int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1].astype(np.float32)
    k = np.clip(radius + 0.5 - np.hypot(xx, yy), 0, 1)
    return k / k.sum()


def defocus(image: np.ndarray, rng: np.random.Generator, target: float | None = None) -> tuple[np.ndarray, Params]:
    """``defocus:gentle``: the disc blur whose full-size detail ratio is nearest ``target`` (0.2-0.5)."""
    target = float(rng.uniform(*DEFOCUS_BAND)) if target is None else target
    base = max(detail(image), 1e-9)
    lo, hi = 0.3, max(2.0, 0.05 * image.shape[1])
    best, best_r, best_ratio = image, 0.0, 1.0
    for _ in range(14):
        r = (lo + hi) / 2
        out = cv2.filter2D(image, -1, disc_kernel(r), borderType=cv2.BORDER_REFLECT)
        ratio = detail(out) / base
        if abs(ratio - target) < abs(best_ratio - target):
            best, best_r, best_ratio = out, r, ratio
        if ratio > target:
            lo = r
        else:
            hi = r
    return best, {"radius_px": round(best_r, 2), "target": round(target, 3), "detail_ratio": round(best_ratio, 3)}


def glare(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """``blinded:glare``: a bright bloom saturating a region, a faint veil over the rest."""
    h, w = image.shape[:2]
    radius = float(rng.uniform(0.08, 0.20)) * w
    cx, cy = float(rng.uniform(0.1, 0.9)) * w, float(rng.uniform(0.1, 0.9)) * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bloom = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius * radius))
    gain = float(rng.uniform(1.2, 2.2))
    veil = float(rng.uniform(0.03, 0.12))
    tint = np.array([float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.95, 1.0)), 1.0], np.float32)
    out = image.astype(np.float32) + 255.0 * (gain * bloom + veil)[..., None] * tint
    out = np.clip(out, 0, 255).astype(np.uint8)
    saturated = float((out.min(axis=2) >= 250).mean())
    return out, {"radius_px": round(radius, 1), "gain": round(gain, 2), "saturated": round(saturated, 4)}


# -- benign ---------------------------------------------------------------------------------


def fog(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    h, w = image.shape[:2]
    density = float(rng.uniform(0.35, 0.65))
    ramp = np.linspace(1.0, 0.6, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    alpha = np.clip(density * ramp, 0, 0.9)
    grey = float(rng.uniform(180, 230))
    fill = np.full((h, w, 3), grey, np.float32)
    soft = cv2.GaussianBlur(image, (0, 0), max(0.3, 0.0015 * w))
    return _blend(soft, fill, alpha), {"density": round(density, 3), "grey": round(grey, 1)}


def rain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    h, w = image.shape[:2]
    loss = float(rng.uniform(0.10, 0.25))
    f = image.astype(np.float32)
    f = f * (1 - loss) + float(f.mean()) * loss
    streaks = np.zeros((h, w), np.float32)
    n = int(rng.integers(150, 600))
    angle = float(rng.uniform(-0.4, 0.4))
    length = float(rng.uniform(0.02, 0.06)) * h
    for _ in range(n):
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        x2, y2 = x + length * np.sin(angle), y + length * np.cos(angle)
        cv2.line(streaks, (int(x), int(y)), (int(x2), int(y2)), float(rng.uniform(40, 90)), 1, cv2.LINE_AA)
    blurred = cv2.GaussianBlur(streaks, (0, 0), 0.8)
    out = np.clip(f + blurred[..., None], 0, 255).astype(np.uint8)
    return out, {"streaks": n, "contrast_loss": round(loss, 3), "angle": round(angle, 3)}


def night(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    h, w = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gain, offset = float(rng.uniform(0.5, 1.6)), float(rng.uniform(-20, 25))
    sigma = float(rng.uniform(4, 12))
    g = cv2.GaussianBlur(grey, (0, 0), 0.6) * gain + offset + rng.normal(0, sigma, (h, w)).astype(np.float32)
    out = cv2.cvtColor(np.clip(g, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return out, {"gain": round(gain, 3), "offset": round(offset, 1), "noise": round(sigma, 2)}


def light(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    gain, offset, gamma = float(rng.uniform(0.6, 1.4)), float(rng.uniform(-25, 25)), float(rng.uniform(0.7, 1.4))
    f = 255.0 * (image.astype(np.float32) / 255.0) ** gamma * gain + offset
    return np.clip(f, 0, 255).astype(np.uint8), {"gain": round(gain, 3), "offset": round(offset, 1),
                                                 "gamma": round(gamma, 3)}


def noise(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    sigma, quality = float(rng.uniform(4, 12)), int(rng.integers(25, 60))
    f = image.astype(np.float32) + rng.normal(0, sigma, image.shape).astype(np.float32)
    ok, buf = cv2.imencode(".jpg", np.clip(f, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    out = decoded if decoded is not None else image
    return out, {"noise": round(sigma, 2), "jpeg_quality": quality}


def scene(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    return image.copy(), {}


def vehicle_mask(shape: tuple[int, int], rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, Params]:
    """A car or van silhouette in the lower part of the view, sized to ``fraction`` of it."""
    h, w = shape
    van = bool(rng.random() < 0.4)
    cx = float(rng.uniform(0.25, 0.75)) * w
    bottom = float(rng.uniform(0.85, 1.05)) * h

    def make(s: float) -> np.ndarray:
        m = np.zeros((h, w), np.uint8)
        half, body = s, s * (0.55 if van else 0.38)
        top = bottom - body * (1.9 if van else 1.0)
        cv2.rectangle(m, (int(cx - half), int(bottom - body)), (int(cx + half), int(bottom)), 1, -1)
        cabin = np.array([[cx - half * (0.95 if van else 0.55), bottom - body],
                          [cx - half * (0.9 if van else 0.35), top],
                          [cx + half * (0.6 if van else 0.35), top],
                          [cx + half * (0.95 if van else 0.6), bottom - body]])
        cv2.fillPoly(m, [np.round(cabin).astype(np.int32)], 1)
        return m.astype(bool)
    return _fit_fraction(make, fraction, 2.0 * w), {"shape": "van" if van else "car"}


def parked(image: np.ndarray, rng: np.random.Generator, stills: Sequence[Path] = (),
           fraction: float | None = None) -> tuple[np.ndarray, Params]:
    """``benign:parked``: a large in-focus vehicle-shaped object (20-40 %) that stays in view."""
    h, w = image.shape[:2]
    fraction = float(rng.uniform(*PARKED_BAND)) if fraction is None else fraction
    mask, params = vehicle_mask((h, w), rng, fraction)
    fill: np.ndarray | None = None
    source = "painted"
    if stills:
        path = stills[int(rng.integers(len(stills)))]
        still = cv2.imread(str(path), cv2.IMREAD_COLOR)
        ys, xs = np.nonzero(mask)
        if still is not None and len(ys):
            # the still scaled to the object's box: its texture, at the object's size, in focus
            x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
            fill = np.zeros((h, w, 3), np.float32)
            fill[y0:y1, x0:x1] = cv2.resize(still, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
            source = path.name
    if fill is None:
        fill = _texture((h, w), rng, _colour(rng, COVER_COLOURS), True, sharp=True)
        ys, xs = np.nonzero(mask)
        if len(ys):
            # windows (dark, with a reflection) and wheels: structure a car has, in focus
            top, y0 = int(ys.min()), int(ys.min() + 0.35 * (ys.max() - ys.min()))
            cv2.rectangle(fill, (int(xs.min() + 0.25 * np.ptp(xs)), top + 3), (int(xs.max() - 0.25 * np.ptp(xs)), y0),
                          (40, 45, 50), -1)
            r = max(2, int(0.08 * np.ptp(xs)))
            for fx in (0.2, 0.8):
                cv2.circle(fill, (int(xs.min() + fx * np.ptp(xs)), int(ys.max()) - r // 2), r, (15, 15, 15), -1)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.6)
    return _blend(image, fill, alpha), {**params, "covered": round(float(mask.mean()), 4), "fill": source}


def effects(stills: Sequence[Path] = ()) -> dict[str, Effect]:
    """Kind -> its effect (``stills``: images ``benign:parked`` may paste)."""
    return {
        "covered:partial": lambda im, rng: partial_cover(im, rng),
        "covered:spray": spray,
        "defocus:gentle": lambda im, rng: defocus(im, rng),
        "blinded:glare": glare,
        "benign:fog": fog,
        "benign:rain": rain,
        "benign:night": night,
        "benign:parked": lambda im, rng: parked(im, rng, stills),
        "benign:light": light,
        "benign:noise": noise,
        "benign:scene": scene,
    }
