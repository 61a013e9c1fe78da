"""Frame -> model input, ROI/mask regions, and view statistics.

This module is shared by the daemon and by training (``export/``): the model is
trained on exactly the pixels ``prepare`` produces at serving time, so there is
no train/serve skew. It needs only numpy and cv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .errors import ModelError

Point = tuple[float, float]
Polygon = Sequence[Point]

#: Width at which sharpness is judged. Gentle lens defocus that is invisible at
#: 128 px still drops Laplacian energy clearly at ~480 px (see GUIDE.md).
STATS_WIDTH = 480

_CHANNELS = ("gray", "bgr", "rgb")

#: Grey-level standard deviation below which a stats cell counts as textureless.
FLAT_CELL_STD = 4.0


@dataclass(frozen=True)
class InputSpec:
    """What the model wants as input, read from its ONNX metadata by the embedder.

    ``prepare`` resizes to ``width`` x ``height``, converts to ``channels``,
    multiplies by ``scale`` and then applies ``(x - mean) / std`` per channel.
    """

    width: int = 128
    height: int = 128
    channels: str = "gray"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.channels not in _CHANNELS:
            raise ModelError(f"model input: channels {self.channels!r} is not one of {', '.join(_CHANNELS)}")
        if self.width < 1 or self.height < 1:
            raise ModelError(f"model input: size {self.width}x{self.height} is not positive")
        n = self.n_channels
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, n):
                raise ModelError(f"model input: {name} has {len(values)} values, expected 1 or {n}")
        if any(s == 0 for s in self.std):
            raise ModelError("model input: std contains 0")

    @property
    def n_channels(self) -> int:
        return 1 if self.channels == "gray" else 3


def _shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to (width, height); halve with pyrDown first while the image is >= 2x the target.

    INTER_AREA from 720p/1080p with a non-integer ratio is most of the per-view
    cost; pyrDown halves cheaply and the final INTER_AREA step is then small.
    """
    h, w = image.shape[:2]
    while w >= 2 * width and h >= 2 * height:
        image = cv2.pyrDown(image)
        h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    interp = cv2.INTER_AREA if (w >= width and h >= height) else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def _check_image(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3) \
            or (image_bgr.ndim == 3 and image_bgr.shape[2] not in (1, 3)) or min(image_bgr.shape[:2]) < 1:
        raise ValueError(f"expected a uint8 BGR or grey image, got {getattr(image_bgr, 'dtype', type(image_bgr))} "
                         f"{getattr(image_bgr, 'shape', '')}")


def prepare(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR uint8 frame -> the model's float32 [C, H, W] input.

    Grey conversion happens before shrinking (one channel is a third of the
    resize work); both are linear so the order does not change the picture.
    """
    _check_image(image_bgr)
    img = image_bgr
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if spec.channels == "gray":
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = _shrink(img, spec.width, spec.height)
    if spec.channels == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x = img.astype(np.float32)
    if x.ndim == 2:
        x = x[None]
    else:
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    if spec.scale != 1.0:
        x *= np.float32(spec.scale)
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    if np.any(mean != 0) or np.any(std != 1):
        x = (x - mean) / std
    return x


def prepare_batch(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Several frames -> float32 [N, C, H, W] (N may be 0)."""
    out = np.empty((len(images), spec.n_channels, spec.height, spec.width), np.float32)
    for i, image in enumerate(images):
        out[i] = prepare(image, spec)
    return out


# -- regions ----------------------------------------------------------------------


def _polygon_pixels(polygon: Polygon, w: int, h: int) -> np.ndarray:
    pts = np.asarray(polygon, np.float64).reshape(-1, 2)
    pts = np.clip(pts, 0.0, 1.0) * np.array([w, h])
    return np.round(pts).astype(np.int32)


def _fill_grey(image: np.ndarray, hide: np.ndarray) -> np.ndarray:
    """Fill hidden pixels with the mean grey of the visible ones.

    The model standardises each image, so a fill at the visible mean moves that
    standardisation as little as possible; reference and query get the same
    treatment because both pass through here.
    """
    visible = ~hide
    if not visible.any():
        level = 128.0
    else:
        level = float(image[visible].mean())
    out = image.copy()
    out[hide] = np.uint8(round(level))
    return out


def apply_regions(image_bgr: np.ndarray, roi: Sequence[Polygon] | None,
                  mask: Sequence[Polygon] | None) -> np.ndarray:
    """Keep what the camera's ROI selects and hide what its mask covers.

    Polygons are in 0..1 view coordinates. ROI: crop to the bounding box of all
    ROI polygons and fill what lies outside them with mean grey. Mask: fill the
    inside of each mask polygon with mean grey. No regions = the image as is.
    Reference and query always go through this same function.
    """
    _check_image(image_bgr)
    roi = [p for p in (roi or ()) if len(p) >= 3]
    mask = [p for p in (mask or ()) if len(p) >= 3]
    if not roi and not mask:
        return image_bgr
    h, w = image_bgr.shape[:2]
    hide = np.zeros((h, w), np.uint8)
    if roi:
        hide[:] = 1
        cv2.fillPoly(hide, [_polygon_pixels(p, w, h) for p in roi], 0)
    if mask:
        cv2.fillPoly(hide, [_polygon_pixels(p, w, h) for p in mask], 1)
    out = _fill_grey(image_bgr, hide.astype(bool))
    if roi:
        pts = np.concatenate([_polygon_pixels(p, w, h) for p in roi])
        x0, y0 = np.maximum(pts.min(axis=0), 0)
        x1, y1 = np.minimum(pts.max(axis=0), [w, h])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            out = np.ascontiguousarray(out[y0:y1, x0:x1])
    return out


# -- statistics -------------------------------------------------------------------


@dataclass(frozen=True)
class ViewStats:
    """Cheap global measures of a view, for naming the kind of a change.

    The decision module compares them with the reference's: darker + flat =
    covered/blinded, much less detail at similar contrast = defocused.
    ``sharpness`` is Laplacian energy (mean squared Laplacian) of the grey view
    at <= ``STATS_WIDTH`` px wide; ``detail`` divides it by contrast squared so
    that a global gain change (night, exposure) does not read as blur.
    """

    brightness: float      # mean grey level, 0..255
    contrast: float        # standard deviation of grey, 0..~128
    sharpness: float       # mean squared Laplacian at <= STATS_WIDTH px
    detail: float          # sharpness / (contrast^2 + 1): gain-free sharpness
    dark_fraction: float   # share of pixels <= 16
    bright_fraction: float  # share of pixels >= 240
    colourfulness: float   # mean |chroma| (0 for grey / IR night images)
    width: int             # width the sharpness was judged at
    #: share of a 16x12 grid of cells with almost no texture (grey std < FLAT_CELL_STD at
    #: ~1/4 of STATS_WIDTH, where sensor noise has averaged out): a cover or spray paint
    #: raises it above the reference's. Default for stats stored before it existed.
    flat_fraction: float = 0.0


def view_stats(image_bgr: np.ndarray) -> ViewStats:
    """Brightness, contrast, sharpness and saturation of a view (a few ms at 1080p)."""
    _check_image(image_bgr)
    img = image_bgr if image_bgr.ndim == 3 else image_bgr[:, :, None]
    h, w = img.shape[:2]
    if w > STATS_WIDTH:
        th = max(1, round(h * STATS_WIDTH / w))
        small = _shrink(img, STATS_WIDTH, th)
    else:
        small = img
    if small.ndim == 2:
        small = small[:, :, None]
    if small.shape[2] == 3:
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        b, g, r = (small[:, :, i].astype(np.float32) for i in range(3))
        colourful = float(np.mean(np.abs(r - g)) + np.mean(np.abs(0.5 * (r + g) - b)))
    else:
        grey = small[:, :, 0]
        colourful = 0.0
    mean, std = cv2.meanStdDev(grey)
    contrast = float(std[0, 0])
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    sharp = float(np.mean(lap * lap))
    n = float(grey.size)
    tiny = cv2.pyrDown(cv2.pyrDown(grey)) if min(grey.shape) >= 48 else grey
    gh, gw = tiny.shape[:2]
    cells = [tiny[gh * j // 12:gh * (j + 1) // 12, gw * i // 16:gw * (i + 1) // 16]
             for j in range(12) for i in range(16)]
    cells = [c for c in cells if c.size]
    flat = sum(1 for c in cells if float(c.std()) < FLAT_CELL_STD) / max(1, len(cells))
    return ViewStats(
        brightness=float(mean[0, 0]),
        contrast=contrast,
        sharpness=sharp,
        detail=sharp / (contrast * contrast + 1.0),
        dark_fraction=float(np.count_nonzero(grey <= 16)) / n,
        bright_fraction=float(np.count_nonzero(grey >= 240)) / n,
        colourfulness=colourful,
        width=int(grey.shape[1]),
        flat_fraction=flat,
    )
