"""``camwatch compare A B``: are two images the same view? Similarity, confidence, verdict.

The drift model embeds a whole view, position included, so the question it
answers is "is B the view A shows?" (the same camera view, the same photo
framing). With ``--crop face`` only the largest face of each image is
embedded (found by MTCNN, camwatch/tools/faces.py), which makes it a rough
"same face crop?" check; the model was not trained for face identity, so
treat that verdict as a hint (docs/guide-matching.md). The command line
(printing, exit status) is camwatch/cli/compare.py.

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

import math
from dataclasses import dataclass

import numpy as np

from camwatch.core.errors import CamwatchError
from camwatch.tools.faces import find_faces
from camwatch.vision.embedder import load_embedder
from camwatch.vision.images import ImageFileError, read_image_file

#: Logistic scale of the confidence (similarity units); see the module docstring.
# The logistic's scale as a fraction of the model's default distance
# (1 - threshold), so one constant serves models whose thresholds differ
# (1.0.0: 0.20, 1.1.0: 0.27, 1.2.0: 0.26, 1.3.0: 0.28, small test models: ~0.8-0.9).
# Fitted on TRAIN cases (benchmarks/tune_decision.py): 1.1.0 0.24 x its
# distance; 1.3.0 0.21 x on the cameras it trained on, 0.14 x on the three
# held out of its training (1.2.0: 0.29 / 0.145). 0.2 is used, so a similarity of 1.0
# against a 0.8 threshold still reads as >99% "same".
SCALE_FRACTION = 0.2


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
    try:
        return read_image_file(path)
    except ImageFileError as exc:
        raise CompareError(f"{path}: {'no such image file' if exc.missing else exc}") from None


def largest_face(image: np.ndarray, where: str) -> np.ndarray:
    """The largest face as a square with a margin of a quarter of its side, or a CompareError.

    A square crop about the face's centre keeps two crops of one face framed
    alike whatever the detector's box shape; the margin keeps hair and chin,
    which the view model sees as part of the face.
    """
    smallest = max(24, min(image.shape[:2]) // 20)
    faces = find_faces(image, smallest)
    if not faces:
        raise CompareError(f"{where}: no face found (a frontal face at least {smallest} px wide is needed)")
    face = max(faces, key=lambda f: f.area)
    side = round(max(face.x2 - face.x1, face.y2 - face.y1) * 1.5)
    x1, y1 = round((face.x1 + face.x2 - side) / 2), round((face.y1 + face.y2 - side) / 2)
    H, W = image.shape[:2]
    return image[max(0, y1):min(H, y1 + side), max(0, x1):min(W, x1 + side)].copy()


def compare(path_a: str, path_b: str, model: str | None = None, crop: str = "none",
            device: str = "auto") -> Comparison:
    """Embed two images with the drift model and compare them."""
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
