"""Images as the vision layer takes them: decoded from bytes or files, and checked once at the door.

An image's header says how large it will be once decoded, and a decoder
believes it: a JPEG or PNG of a few hundred KB that declares 30000 x 30000
pixels decodes into a 2.7 GB frame (measured: ~14 s, RSS 2.7-5.2 GB per try).
So nothing is decoded before its declared size has been read from the header
(JPEG SOF, PNG IHDR, WebP, BMP, TIFF, PNM) and found within a pixel budget;
a format whose size cannot be read that way is refused rather than decoded
blind. OpenCV's own limit (``OPENCV_IO_MAX_IMAGE_PIXELS``) cannot back this
up from here: OpenCV 4.14 reads it once, when cv2 is loaded, so it has to be
in the process environment before then (the service unit's job).
"""

from __future__ import annotations

import os
import re
import stat
import struct

import cv2
import numpy as np

#: The default pixel budget: 8K (7680 x 4320 = 33 Mpx), above any camera's snapshot.
#: config/schema.py's ``max_pixels`` default is the same number (config cannot import vision).
DEFAULT_MAX_PIXELS = 7680 * 4320
#: Bytes per pixel of the budget an image file may hold before it is refused unread (an
#: uncompressed 8-bit BGR image is 3; 133 MB at the default budget).
FILE_BYTES_PER_PIXEL = 4
#: The formats whose size is read from the header; anything else is refused.
FORMATS = ("JPEG", "PNG", "WebP", "BMP", "TIFF", "PNM")

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (not DHT, JPG, DAC)
_JPEG_NO_LENGTH = frozenset(range(0xD0, 0xDA)) | {0x01, 0xFF}  # RSTn, SOI, EOI, TEM: no length field
_PNM_TOKENS = re.compile(rb"(?:\s|#[^\n]*\n)*(\d+)")


class ImageFileError(Exception):
    """An image that cannot be used; ``missing`` tells a wrong path from bad content.

    ``reason`` is ``decode`` (not an image we read), ``too_large`` (over the pixel or
    byte budget) or ``read`` (the file could not be read): sources turn it into their
    SourceError reason, other callers into their own CamwatchError with the context a
    user needs (the camera, the case folder, the command's argument).
    """

    def __init__(self, message: str, missing: bool = False, reason: str = "decode"):
        self.missing = missing
        self.reason = "read" if missing else reason
        super().__init__(message)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOF segment, walking the segments from SOI."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None  # not at a marker: a broken file
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            if i + 9 > n or length < 7:
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        if length < 2:
            return None
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30 or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", data, 18)
        return w, h
    if header >= 40:
        w, h = struct.unpack_from("<ii", data, 18)
        return abs(w), abs(h)  # a negative height is a top-down bitmap
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first IFD (the page OpenCV decodes)."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, offset)
    found: dict[int, int] = {}
    for k in range(min(count, 4096)):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(data):
            break
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):
            if kind == 3:  # SHORT
                (found[tag],) = struct.unpack_from(order + "H", data, entry + 8)
            elif kind == 4:  # LONG
                (found[tag],) = struct.unpack_from(order + "I", data, entry + 8)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    head = data[2:256]
    first = _PNM_TOKENS.match(head)
    second = _PNM_TOKENS.match(head, first.end()) if first else None
    if first is None or second is None:
        return None
    return int(first.group(1)), int(second.group(1))


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) as the image's header declares them, without decoding.

    ImageFileError (reason ``decode``) for a format not in FORMATS or a header
    that does not say its size.
    """
    if data.startswith(b"\xff\xd8\xff"):
        fmt, size = "JPEG", _jpeg_size(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        fmt = "PNG"
        size = struct.unpack_from(">II", data, 16) if len(data) >= 24 and data[12:16] == b"IHDR" else None
    elif data.startswith(b"RIFF"):
        fmt, size = "WebP", _webp_size(data)
    elif data.startswith(b"BM"):
        fmt, size = "BMP", _bmp_size(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        fmt, size = "TIFF", _tiff_size(data)
    elif len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456":
        fmt, size = "PNM", _pnm_size(data)
    else:
        raise ImageFileError(f"not an image OpenCV can decode (camwatch reads {', '.join(FORMATS)})")
    if size is None or min(size) < 1:
        raise ImageFileError(f"a {fmt} whose header does not say its size (truncated or damaged)")
    return fmt, int(size[0]), int(size[1])


def check_budget(fmt: str, width: int, height: int, max_pixels: int) -> None:
    """ImageFileError (reason ``too_large``) if a width x height image is over ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageFileError(f"{fmt} of {width}x{height} pixels is over the {max_pixels} pixel budget "
                             "(max_pixels); not decoded", reason="too_large")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to BGR uint8 (H x W x 3), its declared size checked first.

    ImageFileError: ``too_large`` over the budget (nothing decoded), ``decode``
    for a format we do not read or bytes that do not decode.
    """
    fmt, width, height = image_size(data)
    check_budget(fmt, width, height, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own size limit, or a decoder that gave up loudly
        image = None
    if image is None:
        raise ImageFileError(f"{len(data)} bytes of {fmt} do not decode as an image")
    if image.shape[0] * image.shape[1] > max_pixels:  # the header lied in a way we did not read
        raise ImageFileError(f"{fmt} decoded to {image.shape[1]}x{image.shape[0]} pixels, over the "
                             f"{max_pixels} pixel budget (max_pixels)", reason="too_large")
    return np.asarray(image)


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file read for a pixel budget (never under 1 MB)."""
    return max(1 << 20, FILE_BYTES_PER_PIXEL * max_pixels)


def read_image_file(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (a regular file, of a format in FORMATS) to BGR uint8.

    Raises ImageFileError: missing file (``missing=True``), unreadable file
    ("cannot read it (...)"), a file or image over the budget, or content that
    does not decode. The size is checked with stat before anything is read.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageFileError("no such file", missing=True) from None
    except OSError as exc:
        raise ImageFileError(f"cannot read it ({exc.strerror or exc})", reason="read") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageFileError("no such file", missing=True)
    cap = max_file_bytes(max_pixels)
    if info.st_size > cap:
        raise ImageFileError(f"file of {info.st_size} bytes is over the {cap} byte limit", reason="too_large")
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise ImageFileError(f"cannot read it ({exc.strerror or exc})", reason="read") from None
    if len(data) > cap:
        raise ImageFileError(f"file grew over the {cap} byte limit while read", reason="too_large")
    if not data:
        raise ImageFileError("not an image: the file is empty")
    return decode_image(data, max_pixels)


def check_image(image_bgr: np.ndarray) -> None:
    """ValueError unless ``image_bgr`` is a uint8 BGR (H x W x 3), grey (H x W) or H x W x 1 image."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3) \
            or (image_bgr.ndim == 3 and image_bgr.shape[2] not in (1, 3)) or min(image_bgr.shape[:2]) < 1:
        raise ValueError(f"expected a uint8 BGR or grey image, got {getattr(image_bgr, 'dtype', type(image_bgr))} "
                         f"{getattr(image_bgr, 'shape', '')}")
