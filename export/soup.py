"""Average the weights of fine-tunes of one base into one model ("model soup") and export it.

Why: fine-tunes of the same base with different data mixes (say, with near
traffic and with covers weighted up) sit in one basin, so the mean of their
weights is a model that may keep what each learned, at no cost in inference
(an ensemble of cosines doubles it). The default threshold is set on the
trainer's own validation pairs, exactly as ``export.train`` sets it.

    python -m export.soup --footage ../shared/footage/train --stills ../shared/stills \\
        --out runs/soup_3 runs/ft_t/model.pt runs/ftc_3/model.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from camwatch import onnx_export, train

from .combine import require_files


def main(argv: list[str] | None = None) -> int:
    import torch

    from .nets import build

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="+", type=Path, help="model.pt files (state_dicts of the same --arch)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--footage", type=Path, help="as export.train: the validation clips are read from here")
    ap.add_argument("--stills", type=Path)
    ap.add_argument("--identities", type=Path, help="as export.train: labelled folders instead of footage")
    ap.add_argument("--arch", choices=("camwatch", "seed"), default="camwatch")
    ap.add_argument("--seed", type=int, default=1, help="the parts' --seed (it picks the validation split of identities)")
    ap.add_argument("--version", default=None)
    a = ap.parse_args(argv)
    require_files(ap, a.parts, "model.pt files to average")
    identities = a.identities is not None
    val_scenes = train.held_out_scenes(a.footage, a.stills, a.identities, a.seed)
    model, spec_d = build(a.arch)
    states = [torch.load(p, map_location="cpu") for p in a.parts]
    model.load_state_dict({k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype)
                           for k in states[0]})
    model.eval()
    _, val = train.validation_pairs(val_scenes, spec_d, identities)
    metrics = train.evaluate(model, val)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), a.out / "model.pt")
    dim = int(train.embed_np(model, val.images_ref[:1]).shape[1])
    onnx_export.export(model, spec_d, a.out / "model.onnx",
                       onnx_export.metadata(spec_d, dim, metrics["threshold"], "camwatch-drift",
                                            a.version or a.out.name))
    info = {"parts": [str(p) for p in a.parts], "validation": metrics}
    (a.out / "info.json").write_text(json.dumps(info, indent=2, default=str))
    print(json.dumps({"auc": metrics["auc"], "threshold": metrics["threshold"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
