"""What changes in a camera's picture, benign or not, and the triplets made of it.

Triplets come from physics, not labels. The anchor is a camera's view (a
window into a scene frame, export/views.py) at time t; the positive is the
same window at another time with benign change (light, IR night, noise, JPEG,
a little vibration, weather, glare, shadows, passers-by, a person or vehicle
close to the lens); the negative is the same scene through a moved window, or
the view covered (anywhere, sprayed too), defocused (through a lens at full
size, before downscaling), blinded (wholly or by a light in part of it) or
pointed at another scene. Negatives carry benign changes too, so photometric
cues cannot give the answer away. Every function takes an explicit
``numpy.random.Generator`` so a seed reproduces a batch exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .views import inside, moved_corners, out_size, render, sample_window, vibrate

#: Share of positives that differ from the anchor by shake and sensor alone (same
#: moment): the hardest case for a position-keeping embedding of a finely textured
#: scene is a view that only shook, and it must come out nearly identical.
SHAKE_ONLY_POSITIVES = 0.25
#: Share of (not shake-only) positives with a person or vehicle close to the lens.
NEAR_OBJECT_POSITIVES = 0.2
#: Share of defocused negatives blurred at full size before rendering (the rest: at view size).
LENS_DEFOCUS = 0.6

# -- benign changes (float32 BGR 0..255 in, out) ---------------------------------------


def _noise_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Smooth random field in 0..1 (low-frequency texture, cloth, fog density)."""
    sh, sw = max(2, int(h / scale)), max(2, int(w / scale))
    f = rng.random((sh, sw)).astype(np.float32)
    f = cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC)
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def _curve(x: np.ndarray, gamma: float, gain: float) -> np.ndarray:
    """255 * (x/255)^gamma * gain through a lookup table (x is quantised to 8 bits first)."""
    lut = (255.0 * np.power(np.arange(256, dtype=np.float32) / 255.0, gamma) * gain).astype(np.float32)
    u8 = np.clip(x, 0, 255).astype(np.uint8)
    return cv2.LUT(u8, lut)


def _normal(rng: np.random.Generator, sigma: float, shape: tuple) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def light(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Exposure, gamma and contrast: time of day, auto-exposure, clouds."""
    gamma = math.exp(rng.uniform(-0.45, 0.45))
    gain = math.exp(rng.uniform(-0.9, 0.45))
    x = _curve(x, gamma, gain)
    m = float(x.mean())
    return m + (x - m) * rng.uniform(0.65, 1.3) + rng.uniform(-15, 15)


def white_balance(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    return x * np.exp(rng.normal(0, 0.1, 3)).astype(np.float32)


def ir_night(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """IR night mode: grey, different reflectances, hot centre from the IR LEDs, noisy."""
    if rng.random() < 0.5:
        g = x.mean(axis=2, keepdims=True)
    else:
        g = 0.2 * x[..., :1] + 0.3 * x[..., 1:2] + 0.5 * x[..., 2:]
    g = _curve(g, rng.uniform(0.6, 1.2), 1.0)
    if g.ndim == 2:
        g = g[..., None]
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w * rng.uniform(0.35, 0.65)) / w) ** 2 + ((yy - h * rng.uniform(0.35, 0.65)) / h) ** 2
    g = g * (1.0 - rng.uniform(0.2, 0.6) * np.minimum(r2 * 2.5, 1.0))[..., None]
    g = g * rng.uniform(0.5, 1.3)
    g = g + _normal(rng, rng.uniform(3, 14), g.shape)
    out = np.repeat(g, 3, axis=2)
    if rng.random() < 0.3:  # slight tint some sensors keep
        out = out * np.array([rng.uniform(0.95, 1.08), 1.0, rng.uniform(0.95, 1.08)], np.float32)
    return out


def sensor_noise(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    sigma = rng.uniform(1.5, 12)
    if rng.random() < 0.5:
        n = _normal(rng, sigma, x.shape[:2] + (1,))
    else:
        n = _normal(rng, sigma, x.shape)
    shot = np.sqrt(np.clip(x, 0, 255) / 255.0) if rng.random() < 0.5 else 1.0
    return x + n * shot


def jpeg(rng: np.random.Generator, img_u8: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img_u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(12, 80))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img_u8


def rain(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Rain streaks or snow flakes over the scene."""
    h, w = x.shape[:2]
    layer = np.zeros((h, w), np.float32)
    if rng.random() < 0.6:
        n = int(rng.integers(60, 500))
        ang = math.radians(rng.uniform(-25, 25))
        length = rng.uniform(0.02, 0.07) * h
        xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
        dx, dy = math.sin(ang) * length, math.cos(ang) * length
        for x0, y0 in zip(xs, ys):
            cv2.line(layer, (int(x0), int(y0)), (int(x0 + dx), int(y0 + dy)), float(rng.uniform(0.4, 1.0)), 1)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.7)
        amp = rng.uniform(30, 90)
    else:
        n = int(rng.integers(80, 600))
        for x0, y0, r in zip(rng.uniform(0, w, n), rng.uniform(0, h, n), rng.uniform(0.6, 2.2, n)):
            cv2.circle(layer, (int(x0), int(y0)), int(round(r)), float(rng.uniform(0.5, 1.0)), -1)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.8)
        amp = rng.uniform(80, 180)
    return x * (1 - 0.15 * layer[..., None]) + amp * layer[..., None]


def fog(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    a = rng.uniform(0.12, 0.5) * (0.6 + 0.8 * _noise_field(rng, h, w, rng.uniform(40, 120)))
    if rng.random() < 0.5:  # denser towards the top (distance)
        a = a * np.linspace(1.2, 0.6, h, dtype=np.float32)[:, None]
    a = np.clip(a, 0, 0.75)[..., None]
    return x * (1 - a) + rng.uniform(150, 235) * a


def glare(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Headlights, lamps, sun reflections: local bright blobs with bloom and flare streaks."""
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    add = np.zeros((h, w), np.float32)
    n = int(rng.integers(1, 5))
    pair = rng.random() < 0.4   # a car's two headlights
    cy0 = rng.uniform(0.3, 0.95) * h
    cx0 = rng.uniform(0.05, 0.95) * w
    for i in range(n):
        if pair and i < 2:
            cx, cy = cx0 + (i * 2 - 1) * rng.uniform(0.03, 0.08) * w, cy0
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.01, 0.07) * w
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        add += rng.uniform(180, 400) * np.exp(-d2 / (2 * r * r))
        add += rng.uniform(20, 80) * np.exp(-d2 / (2 * (3.5 * r) ** 2))      # bloom
        if rng.random() < 0.3:                                                # horizontal flare streak
            add += rng.uniform(30, 100) * np.exp(-((yy - cy) ** 2) / (2 * (0.25 * r) ** 2)) \
                * np.exp(-np.abs(xx - cx) / (rng.uniform(0.1, 0.3) * w))
    tint = np.array([rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.0), 1.0], np.float32)
    return x + add[..., None] * tint


def shadow(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    m = np.zeros((h, w), np.float32)
    k = int(rng.integers(3, 7))
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.15, 0.6) * w
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    rx, ry = rng.uniform(0.4, 1.2, k), rng.uniform(0.4, 1.2, k)
    pts = np.stack([cx + r * rx * np.cos(ang), cy + r * ry * np.sin(ang)], 1)
    cv2.fillPoly(m, [pts.astype(np.int32)], 1.0)
    m = cv2.GaussianBlur(m, (0, 0), rng.uniform(1, 0.03 * w + 1.5))
    return x * (1 - rng.uniform(0.2, 0.6) * m[..., None])


def vignette(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return x * (1 - rng.uniform(0.1, 0.45) * np.clip(r2 / 2, 0, 1))[..., None]


def passers_by(rng: np.random.Generator, x: np.ndarray, donor: np.ndarray | None) -> np.ndarray:
    """Small moving things (people, cars, birds) pasted in: 1-8% of the view."""
    h, w = x.shape[:2]
    out = x.copy()
    for _ in range(int(rng.integers(1, 4))):
        area = rng.uniform(0.005, 0.03) * w * h
        aspect = rng.uniform(1.5, 3.2) if rng.random() < 0.6 else rng.uniform(0.3, 0.7)  # person or vehicle
        bw = max(2, int(math.sqrt(area / aspect)))
        bh = max(2, int(bw * aspect))
        x0, y0 = int(rng.integers(0, max(1, w - bw))), int(rng.integers(int(0.2 * h), max(int(0.2 * h) + 1, h - bh)))
        m = np.zeros((h, w), np.float32)
        cv2.ellipse(m, (x0 + bw // 2, y0 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), 0.8)[..., None]
        if donor is not None and rng.random() < 0.75:
            dh, dw = donor.shape[:2]
            sx, sy = int(rng.integers(0, max(1, dw - w))), int(rng.integers(0, max(1, dh - h)))
            patch = cv2.resize(donor[sy:sy + h, sx:sx + w], (w, h)).astype(np.float32)
        else:
            patch = np.full((h, w, 3), rng.uniform(20, 120) * rng.uniform(0.7, 1.3, 3), np.float32)
            patch *= (0.75 + 0.5 * _noise_field(rng, h, w, 6))[..., None]
        out = out * (1 - m) + patch * m
    return out


def near_object(rng: np.random.Generator, x: np.ndarray, donor: np.ndarray | None) -> np.ndarray:
    """A person or vehicle close to the camera, in focus, over 15-45% of the view.

    Close traffic is the benign change a global embedding confuses with a cover:
    a large region loses the scene's texture. What tells them apart is that a near
    object is sharp and textured like the world (its texture comes from another
    scene), while a cover is soft and plain, so the object is pasted in focus. Never
    a colour under a noise field: that is what a painted or cloth cover looks like
    (``_cover_fill``), and the same picture cannot be benign here and drift there;
    without a donor scene there is no near object.
    """
    if donor is None:
        return x
    h, w = x.shape[:2]
    frac = rng.uniform(0.15, 0.45)
    m = np.zeros((h, w), np.float32)
    if rng.random() < 0.5:   # a vehicle: a low box with a cabin, standing on the bottom edge
        bw = min(w * 1.4, math.sqrt(frac * w * h / 0.55))
        bh = 0.55 * bw
        cx = rng.uniform(0.0, 1.0) * w
        bottom = rng.uniform(0.9, 1.15) * h
        body = np.array([[cx - bw / 2, bottom], [cx - bw / 2, bottom - 0.55 * bh], [cx - 0.3 * bw, bottom - bh],
                         [cx + 0.3 * bw, bottom - bh], [cx + bw / 2, bottom - 0.55 * bh], [cx + bw / 2, bottom]])
        cv2.fillPoly(m, [body.astype(np.int32)], 1.0)
    else:                    # a person: torso and head, cut by the frame's bottom or side
        bh = min(h * 1.5, math.sqrt(frac * w * h / 0.4))
        bw = 0.4 * bh
        cx = rng.uniform(-0.1, 1.1) * w
        top = h - bh * rng.uniform(0.7, 1.0)
        cv2.ellipse(m, (int(cx), int(top + 0.6 * bh)), (int(bw / 2), int(0.5 * bh)), 0, 0, 360, 1.0, -1)
        cv2.circle(m, (int(cx), int(top + 0.08 * bh)), int(0.13 * bh), 1.0, -1)
    if m.mean() < 0.05:
        return x
    m = cv2.GaussianBlur(m, (0, 0), 0.7)[..., None]
    dh, dw = donor.shape[:2]
    cw, ch = int(dw * rng.uniform(0.2, 0.6)), int(dh * rng.uniform(0.2, 0.6))
    sx, sy = int(rng.integers(0, dw - cw + 1)), int(rng.integers(0, dh - ch + 1))
    patch = cv2.resize(donor[sy:sy + ch, sx:sx + cw], (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    patch = cv2.addWeighted(patch, 1.6, cv2.GaussianBlur(patch, (0, 0), 1.5), -0.6, 0)  # close: crisp
    return x * (1 - m) + patch * m


# -- drift (the view itself changed) -----------------------------------------------


def _cover_mask(rng: np.random.Generator, h: int, w: int, frac: float) -> np.ndarray:
    """A covering shape of about ``frac`` of the view: from an edge, a blob, or everything."""
    m = np.zeros((h, w), np.float32)
    if frac >= 0.97:
        m[:] = 1
        return m
    style = rng.random()
    if style < 0.5:     # from an edge, with a slanted/ragged border
        side = int(rng.integers(4))
        depth = frac
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        u = [xs / w, 1 - xs / w, ys / h, 1 - ys / h][side]
        v = [ys / h, ys / h, xs / w, xs / w][side]
        edge = depth + rng.uniform(-0.15, 0.15) * (v - 0.5) + 0.04 * (_noise_field(rng, h, w, 30) - 0.5)
        m = (u < edge).astype(np.float32)
    else:               # a blob (hand, paint, sticker) of about that area
        k = int(rng.integers(5, 10))
        r = math.sqrt(frac * w * h / math.pi)
        cx, cy = rng.uniform(0.0, 1.0) * w, rng.uniform(0.0, 1.0) * h   # anywhere, corners too
        r = r * (1.0 + 0.6 * max(abs(cx / w - 0.5), abs(cy / h - 0.5)))     # a corner blob is partly outside
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = r * rng.uniform(0.75, 1.3, k)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(m, [pts.astype(np.int32)], 1.0)
    return m


def _cover_fill(rng: np.random.Generator, x: np.ndarray, kind: str) -> np.ndarray:
    h, w = x.shape[:2]
    if kind == "dark":
        return np.full_like(x, rng.uniform(0, 40)) + _normal(rng, 3, x.shape[:2] + (1,))
    if kind == "grey":
        base = rng.uniform(50, 210) + np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(0, 30)
        return np.broadcast_to(base, x.shape).astype(np.float32) * np.ones(3, np.float32)
    if kind == "cloth":
        col = rng.uniform(20, 220, 3).astype(np.float32)
        tex = 0.7 + 0.6 * _noise_field(rng, h, w, rng.uniform(15, 60))
        if rng.random() < 0.5:   # weave
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            p = rng.uniform(2, 5)
            tex = tex * (0.9 + 0.1 * np.sin(xx / p) * np.sin(yy / p))
        return tex[..., None] * col
    if kind == "hand":
        col = np.array([rng.uniform(60, 150), rng.uniform(90, 180), rng.uniform(120, 230)], np.float32)
        shade = 0.5 + 0.7 * _noise_field(rng, h, w, rng.uniform(40, 120))
        return shade[..., None] * col
    if kind == "tape":
        col = rng.uniform(0, 255, 3).astype(np.float32)
        return np.ones_like(x) * col * (1 + np.linspace(-0.1, 0.1, h, dtype=np.float32)[:, None, None])
    if kind == "paint":
        col = rng.uniform(0, 255, 3).astype(np.float32)
        return np.ones_like(x) * col * (0.85 + 0.3 * _noise_field(rng, h, w, 8))[..., None]
    raise ValueError(kind)


COVER_KINDS = ("dark", "grey", "cloth", "hand", "tape", "paint", "translucent", "spray")


def cover(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Something on or near the lens over 15-100% of the view; near the lens means soft edges."""
    h, w = x.shape[:2]
    kind = COVER_KINDS[int(rng.integers(len(COVER_KINDS)))]
    # Half of the partial covers hide 15-45 %: a strip or a hand at the edge, which leaves most of the scene's
    # structure in view and so is the one the learned scene's cues alone find least often.
    pick = rng.random()
    frac = 1.0 if pick < 0.2 else rng.uniform(0.15, 0.45) if pick < 0.6 else rng.uniform(0.45, 1.0)
    if kind == "paint" and rng.random() < 0.6:   # several spray blobs
        m = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(2, 6))):
            m = np.maximum(m, _cover_mask(rng, h, w, frac / 2))
    else:
        m = _cover_mask(rng, h, w, frac)
    m = cv2.GaussianBlur(m, (0, 0), rng.uniform(0.5, 0.04 * w + 1))[..., None]
    if kind == "spray":        # paint sprayed on the lens: a soft colour wash, the scene blurred under it
        m = np.maximum(m, cv2.GaussianBlur(m, (0, 0), 0.08 * w)[..., None] * rng.uniform(0.5, 1.0))
        under = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.01, 0.05) * w)
        col = rng.uniform(0, 255, 3).astype(np.float32)
        a = rng.uniform(0.55, 0.95)
        fill = under * (1 - a) + col * a
        fill *= (0.9 + 0.2 * _noise_field(rng, h, w, rng.uniform(6, 20)))[..., None]
    elif kind == "translucent":  # frosted or smeared: the scene becomes a blur under a veil
        veil = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.03, 0.12) * w)
        a = rng.uniform(0.35, 0.85)
        fill = veil * (1 - a) + a * rng.uniform(60, 230)
    else:
        fill = _cover_fill(rng, x, kind)
    return x * (1 - m) + fill * m


def defocus(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Lens out of focus: Gaussian or disk blur, from gentle to strong."""
    w = x.shape[1]
    if rng.random() < 0.5:
        s = w * rng.uniform(0.006, 0.035)
        return cv2.GaussianBlur(x, (0, 0), s)
    r = max(1.5, w * rng.uniform(0.008, 0.04))
    k = int(math.ceil(r)) * 2 + 1
    ker = np.zeros((k, k), np.float32)
    cv2.circle(ker, (k // 2, k // 2), int(round(r)), 1.0, -1, lineType=cv2.LINE_AA)
    return cv2.filter2D(x, -1, ker / ker.sum())


def lens_blur(rng: np.random.Generator, frame: np.ndarray, view_w: float) -> np.ndarray:
    """A focus ring turned: the frame at full size through a lens's out-of-focus disc.

    Applied before the view is rendered (downscaled), so a gentle defocus that
    shows at full size and barely at 128 px is what the network learns from. The
    blur is done in linear light, so highlights spread into bright discs as a
    lens makes them. ``view_w`` is the window's width in frame pixels.
    """
    r = max(0.8, view_w * rng.uniform(0.003, 0.02))
    n = int(math.ceil(r)) + 1
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1].astype(np.float32)
    ker = np.clip(r + 0.5 - np.hypot(xx, yy), 0, 1)
    lin = (frame.astype(np.float32) / 255.0) ** 2.2
    out = cv2.filter2D(lin, -1, ker / ker.sum(), borderType=cv2.BORDER_REFLECT)
    return np.clip(255.0 * np.maximum(out, 0) ** (1 / 2.2), 0, 255).astype(np.uint8)


def blind(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Blinded: near-black (cut, sprayed black), saturated white, a torch or the sun in part of the view,
    or a flashlight/laser bloom over all of it."""
    h, w = x.shape[:2]
    r = rng.random()
    if r < 0.3:
        return x * rng.uniform(0.0, 0.08) + rng.uniform(0, 12) + _normal(rng, rng.uniform(0.5, 4), x.shape)
    if r < 0.55:
        return np.minimum(x * rng.uniform(3, 12) + rng.uniform(80, 220), 255) + _normal(rng, 2, x.shape)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if r < 0.85:   # a torch or the sun in the lens: a saturated region and a veil, the rest still seen
        cx, cy = rng.uniform(0.0, 1.0) * w, rng.uniform(0.0, 1.0) * h
        rad = rng.uniform(0.1, 0.3) * w
        bloom = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad * rad))
        veil = rng.uniform(0.05, 0.25)
        tint = np.array([rng.uniform(0.8, 1), rng.uniform(0.9, 1), 1], np.float32)
        return x * (1 - 0.5 * veil) + 255 * (rng.uniform(1.2, 3.0) * bloom + veil)[..., None] * tint
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    rad = rng.uniform(0.3, 0.9) * w
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    bloom = 600 * np.exp(-d2 / (2 * (0.5 * rad) ** 2)) + 150 * np.exp(-d2 / (2 * rad ** 2))
    dim = rng.uniform(0.05, 0.4)
    tint = np.array([rng.uniform(0.7, 1), rng.uniform(0.7, 1), 1], np.float32)
    return x * dim + bloom[..., None] * tint


# -- composing -----------------------------------------------------------------------


def benign_scene(rng: np.random.Generator, x: np.ndarray, donor: np.ndarray | None, strength: float = 1.0,
                 passers: float = 0.25) -> np.ndarray:
    """Changes in the world in front of the lens."""
    p = strength
    if rng.random() < 0.7 * p:
        x = light(rng, x)
    if rng.random() < 0.3 * p:
        x = white_balance(rng, x)
    if rng.random() < 0.12 * p:
        x = fog(rng, x)
    if rng.random() < 0.15 * p:
        x = shadow(rng, x)
    if rng.random() < passers * p:
        x = passers_by(rng, x, donor)
    if rng.random() < 0.15 * p:
        x = glare(rng, x)
    if rng.random() < 0.1 * p:
        x = rain(rng, x)
    return x


def benign_sensor(rng: np.random.Generator, x: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """What the camera itself does: IR night mode, vignetting, noise; returns uint8 (JPEG applied)."""
    p = strength
    if rng.random() < 0.18 * p:
        x = ir_night(rng, x)
    if rng.random() < 0.12 * p:
        x = vignette(rng, x)
    if rng.random() < 0.45 * p:
        x = sensor_noise(rng, x)
    u8 = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.5 * p:
        u8 = jpeg(rng, u8)
    return u8


NEGATIVE_KINDS = ("moved:shift", "moved:zoom", "moved:rotate", "moved:perspective",
                  "covered", "defocus", "blinded", "redirected")
#: How often each of NEGATIVE_KINDS is drawn (relative weights, normalised to sum 1).
NEGATIVE_WEIGHTS = np.array((0.16, 0.12, 0.10, 0.08, 0.22, 0.14, 0.08, 0.10))
NEGATIVE_WEIGHTS = NEGATIVE_WEIGHTS / NEGATIVE_WEIGHTS.sum()


def _scene_frames(scene, rng: np.random.Generator, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame at t and one at another time (the same frame for stills)."""
    n = len(scene.frames)
    if n == 1:
        return scene.frames[0], scene.frames[0]
    t2 = int(rng.integers(n - 1))
    t2 = t2 + 1 if t2 >= t else t2
    return scene.frames[t], scene.frames[t2]


def triplet(rng: np.random.Generator, scenes: list, idx: int, kind: str | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(anchor, positive, negative, negative kind) as uint8 BGR views of scene ``idx``."""
    scene = scenes[idx]
    t = int(rng.integers(len(scene.frames)))
    f_a, f_b = _scene_frames(scene, rng, t)
    fh, fw = f_a.shape[:2]
    win = sample_window(rng, fw, fh)
    size = out_size(win)
    donor_scene = scenes[int(rng.integers(len(scenes)))]
    donor = donor_scene.frames[int(rng.integers(len(donor_scene.frames)))]

    # anchor: the reference, usually clean, sometimes itself enrolled in odd light
    a = render(f_a, win.corners(), size).astype(np.float32)
    if rng.random() < 0.35:
        a = benign_scene(rng, a, donor, strength=0.5, passers=0.0)
    a = benign_sensor(rng, a, strength=0.5)

    # positive: same window, another time, benign changes; or the same moment, shaken
    if rng.random() < SHAKE_ONLY_POSITIVES:
        p = render(f_a, vibrate(rng, win).corners(), size).astype(np.float32)
        p = benign_sensor(rng, p, strength=0.5)
    else:
        p = render(f_b, vibrate(rng, win).corners(), size).astype(np.float32)
        p = benign_scene(rng, p, donor, passers=0.6 if len(scene.frames) == 1 else 0.2)
        if rng.random() < NEAR_OBJECT_POSITIVES:
            p = near_object(rng, p, donor)
        p = benign_sensor(rng, p)

    # negative: the view itself changed
    if kind is None:
        kind = NEGATIVE_KINDS[int(rng.choice(len(NEGATIVE_KINDS), p=NEGATIVE_WEIGHTS))]
    f_n = f_b if rng.random() < 0.7 else f_a
    lens = False
    if kind.startswith("moved:"):
        move = kind.split(":")[1]
        c = None
        for _ in range(12):
            c = moved_corners(rng, win, move)
            if inside(c, fw, fh):
                break
        n = render(f_n, c, size).astype(np.float32)
    elif kind == "redirected":
        other = idx
        while other == idx and len(scenes) > 1:
            other = int(rng.integers(len(scenes)))
        os_ = scenes[other]
        fo = os_.frames[int(rng.integers(len(os_.frames)))]
        wo = sample_window(rng, fo.shape[1], fo.shape[0])
        n = cv2.resize(render(fo, wo.corners(), out_size(wo)), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    elif kind == "defocus" and (lens := rng.random() < LENS_DEFOCUS):
        n = render(lens_blur(rng, f_n, win.w), vibrate(rng, win).corners(), size).astype(np.float32)
    else:
        n = render(f_n, vibrate(rng, win).corners(), size).astype(np.float32)
    benign_n = rng.random() < 0.6
    if benign_n:
        n = benign_scene(rng, n, donor, passers=0.2)
    if kind == "covered":
        n = cover(rng, n)
    elif kind == "defocus" and not lens:
        n = defocus(rng, n)
    elif kind == "blinded":
        n = blind(rng, n)
    n = benign_sensor(rng, n, strength=1.0 if benign_n else 0.5)
    return a.astype(np.uint8) if a.dtype != np.uint8 else a, p, n, kind
