#!/usr/bin/env python3
"""A harder drift-bench case folder from any clips: the kinds today's decision finds hardest.

drift-bench (``../shared/drift-bench``) stays as it is; this is the project's own
generator of the kinds issue 17 names as the weak ones, so the next design can
be judged on them and nobody has to trust a generator they cannot read:

    python benchmarks/stress_cases.py ../shared/footage/dev/* --out /tmp/stress1 \\
        --seed 1 --per-kind 4 --stills ../shared/stills
    camwatch evaluate /tmp/stress1 --json

Each clip is one camera. Its reference is the clip's first frame, its
``--calibration`` views are plain frames spread over the first fifth of the
clip (a daemon calibrates from its first minutes), and each query is a later
frame (drawn at random from the other four fifths) with one kind applied. The
folder is drift-bench's format (``../shared/drift-bench/FORMAT.md``:
cases.csv, cameras/<cam>/reference.jpg + calibration/, queries/<cam>/<n>.jpg),
so ``camwatch evaluate`` and its per-kind table read it unchanged; beside it,
``params.csv`` (query, kind, the drawn parameters as JSON) says what each view
holds.

Every effect is applied at the clip's FULL resolution, before the view is
scaled to ``--width`` (0 keeps the clip's own size): a real lens blurs the
sensor's pixels, and a downscale first would hide a gentle defocus.

Drifted (label 1) -- names chosen so ``camwatch evaluate``'s kind table files
them under the family an operator should be told (covered, defocused, blinded):

* ``covered:partial``: a polygon, blob or strip at an edge, a corner, the
  centre or anywhere, over 20-60 % of the view; flat or textured; skin, cloth or
  board colours; its edge a little soft (a thing held near the lens).
* ``covered:spray``: a blurred colour wash over 70-100 % of the view (alpha
  0.6-0.95 where it lies), the scene under it softened (Gaussian sigma 0.4-1.2 %
  of the width).
* ``defocus:gentle``: a lens-like disc (bokeh) blur whose radius is searched so
  the view's gain-free detail (mean squared Laplacian / (contrast^2 + 1), at full
  size) falls to a target drawn in 0.2-0.5 of the sharp frame's: the GUIDE's
  real focus-ring turn went to 0.2x at full size (0.55x at 128 px).
* ``blinded:glare`` (local glare): a bright bloom, 8-20 % of the width in
  radius (Gaussian sigma), gain 1.2-2.2, saturating its core (``saturated``:
  the share of white pixels), with a faint veil (3-12 %) over the rest.

Benign (label 0):

* ``benign:fog``: a haze towards light grey, thicker at the top (35-65 %), a
  little softening.
* ``benign:rain``: 150-600 slanted bright streaks, motion-blurred, 10-25 %
  contrast loss.
* ``benign:night``: an IR switch: grey, gain 0.5-1.6, offset, sensor noise
  (sigma 4-12), slight softening.
* ``benign:parked``: a car/van-shaped object over 20-40 % of the view, in the
  lower part, IN FOCUS: filled with a crop of a still (``--stills``) or, without
  stills, a painted body with texture, windows and wheels.
* ``benign:light`` (gain, offset, gamma), ``benign:noise`` (sensor noise and a
  low-quality JPEG), ``benign:scene`` (the later frame as it is).

Deterministic per ``--seed``: the same clips and seed give the same folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress_effects import effects  # noqa: E402

DRIFTED = ("covered:partial", "covered:spray", "defocus:gentle", "blinded:glare")
BENIGN = ("benign:fog", "benign:rain", "benign:night", "benign:parked", "benign:light",
          "benign:noise", "benign:scene")
KINDS = DRIFTED + BENIGN
JPEG_QUALITY = 95
STILL_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_files(folder: Path) -> list[Path]:
    """A folder clip's frames in natural order (``2.png`` before ``10.png``, as they were taken)."""
    def key(p: Path) -> list[tuple[int, int | str]]:
        return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", p.name.lower()) if t]
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in STILL_SUFFIXES), key=key)


def label_of(kind: str) -> int:
    return 0 if kind.startswith("benign") else 1


# -- the case folder ------------------------------------------------------------------------


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames numbered ``wanted`` of a clip (a video file or a folder of images)."""
    if path.is_dir():
        files = image_files(path)
        return {i: im for i in sorted(wanted) if i < len(files)
                and (im := cv2.imread(str(files[i]), cv2.IMREAD_COLOR)) is not None}
    cap = cv2.VideoCapture(str(path))
    out: dict[int, np.ndarray] = {}
    i, last = 0, max(wanted, default=-1)
    while i <= last and cap.grab():
        if i in wanted:
            ok, frame = cap.retrieve()
            if ok:
                out[i] = frame
        i += 1
    cap.release()
    return out


def clip_length(path: Path) -> int:
    if path.is_dir():
        return len(image_files(path))
    return frame_count(path)


def _stored(image: np.ndarray, width: int) -> np.ndarray:
    if width <= 0 or image.shape[1] == width:
        return image
    h = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)


def build(clips: Sequence[Path], out: Path, seed: int, per_kind: int, calibration: int = 8,
          kinds: Sequence[str] = KINDS, width: int = 0, stills: Sequence[Path] = ()) -> list[tuple[str, str, int, str]]:
    """Write the case folder; returns its cases.csv rows."""
    table = effects(stills)
    rows: list[tuple[str, str, int, str]] = []
    details: list[tuple[str, str, str]] = []
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for n_clip, clip in enumerate(clips):
        camera = clip.stem.replace(" ", "_") if clip.is_file() else clip.name.replace(" ", "_")
        rng = np.random.default_rng([seed, n_clip])
        length = clip_length(clip)
        if length < 3:
            raise SystemExit(f"{clip}: {length} frames; a camera needs at least 3")
        early = max(2, length // 5)
        cal = sorted({int(round(v)) for v in np.linspace(1, early - 1, calibration)}) if calibration else []
        later = np.arange(early, length)
        picks = {kind: [int(v) for v in rng.choice(later, per_kind, replace=len(later) < per_kind)]
                 for kind in kinds}
        frames = read_frames(clip, {0, *cal, *(f for v in picks.values() for f in v)})
        if 0 not in frames:
            raise SystemExit(f"{clip}: no frames could be read")
        cam_dir = out / "cameras" / camera
        (cam_dir / "calibration").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cam_dir / "reference.jpg"), _stored(frames[0], width), jpeg)
        for i, f in enumerate(c for c in cal if c in frames):
            cv2.imwrite(str(cam_dir / "calibration" / f"{i:02d}.jpg"), _stored(frames[f], width), jpeg)
        qdir = out / "queries" / camera
        qdir.mkdir(parents=True, exist_ok=True)
        n = 0
        for kind in kinds:
            for f in picks[kind]:
                if f not in frames:
                    continue
                image, params = table[kind](frames[f], rng)
                q = qdir / f"{n:04d}.jpg"
                cv2.imwrite(str(q), _stored(image, width), jpeg)
                query = q.relative_to(out).as_posix()
                rows.append((camera, query, label_of(kind), kind))
                details.append((query, kind, json.dumps({"frame": f, **params}, sort_keys=True)))
                n += 1
    with open(out / "cases.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["camera", "query", "label", "kind"])
        w.writerows(rows)
    with open(out / "params.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "kind", "params"])
        w.writerows(details)
    return rows


def find_stills(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in STILL_SUFFIXES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+", help="video files or folders of frames; each is one camera")
    ap.add_argument("--out", required=True, help="the case folder to make (must not hold cases.csv)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=4, help="queries of each kind per camera (default 4)")
    ap.add_argument("--calibration", type=int, default=8, help="calibration views per camera (default 8)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma list of kinds (default: all)")
    ap.add_argument("--width", type=int, default=0,
                    help="store views this wide, after every effect (default 0: the clip's own size)")
    ap.add_argument("--stills", type=Path, default=None,
                    help="a folder of images benign:parked may paste (default: painted vehicles)")
    a = ap.parse_args()
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"--kinds: unknown {', '.join(unknown)}; expected some of {', '.join(KINDS)}")
    if a.per_kind < 1 or a.calibration < 0 or a.width < 0:
        ap.error("--per-kind must be >= 1, --calibration and --width >= 0")
    clips = [Path(c) for c in a.clips]
    missing = [str(c) for c in clips if not c.exists()]
    if missing:
        ap.error(f"no such clip: {', '.join(missing)}")
    out = Path(a.out)
    if (out / "cases.csv").exists():
        ap.error(f"{out}: already a case folder")
    rows = build(clips, out, a.seed, a.per_kind, a.calibration, kinds, a.width, find_stills(a.stills))
    counts = Counter(kind for _, _, _, kind in rows)
    print(f"{len(rows)} cases from {len(clips)} cameras ({', '.join(f'{k} {n}' for k, n in counts.items())}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
