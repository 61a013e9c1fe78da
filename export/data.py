"""Loading training scenes into RAM: footage clips, still photos, identity folders.

Every clip is one camera (a fixed view over time); every still is one more
camera with a single moment. Frames are decoded once, subsampled and shrunk, so
rendering thousands of views per minute never touches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXT = {".avi", ".mp4", ".mkv", ".mov", ".gif", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class Scene:
    """One camera's pixels: ``frames`` over time (1 frame for a still photo)."""

    name: str
    frames: list[np.ndarray]          # BGR uint8, all the same size
    fixed: bool = True                # False: frames are not one fixed view (unsteady clips, stills)
    group: str = ""                   # identity / source name, for splits


@dataclass
class Corpus:
    scenes: list[Scene] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)   # what was loaded, for the model card

    def frames_total(self) -> int:
        return sum(len(s.frames) for s in self.scenes)


def natural_key(name: str) -> list:
    """Sort 'frame10.png' after 'frame9.png'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def shrink_to(image: np.ndarray, max_width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= max_width:
        return image
    nh = max(1, round(h * max_width / w))
    return cv2.resize(image, (max_width, nh), interpolation=cv2.INTER_AREA)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def read_video(path: Path, max_frames: int, max_width: int) -> list[np.ndarray]:
    """Up to ``max_frames`` frames spread evenly over the clip (decoded sequentially)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot be opened as a video")
    frames: list[np.ndarray] = []
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n <= 0:  # unknown length: read everything, subsample afterwards
            while True:
                ok, fr = cap.read()
                if not ok:
                    break
                frames.append(shrink_to(_as_bgr(fr), max_width))
            idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
            return [frames[i] for i in sorted(set(idx.tolist()))]
        wanted = set(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int).tolist())
        for i in range(n):
            if i in wanted:
                ok, fr = cap.read()
                if not ok:
                    break
                frames.append(shrink_to(_as_bgr(fr), max_width))
            elif not cap.grab():
                break
    finally:
        cap.release()
    return frames


def read_frame_folder(path: Path, max_frames: int, max_width: int) -> list[np.ndarray]:
    names = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT), key=lambda p: natural_key(p.name))
    if not names:
        return []
    idx = sorted(set(np.linspace(0, len(names) - 1, min(max_frames, len(names))).round().astype(int).tolist()))
    out = []
    for i in idx:
        img = cv2.imread(str(names[i]), cv2.IMREAD_COLOR)
        if img is not None:
            out.append(shrink_to(img, max_width))
    return out


def _same_size(frames: list[np.ndarray]) -> list[np.ndarray]:
    if not frames:
        return frames
    h, w = frames[0].shape[:2]
    return [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]


def load_footage(root: Path, max_frames: int = 120, max_width: int = 640,
                 unsteady_frames: int = 6) -> Corpus:
    """Each clip or frame folder under ``root`` is a camera; ``unsteady/`` clips give loose stills."""
    corpus = Corpus()
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and entry.name == "unsteady":
            for clip in sorted(entry.iterdir(), key=lambda p: natural_key(p.name)):
                if clip.suffix.lower() in VIDEO_EXT:
                    frames = read_video(clip, unsteady_frames, max_width)
                    for k, fr in enumerate(frames):
                        corpus.scenes.append(Scene(f"unsteady/{clip.name}#{k}", [fr], fixed=False,
                                                   group=f"unsteady/{clip.name}"))
                    corpus.sources.append(f"unsteady/{clip.name} ({len(frames)} loose frames)")
            continue
        if entry.is_dir():
            frames = read_frame_folder(entry, max_frames, max_width)
        elif entry.suffix.lower() in VIDEO_EXT:
            frames = read_video(entry, max_frames, max_width)
        else:
            continue
        frames = _same_size(frames)
        if len(frames) >= 2:
            corpus.scenes.append(Scene(entry.name, frames, fixed=True, group=entry.name))
            corpus.sources.append(f"{entry.name} ({len(frames)} frames)")
    return corpus


def load_stills(root: Path, max_width: int = 512, limit: int | None = None) -> Corpus:
    """Every photo under ``root`` (recursively) is one more camera with one moment."""
    paths = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXT), key=lambda p: str(p))
    if limit is not None:
        paths = paths[:limit]
    corpus = Corpus()
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < 64:
            continue
        corpus.scenes.append(Scene(str(p.relative_to(root)), [shrink_to(img, max_width)], fixed=False,
                                   group=p.relative_to(root).parts[0]))
    corpus.sources.append(f"{root} ({len(corpus.scenes)} stills)")
    return corpus


def load_identities(root: Path, max_width: int = 512, max_per_identity: int = 200) -> Corpus:
    """``root/<identity>/*.jpg``: one scene per identity, its images in ``frames``."""
    corpus = Corpus()
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        imgs = []
        for p in sorted(d.iterdir(), key=lambda p: natural_key(p.name))[:max_per_identity]:
            if p.suffix.lower() in IMAGE_EXT:
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is not None:
                    imgs.append(shrink_to(img, max_width))
        if imgs:
            corpus.scenes.append(Scene(d.name, imgs, fixed=False, group=d.name))
    corpus.sources.append(f"{root} ({len(corpus.scenes)} identities, {corpus.frames_total()} images)")
    return corpus
