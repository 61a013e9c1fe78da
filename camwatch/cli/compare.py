"""``camwatch compare``'s printing and exit status; the comparison is camwatch/tools/compare.py."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from camwatch.tools.compare import compare


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
