"""``camwatch evaluate --plot``: the ROC curve as a PNG, drawn with OpenCV.

Why OpenCV and not matplotlib: OpenCV is already a dependency of every
install, so ``--plot`` works on the default install; matplotlib sits in the
train extra. The x axis (false-alarm rate) is linear up to 1% and logarithmic
above it, because the false-alarm rates that matter to a user are the small ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from camwatch.tools.evaluate import EvaluationError, Result, roc_auc

SIZE = 500
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 40, 60
_LINEAR_UP_TO = 0.01          # false-alarm rate where the x axis turns logarithmic
_DECADES = 2                  # 0.01 -> 1
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK, _GRID, _CURVE, _POINT = (40, 40, 40), (200, 200, 200), (180, 90, 30), (30, 120, 240)   # BGR


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-alarm rate, detection rate) at every threshold, from the strictest down."""
    y = np.asarray(labels) == 1
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    tp = np.concatenate([[0], np.cumsum(y[order])]) / max(1, y.sum())
    fp = np.concatenate([[0], np.cumsum(~y[order])]) / max(1, (~y).sum())
    return fp, tp


def _x(rate: float) -> float:
    """Position 0..1 of a false-alarm rate on the axis."""
    if rate <= _LINEAR_UP_TO:
        u = rate / _LINEAR_UP_TO
    else:
        u = 1.0 + math.log10(rate / _LINEAR_UP_TO)
    return u / (1 + _DECADES)


def _pixel(fp: float, tp: float) -> tuple[int, int]:
    width, height = SIZE - _LEFT - _RIGHT, SIZE - _TOP - _BOTTOM
    return round(_LEFT + _x(fp) * width), round(SIZE - _BOTTOM - tp * height)


def _text(img: np.ndarray, text: str, at: tuple[int, int], scale: float = 0.45, centre: bool = False) -> None:
    (w, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x = at[0] - w // 2 if centre else at[0]
    cv2.putText(img, text, (x, at[1]), _FONT, scale, _INK, 1, cv2.LINE_AA)


def roc_image(result: Result, title: str) -> np.ndarray:
    """The ROC curve of a run, its AUC and the default decision's point, as a BGR image."""
    y = np.array([c.label for c in result.cases])
    fp, tp = roc_points(y, result.scores)
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    for rate, label in ((0.0, "0"), (0.01, "0.01"), (0.1, "0.1"), (1.0, "1")):
        x, _ = _pixel(rate, 0.0)
        cv2.line(img, (x, _TOP), (x, SIZE - _BOTTOM), _GRID, 1)
        _text(img, label, (x, SIZE - _BOTTOM + 18), centre=True)
    for k in range(6):
        _, yy = _pixel(0.0, k / 5)
        cv2.line(img, (_LEFT, yy), (SIZE - _RIGHT, yy), _GRID, 1)
        _text(img, f"{k / 5:.1f}", (_LEFT - 32, yy + 5))
    cv2.rectangle(img, _pixel(0.0, 1.0), _pixel(1.0, 0.0), _INK, 1)
    curve = np.array([_pixel(float(a), float(b)) for a, b in zip(fp, tp)], np.int32)
    cv2.polylines(img, [curve], False, _CURVE, 2, cv2.LINE_AA)
    d = result.drifted.astype(bool)
    cv2.circle(img, _pixel(float(d[y == 0].mean()), float(d[y == 1].mean())), 5, _POINT, -1, cv2.LINE_AA)
    # legend, lower right
    lx, ly = SIZE - _RIGHT - 170, SIZE - _BOTTOM - 40
    cv2.line(img, (lx, ly), (lx + 25, ly), _CURVE, 2, cv2.LINE_AA)
    _text(img, f"AUC {roc_auc(y, result.scores):.4f}", (lx + 32, ly + 5))
    cv2.circle(img, (lx + 12, ly + 20), 5, _POINT, -1, cv2.LINE_AA)
    _text(img, "default decision", (lx + 32, ly + 25))
    _text(img, title, (SIZE // 2, 25), 0.5, centre=True)
    _text(img, "false-alarm rate (benign views)", (_LEFT + (SIZE - _LEFT - _RIGHT) // 2, SIZE - 15), centre=True)
    side = np.full((30, SIZE - _TOP - _BOTTOM, 3), 255, np.uint8)     # the y label, drawn flat then turned
    _text(side, "detection rate (drifted views)", (side.shape[1] // 2, 20), centre=True)
    img[_TOP:SIZE - _BOTTOM, 0:30] = cv2.rotate(side, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


def write_plot(path: Path, result: Result, title: str) -> None:
    """Write ``roc_image`` to ``path``; the format follows the suffix (.png, .jpg, .bmp...)."""
    try:
        ok, data = cv2.imencode(path.suffix or ".png", roc_image(result, title))
    except cv2.error:
        ok = False
    if not ok:
        raise EvaluationError(f"--plot {path}: OpenCV cannot write {path.suffix or 'this'} images; name a .png file")
    try:
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise EvaluationError(f"--plot {path}: cannot write it: {exc.strerror or exc}") from None
