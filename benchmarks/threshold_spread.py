#!/usr/bin/env python3
"""How much a model's default threshold depends on which validation pairs were drawn.

export.train writes as a model's default threshold the similarity at 0.5% false
alarms on benign validation pairs from the held-out scenes. A 0.5% quantile is
only as precise as the number of benign pairs below it; this draws the pairs
afresh for several validation seeds (the trainer's own seed first) at the
trainer's sizes, or at others, and prints each model's threshold per draw, then
the median and the range. Train footage and stills only (the held-out scenes of
the trainer's split); nothing here reads dev.

    python benchmarks/threshold_spread.py camwatch/models/camwatch-drift.onnx runs/x/model.onnx \\
        [--per-clip 48 --per-still 1] [--draws 5] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from camwatch.vision.embedder import load_embedder  # noqa: E402
from export import train  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--per-clip", type=int, default=train.VAL_PAIRS_PER_CLIP,
                    help=f"pairs per held-out clip (trainer: {train.VAL_PAIRS_PER_CLIP}; sessions 1-8: 48)")
    ap.add_argument("--per-still", type=int, default=train.VAL_PAIRS_PER_STILL,
                    help=f"pairs per held-out still (trainer: {train.VAL_PAIRS_PER_STILL}; sessions 1-8: 1)")
    ap.add_argument("--draws", type=int, default=5, help="validation seeds: the trainer's, then 1, 2, ...")
    a = ap.parse_args()

    embedders = [load_embedder(p, device="cpu") for p in a.models]
    scenes = train.held_out_scenes(a.shared / "footage" / "train", a.shared / "stills", None, 1)
    spec = dataclasses.asdict(embedders[0].spec.input)
    seeds = [train.VAL_SEED] + list(range(1, a.draws))
    table: list[list[float]] = [[] for _ in embedders]
    for vs in seeds:
        t0 = time.perf_counter()
        _, val = train.validation_pairs(scenes, spec, False, a.per_clip, a.per_still, vs)
        rendered = time.perf_counter() - t0
        benign = val.labels == 0
        row = []
        for emb, col in zip(embedders, table):
            sim = (emb.run_prepared(val.images_ref[benign]) * emb.run_prepared(val.images_query[benign])).sum(1)
            col.append(train.default_threshold(sim))
            row.append(f"{col[-1]:.4f}")
        print(f"draw {vs:>8}: {int(benign.sum())} benign pairs ({rendered:.0f} s to render)  " + "  ".join(row),
              flush=True)
    print()
    for path, col in zip(a.models, table):
        print(f"{str(path):45s} median {statistics.median(col):.4f}  range {min(col):.4f}-{max(col):.4f} "
              f"(width {max(col) - min(col):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
