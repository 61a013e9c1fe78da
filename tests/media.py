"""Test media made on the spot: textured frames, images and H.264 clips.

Tests must run on a fresh clone, so nothing here reads ../shared: frames come
from camwatch.sources.demo's procedural scenes (real texture, moving people, sensor
noise) and clips are encoded by ffmpeg (libx264, ``-g 15``, yuv420p). A "moved"
clip is another window of the same world, the way a turned camera sees it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from camwatch.sources.demo import DemoScene, DemoSpec


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def scene_frames(count: int, width: int = 640, height: int = 360, seed: int = 1,
                 scene: str = "street", moved: bool = False, fps: float = 15.0,
                 drift: str = "turn") -> list[np.ndarray]:
    """``count`` consecutive BGR frames of a demo world; ``moved`` = the drifted view."""
    world = DemoScene(DemoSpec(scene=scene, seed=seed, width=width, height=height, drift=drift))
    return [world.frame(i / fps, drifted=moved) for i in range(count)]


def scene_image(width: int = 640, height: int = 360, seed: int = 1, scene: str = "street",
                moved: bool = False, t: float = 0.0) -> np.ndarray:
    """One BGR frame of a demo world at time ``t``."""
    world = DemoScene(DemoSpec(scene=scene, seed=seed, width=width, height=height))
    return world.frame(t, drifted=moved)


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write an image atomically (tests swap files under a reading source)."""
    path = Path(path)
    tmp = path.with_name(".tmp-" + path.name)
    if not cv2.imwrite(str(tmp), image):
        raise RuntimeError(f"cannot write {tmp}")
    tmp.replace(path)
    return path


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 15, annexb: bool | None = None) -> Path:
    """Encode frames with ffmpeg/libx264: ``.h264`` = raw Annex-B (for the RTSP server), else a container."""
    path = Path(path)
    h, w = frames[0].shape[:2]
    annexb = path.suffix in (".h264", ".264") if annexb is None else annexb
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",  # one slice per frame
           "-pix_fmt", "yuv420p"]
    if annexb:
        cmd += ["-bsf:v", "h264_mp4toannexb", "-f", "h264"]
    tmp = path.with_name(".part-" + path.name)  # same suffix: ffmpeg picks the format by it
    cmd.append(str(tmp))
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    if proc.returncode != 0 or not tmp.is_file():
        raise RuntimeError(f"ffmpeg failed for {path}: {proc.stderr.decode(errors='replace')[-500:]}")
    tmp.replace(path)
    return path


class Media:
    """Media files made once per test session in one folder; each maker caches by name."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def clip(self, name: str = "scene", width: int = 640, height: int = 360, seconds: float = 1.0,
             fps: int = 15, suffix: str = ".h264", seed: int = 1, scene: str = "street") -> Path:
        """A clip of the demo world: ``name`` "scene" (the usual view) or "moved" (turned view)."""
        if name not in ("scene", "moved"):
            raise ValueError(f"unknown clip {name!r}: scene or moved")
        path = self.folder / f"{name}-{scene}{seed}-{width}x{height}-{seconds:g}s-{fps}{suffix}"
        if not path.is_file():
            frames = scene_frames(max(1, int(seconds * fps)), width, height, seed, scene,
                                  moved=(name == "moved"), fps=fps)
            write_clip(path, frames, fps=fps)
        return path

    def image(self, name: str = "scene", width: int = 640, height: int = 360, seed: int = 1,
              scene: str = "street", suffix: str = ".jpg") -> Path:
        """A still of the usual ("scene") or turned ("moved") view."""
        path = self.folder / f"{name}-{scene}{seed}-{width}x{height}{suffix}"
        if not path.is_file():
            write_image(path, scene_image(width, height, seed, scene, moved=(name == "moved")))
        return path
