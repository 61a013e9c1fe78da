#!/usr/bin/env python3
"""A drift-bench case folder from real tampered clips and their TIMELINE.csv.

drift-bench's own cases paint or crop tampering onto clean footage; a clip of
a camera really covered or defocused, with its frame ranges read off by eye
(``../shared/footage/tamper/TIMELINE.csv``: clip, first_frame, last_frame,
label, kind, note), is judged the same way once it is a case folder
(``../shared/drift-bench/FORMAT.md``), so ``camwatch evaluate`` and its kind
table run on it unchanged:

    python benchmarks/tamper_cases.py ../shared/footage/tamper --out /tmp/tamper1
    camwatch evaluate /tmp/tamper1

Per clip (one camera): the reference is the first frame of its first benign
range, the calibration views are ``--calibration`` frames spread over the
first half of that range (as a daemon calibrates from its first minutes), and
every ``--step``-th frame of every labelled range that is neither becomes a
query. Frames between ranges (the moments the cloth goes on or off) are left
out: the TIMELINE does not say what they are. Kinds: ``benign`` ->
``benign:scene``, ``covered`` -> ``covered``, ``defocus`` -> ``defocus``;
any other kind is kept as written. Frames are stored at their own size
(JPEG quality 95, as make_cases.py stores views). The tamper footage is for
judging only: nothing is chosen on the folder this makes.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: TIMELINE kind -> drift-bench kind.
KIND_MAP = {"benign": "benign:scene", "covered": "covered", "defocus": "defocus"}
COLUMNS = ["clip", "first_frame", "last_frame", "label", "kind"]


@dataclass(frozen=True)
class Span:
    clip: str
    first: int
    last: int
    label: int
    kind: str


def read_timeline(path: Path) -> list[Span]:
    """TIMELINE.csv rows; SystemExit with the file and line on a bad one."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: missing columns {', '.join(missing)}")
        spans = []
        for line, row in enumerate(reader, start=2):
            try:
                span = Span(row["clip"].strip(), int(row["first_frame"]), int(row["last_frame"]),
                            int(row["label"]), row["kind"].strip().lower())
            except (TypeError, ValueError) as exc:
                raise SystemExit(f"{path}:{line}: {exc}") from None
            if span.last < span.first or span.label not in (0, 1):
                raise SystemExit(f"{path}:{line}: bad range or label")
            spans.append(span)
    return spans


def read_clip(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames could be read")
    return frames


def spread(first: int, last: int, n: int) -> list[int]:
    """``n`` distinct frame numbers spread evenly over first..last (fewer if the range is shorter)."""
    if last < first or n < 1:
        return []
    return sorted({int(round(v)) for v in np.linspace(first, last, n)})


def build(folder: Path, out: Path, calibration: int, step: int) -> list[tuple[str, str, int, str]]:
    spans = read_timeline(folder / "TIMELINE.csv")
    rows: list[tuple[str, str, int, str]] = []
    for clip in dict.fromkeys(s.clip for s in spans):
        mine = [s for s in spans if s.clip == clip]
        benign = [s for s in mine if s.label == 0]
        if not benign:
            raise SystemExit(f"{clip}: no benign range to take a reference from")
        frames = read_clip(folder / clip)
        first = benign[0]
        camera = Path(clip).stem.replace(" ", "_")
        cam_dir = out / "cameras" / camera
        (cam_dir / "calibration").mkdir(parents=True, exist_ok=True)
        jpeg = [cv2.IMWRITE_JPEG_QUALITY, 95]
        cv2.imwrite(str(cam_dir / "reference.jpg"), frames[first.first], jpeg)
        cal = spread(first.first + 1, first.first + (first.last - first.first) // 2, calibration)
        for i, f in enumerate(cal):
            cv2.imwrite(str(cam_dir / "calibration" / f"{i:02d}.jpg"), frames[f], jpeg)
        used = {first.first, *cal}
        qdir = out / "queries" / camera
        qdir.mkdir(parents=True, exist_ok=True)
        for span in mine:
            kind = KIND_MAP.get(span.kind, span.kind)
            for f in range(span.first, min(span.last, len(frames) - 1) + 1, step):
                if f in used:
                    continue
                q = qdir / f"{f:05d}.jpg"
                cv2.imwrite(str(q), frames[f], jpeg)
                rows.append((camera, str(q.relative_to(out)), span.label, kind))
    with open(out / "cases.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["camera", "query", "label", "kind"])
        w.writerows(rows)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a folder with TIMELINE.csv and the clips it names")
    ap.add_argument("--out", required=True, help="the case folder to make")
    ap.add_argument("--calibration", type=int, default=8, help="calibration views per camera (default 8)")
    ap.add_argument("--step", type=int, default=1, help="every STEP-th frame of a range is a query (default 1)")
    a = ap.parse_args()
    if a.step < 1 or a.calibration < 0:
        ap.error("--step must be >= 1 and --calibration >= 0")
    out = Path(a.out)
    if (out / "cases.csv").exists():
        ap.error(f"{out}: already a case folder")
    rows = build(Path(a.folder), out, a.calibration, a.step)
    kinds: dict[str, int] = {}
    for _, _, _, kind in rows:
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{len(rows)} cases ({', '.join(f'{k} {n}' for k, n in kinds.items())}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
