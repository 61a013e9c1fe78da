"""``camwatch compare A B``: are two images the same view? Similarity, confidence, verdict.

The drift model embeds a whole view, position included, so the question it
answers is "is B the view A shows?" (the same camera view, the same photo
framing). With ``--crop face`` only the largest face of each image is
embedded, which makes it a rough "same face crop?" check; the model was not
trained for face identity, so treat that verdict as a hint (docs/guide-matching.md).

Confidence is a probability of "same" from a logistic on the similarity's
distance to the model's threshold: ``1 / (1 + exp(-(s - threshold) / scale))``,
with ``scale = SCALE_FRACTION * (1 - threshold)``.
At the threshold it is 0.5, so confidence and verdict never disagree.
``SCALE_FRACTION`` was fitted by logistic regression (benchmarks/tune_decision.py) on
benign (same view) and drifted (different view) pairs of cases made from
TRAIN footage, with similarities measured relative to the shipped model's
threshold; it is stored here, not refitted at run time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from camwatch.core.errors import CamwatchError

#: Logistic scale of the confidence (similarity units); see the module docstring.
# The logistic's scale as a fraction of the model's default distance
# (1 - threshold), so one constant serves models whose thresholds differ
# (1.0.0: 0.20, 1.1.0: 0.27, 1.2.0: 0.26, 1.3.0: 0.28, small test models: ~0.8-0.9).
# Fitted on TRAIN cases (benchmarks/tune_decision.py): 1.1.0 0.24 x its
# distance; 1.3.0 0.21 x on the cameras it trained on, 0.14 x on the three
# held out of its training (1.2.0: 0.29 / 0.145). 0.2 is used, so a similarity of 1.0
# against a 0.8 threshold still reads as >99% "same".
SCALE_FRACTION = 0.2
FACE_CASCADE = "haarcascade_frontalface_default.xml"


class CompareError(CamwatchError):
    """An image cannot be compared (missing, not an image, no face found)."""


@dataclass(frozen=True)
class Comparison:
    image_a: str
    image_b: str
    similarity: float        # cosine of the two embeddings, -1..1
    distance: float          # Euclidean distance of the unit embeddings, 0..2
    confidence: float        # probability that they are the same view (or face crop)
    threshold: float         # the model's default similarity threshold
    same: bool               # similarity >= threshold
    crop: str
    model: str


def confidence(similarity: float, threshold: float, scale: float | None = None) -> float:
    """P(same) for a similarity, 0.5 exactly at the threshold."""
    if scale is None:
        scale = SCALE_FRACTION * max(1.0 - threshold, 0.05)
    z = (similarity - threshold) / scale
    if z < -40:          # below 4e-18: report a plain 0
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def read_image(path: str) -> np.ndarray:
    from camwatch.vision.preprocess import ImageFileError, read_image_file

    try:
        return read_image_file(path)
    except ImageFileError as exc:
        raise CompareError(f"{path}: {'no such image file' if exc.missing else exc}") from None


def _cascade_path() -> Path | None:
    """Where OpenCV's frontal-face Haar cascade lies, if anywhere.

    opencv-python(-headless) 4.x ships it under ``cv2.data.haarcascades`` (the
    reason camwatch depends on ``<5``); opencv-python 5.0 has neither the
    detector nor the file; Debian's opencv-data puts it under
    /usr/share/opencv4/haarcascades. ``CAMWATCH_FACE_CASCADE`` names a file and,
    when set, is the only place looked: a typo there must not silently fall
    back to another cascade.
    """
    import cv2

    override = os.environ.get("CAMWATCH_FACE_CASCADE")
    if override:
        if not Path(override).is_file():
            raise CompareError(f"CAMWATCH_FACE_CASCADE={override}: no such file")
        return Path(override)
    candidates = []
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data:
        candidates.append(Path(data) / FACE_CASCADE)
    candidates += [Path(d) / FACE_CASCADE for d in ("/usr/share/opencv4/haarcascades",
                                                    "/usr/share/opencv/haarcascades")]
    return next((c for c in candidates if c.is_file()), None)


def _load_cascade(path: Path):
    """A loaded CascadeClassifier, or a CompareError naming the file.

    ``cv2.CascadeClassifier(path)`` on a malformed XML raises a bare
    SystemError in OpenCV 4.14; ``load()`` on an empty one raises cv2.error,
    which can be caught and named.
    """
    import cv2

    detector = cv2.CascadeClassifier()
    try:
        loaded = detector.load(str(path))
    except cv2.error:
        loaded = False
    if not loaded or detector.empty():
        raise CompareError(f"--crop face: {path} is not a usable Haar cascade file")
    return detector


def largest_face(image: np.ndarray, where: str) -> np.ndarray:
    """The largest frontal face, with a margin of a quarter of its size, or a CompareError."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise CompareError(f"--crop face needs OpenCV's Haar cascade detector, which OpenCV "
                           f"{cv2.__version__} does not include (it was removed in 5.0): install "
                           "opencv-python-headless 4.x to use --crop face")
    path = _cascade_path()
    if path is None:
        raise CompareError("--crop face: OpenCV's haarcascade_frontalface_default.xml was not found "
                           "(looked in cv2.data.haarcascades and /usr/share/opencv4/haarcascades); "
                           "set CAMWATCH_FACE_CASCADE to its path")
    detector = _load_cascade(path)
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    side = max(24, min(grey.shape) // 20)
    faces = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    if len(faces) == 0:
        raise CompareError(f"{where}: no face found (a frontal face at least {side} px wide is needed)")
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    m = w // 4
    H, W = image.shape[:2]
    return image[max(0, y - m):min(H, y + h + m), max(0, x - m):min(W, x + w + m)].copy()


def compare(path_a: str, path_b: str, model: str | None = None, crop: str = "none",
            device: str = "auto") -> Comparison:
    """Embed two images with the drift model and compare them."""
    from camwatch.vision.embedder import load_embedder

    a, b = read_image(path_a), read_image(path_b)
    if crop == "face":
        a, b = largest_face(a, path_a), largest_face(b, path_b)
    elif crop != "none":
        raise CompareError(f"--crop {crop!r}: expected none or face")
    embedder = load_embedder(model, device=device)
    ea, eb = embedder.embed([a, b])
    sim = float(np.clip(ea @ eb, -1.0, 1.0))
    t = float(embedder.spec.threshold)
    return Comparison(image_a=path_a, image_b=path_b, similarity=sim,
                      distance=float(math.sqrt(max(0.0, 2.0 - 2.0 * sim))),
                      confidence=confidence(sim, t), threshold=t, same=sim >= t, crop=crop,
                      model=f"{embedder.spec.name} {embedder.spec.version}")


def cli_compare(args: argparse.Namespace) -> int:
    """Print similarity, distance, confidence and verdict; exit 0 = same, 1 = different."""
    c = compare(args.image_a, args.image_b, getattr(args, "model", None), getattr(args, "crop", "none"))
    if args.json:
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(c).items()},
                         indent=1))
    else:
        what = "face crops" if c.crop == "face" else "views"
        print(f"similarity: {c.similarity:.4f}  (threshold {c.threshold:.4f})")
        print(f"distance:   {c.distance:.4f}")
        print(f"confidence: {c.confidence:.1%} that they are the same")
        print(f"verdict:    {'SAME' if c.same else 'DIFFERENT'} {what}")
    return 0 if c.same else 1
