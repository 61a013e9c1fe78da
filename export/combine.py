"""Several camwatch ONNX models as one ONNX file whose cosine is the mean of theirs (an ensemble).

Why: judging an ensemble of seeds (and the teachers of ``export.train
--distill``) with the same tools as any model (``camwatch evaluate --model``,
``benchmarks/traffic_check.py --model``, ``tune_decision.py --model``). The
members' unit embeddings are set side by side and divided by sqrt(k), so the
file's cosine similarity is the mean of the members'. Its default threshold is
set as export.train sets a model's (0.5% false alarms on the benign validation
pairs of the held-out scenes) when the data folders are given; without them it
is the mean of the members' thresholds, which is laxer (session 8, seeds 1-3: 0.2545 against
0.3012 set on the pairs).
Members must share the input contract (size, channels, normalisation).

    python -m export.combine camwatch/models/camwatch-drift.onnx runs/v13s2/model.onnx --out runs/e2.onnx \\
        --footage ../shared/footage/train --stills ../shared/stills

One model with the data folders is copied as it is, with its default threshold
set on today's validation pairs: how a model trained before session 9 (250
benign pairs, a threshold that moved by 0.11 from one draw to the next) is
judged beside one trained now (5,000 pairs; docs/training.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

#: Metadata every member must agree on: what the one input means.
INPUT_KEYS = ("camwatch.input_width", "camwatch.input_height", "camwatch.channels", "camwatch.input_scale",
              "camwatch.mean", "camwatch.std")


def validation_threshold(path: Path, footage: Path | None, stills: Path | None, identities: Path | None,
                         seed: int) -> float:
    """The model's similarity at 0.5% false alarms on export.train's benign validation pairs."""
    import dataclasses

    from camwatch import train
    from camwatch.vision.embedder import load_embedder

    emb = load_embedder(path, device="cpu")
    scenes = train.held_out_scenes(footage, stills, identities, seed)
    _, val = train.validation_pairs(scenes, dataclasses.asdict(emb.spec.input), identities is not None)
    benign = val.labels == 0          # only benign pairs set it: the drifted half need not be embedded
    return train.default_threshold((emb.run_prepared(val.images_ref[benign])
                                    * emb.run_prepared(val.images_query[benign])).sum(1))


def set_threshold(path: Path, threshold: float) -> None:
    """Rewrite the file's default threshold (metadata only)."""
    import onnx

    model = onnx.load(str(path))
    for entry in model.metadata_props:
        if entry.key == "camwatch.threshold":
            entry.value = f"{threshold:.4f}"
    onnx.save(model, str(path))


def combine(paths: list[Path], out: Path, version: str | None = None) -> float:
    """Write the ensemble of ``paths`` to ``out`` (threshold: the members' mean); returns that threshold."""
    import onnx
    from onnx import compose, helper

    models = [onnx.load(str(p)) for p in paths]
    metas = [{e.key: e.value for e in m.metadata_props} for m in models]
    for path, meta in zip(paths[1:], metas[1:]):
        differs = [k for k in INPUT_KEYS if meta.get(k) != metas[0].get(k)]
        if differs:
            raise SystemExit(f"{path}: its input differs from {paths[0]}'s ({', '.join(differs)})")
    k = len(models)
    nodes, inits, outputs = [], [], []
    for i, m in enumerate(models):
        m = compose.add_prefix(m, f"m{i}_")
        g = m.graph
        nodes.append(helper.make_node("Identity", ["image"], [g.input[0].name], name=f"m{i}_in"))
        nodes.extend(g.node)
        inits.extend(g.initializer)
        outputs.append(g.output[0].name)
    inits.append(helper.make_tensor("ensemble_scale", onnx.TensorProto.FLOAT, [], [1.0 / np.sqrt(k)]))
    nodes.append(helper.make_node("Concat", outputs, ["ensemble_cat"], axis=1, name="ensemble_concat"))
    nodes.append(helper.make_node("Mul", ["ensemble_cat", "ensemble_scale"], ["embedding"], name="ensemble_mul"))
    first = models[0].graph
    dim = sum(int(meta["camwatch.embedding_dim"]) for meta in metas)
    graph = helper.make_graph(nodes, "camwatch_ensemble", [first.input[0]],
                              [helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["N", dim])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=list(models[0].opset_import))
    model.ir_version = models[0].ir_version
    threshold = float(np.mean([float(meta["camwatch.threshold"]) for meta in metas]))
    meta = dict(metas[0], **{"camwatch.embedding_dim": str(dim), "camwatch.threshold": f"{threshold:.4f}",
                             "camwatch.model_name": metas[0]["camwatch.model_name"] + "-ensemble",
                             "camwatch.model_version": version or "+".join(m["camwatch.model_version"] for m in metas)})
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return threshold


def require_files(ap: argparse.ArgumentParser, paths: list[Path], what: str, least: int = 2) -> None:
    """Enough files, all there, or a one-line usage error (export.combine and export.soup)."""
    if len(paths) < least:
        ap.error(f"give two or more {what}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        ap.error(f"not found: {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", nargs="+", type=Path, help="camwatch ONNX models with the same input")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--version", default=None)
    ap.add_argument("--footage", type=Path, help="as export.train: set the threshold on its validation pairs")
    ap.add_argument("--stills", type=Path)
    ap.add_argument("--identities", type=Path)
    ap.add_argument("--seed", type=int, default=1, help="as export.train (it picks the held-out identities)")
    a = ap.parse_args(argv)
    data = bool(a.footage or a.stills or a.identities)
    require_files(ap, a.members, "models to combine (or one, with --footage/--stills or --identities)",
                  least=1 if data else 2)
    if len(a.members) == 1:   # only with the data folders (require_files)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.members[0], a.out)
        what = f"a copy of {a.members[0]}"
    else:
        threshold = combine(a.members, a.out, a.version)
        what, how = f"{len(a.members)} members", "the mean of the members'"
    if data:
        threshold = validation_threshold(a.out, a.footage, a.stills, a.identities, a.seed)
        set_threshold(a.out, threshold)
        how = "set on the validation pairs"
    print(f"{a.out}: {what}, default threshold {threshold:.4f} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
