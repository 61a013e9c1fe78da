"""Images as the vision layer takes them: decoded from files, and checked once at the door."""

from __future__ import annotations

import os

import cv2
import numpy as np


class ImageFileError(Exception):
    """An image file that cannot be used; ``missing`` tells a wrong path from bad content.

    Callers turn it into their own CamwatchError with the context a user needs
    (the camera, the case folder, the command's argument).
    """

    def __init__(self, message: str, missing: bool = False):
        self.missing = missing
        super().__init__(message)


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file (any format OpenCV reads) to BGR uint8.

    Raises ImageFileError: missing file (``missing=True``), unreadable file
    ("cannot read it (...)"), or content OpenCV cannot decode.
    """
    if not os.path.isfile(path):
        raise ImageFileError("no such file", missing=True)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageFileError(f"cannot read it ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageFileError("not an image OpenCV can decode (JPEG, PNG, BMP...)")
    return np.asarray(image)


def check_image(image_bgr: np.ndarray) -> None:
    """ValueError unless ``image_bgr`` is a uint8 BGR (H x W x 3), grey (H x W) or H x W x 1 image."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3) \
            or (image_bgr.ndim == 3 and image_bgr.shape[2] not in (1, 3)) or min(image_bgr.shape[:2]) < 1:
        raise ValueError(f"expected a uint8 BGR or grey image, got {getattr(image_bgr, 'dtype', type(image_bgr))} "
                         f"{getattr(image_bgr, 'shape', '')}")
