"""Train camwatch's drift embedding with triplet loss and export it to ONNX.

    python -m export.train --footage ../shared/footage/train --stills ../shared/stills \
        --out runs/v13 --seed 1 --steps 2000 --val-every 500 --version 1.3.0

(the shipped model's recipe: docs/training.md), or, for labelled identity
folders (``ROOT/<identity>/*.jpg``, one folder per identity or per view):

    python -m export.train --identities ROOT --out runs/ids --steps 300

Deterministic for a given ``--seed`` (and thread count): batch k is rendered
from ``numpy.random.default_rng([seed, k])`` whichever process renders it.
Every view goes through ``camwatch.vision.prepare.prepare``, the function the
daemon uses, so training sees exactly what serving sees.

torch (the 'train' extra) is imported late, inside the functions that train or
embed: rendering batches and validation pairs, and their tests, run without it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from camwatch.vision.prepare import InputSpec, prepare

from . import augment
from .data import Corpus, Scene, load_footage, load_identities, load_stills

if TYPE_CHECKING:
    import torch

DEFAULT_VAL_CLIPS = ("video02.avi", "worker-zone-detection.gif", "vtest.avi")
VAL_STILL_EVERY = 12          # every 12th still (sorted) is held out
VAL_SEED = 20240601           # the validation pairs are the same whatever --seed is
FALSE_ALARM_TARGET = 0.005    # default threshold: 0.5% false alarms on benign validation pairs
#: Validation pairs (one benign, one drifted) per held-out clip and per held-out still. The
#: default threshold is a 0.5% quantile of the benign pairs' similarities, so it is only as
#: steady as the number of benign pairs below it: these give ~5,000 benign pairs, 25 of them
#: below it (48 and 1, the draw model 1.3.0's threshold was set on, gave 250: the threshold sat
#: between the 2nd and 3rd lowest). Costs ~40 s of rendering once per run, and the 20,000
#: views stay in memory for every validation (1.3 GB at 128x128 grey, float32).
VAL_PAIRS_PER_CLIP = 960
VAL_PAIRS_PER_STILL = 20
#: Identity sets (--identities) keep the small draw: their pairs come from a few photos each.
VAL_PAIRS_IDENTITIES = (48, 1)


@dataclass
class Job:
    """What a render worker needs; inherited through fork, never pickled per batch."""

    scenes: list[Scene]
    weights: np.ndarray
    spec: InputSpec
    batch: int
    seed: int
    identities: bool


_JOB: Job | None = None


def _set_job(job: Job) -> None:
    global _JOB
    _JOB = job


# -- rendering batches ---------------------------------------------------------------


def identity_triplet(rng: np.random.Generator, scenes: list[Scene], idx: int):
    """Anchor and positive: two images of one identity; negative: another identity."""
    def view(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        s = rng.uniform(0.85, 1.0)
        cw, ch = int(w * s), int(h * s)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        x = img[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
        x = augment.benign_scene(rng, x, None, strength=0.5, passers=0.0)
        return augment.benign_sensor(rng, x, strength=0.5)

    own = scenes[idx].frames
    i, j = int(rng.integers(len(own))), int(rng.integers(len(own)))
    other = idx
    while other == idx and len(scenes) > 1:
        other = int(rng.integers(len(scenes)))
    theirs = scenes[other].frames
    return view(own[i]), view(own[j]), view(theirs[int(rng.integers(len(theirs)))]), "identity"


def render_batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step``: images [3B, C, H, W] (anchors, positives, negatives) and scene ids [B]."""
    job = _JOB
    assert job is not None, "render_batch runs where _set_job has set the job (Prefetcher does)"
    rng = np.random.default_rng([job.seed, step])
    replace = len(job.scenes) < job.batch
    ids = rng.choice(len(job.scenes), size=job.batch, replace=replace, p=job.weights)
    views: list[list[np.ndarray]] = [[], [], []]
    for idx in ids:
        if job.identities:
            a, p, n, _ = identity_triplet(rng, job.scenes, int(idx))
        else:
            a, p, n, _ = augment.triplet(rng, job.scenes, int(idx))
        for k, v in enumerate((a, p, n)):
            views[k].append(prepare(v, job.spec))
    return np.stack(views[0] + views[1] + views[2]), ids.astype(np.int64)


def scene_weights(scenes: list[Scene], footage_share: float = 0.5) -> np.ndarray:
    """Fixed clips get ``footage_share`` of the draws (they carry real change over time)."""
    fixed = np.array([s.fixed for s in scenes])
    w = np.ones(len(scenes))
    if fixed.any() and (~fixed).any():
        w[fixed] = footage_share / fixed.sum()
        w[~fixed] = (1 - footage_share) / (~fixed).sum()
    return w / w.sum()


class Prefetcher:
    """Renders batches ahead in worker processes, at most ``depth`` in flight, in order."""

    def __init__(self, job: Job, start: int, stop: int, workers: int, depth: int = 4):
        self.next, self.stop = start, stop
        self.pool = None
        if workers > 0:
            ctx = mp.get_context("fork")
            self.pool = ctx.Pool(workers, initializer=_set_job, initargs=(job,))
        _set_job(job)
        self.queue: deque = deque()
        self.depth = depth
        self._fill()

    def _fill(self) -> None:
        while self.pool is not None and len(self.queue) < self.depth and self.next < self.stop:
            self.queue.append(self.pool.apply_async(render_batch, (self.next,)))
            self.next += 1

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pool is None:
            out = render_batch(self.next)
            self.next += 1
            return out
        res = self.queue.popleft()
        self._fill()
        return res.get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


# -- loss ------------------------------------------------------------------------------


def triplet_loss(emb, ids, margin: float):
    """Triplet loss on cosine distance, own negatives plus FaceNet-style semi-hard mining.

    ``emb`` is [3B, D] (anchors, positives, negatives). For each anchor the
    candidate negatives are every negative in the batch and the anchors and
    positives of other scenes; the mined one is the closest that is still
    farther than the positive (semi-hard), else the anchor's own negative.
    Returns (loss, fraction of triplets still violating the margin).
    """
    import torch  # late: see the module docstring

    b = ids.shape[0]
    a, p, n = emb[:b], emb[b:2 * b], emb[2 * b:]
    d_ap = 1 - (a * p).sum(1)
    d_an_own = 1 - (a * n).sum(1)
    cand = torch.cat([n, a, p], 0)                                   # [3B, D]
    d = 1 - a @ cand.T                                               # [B, 3B]
    same = ids[:, None] == ids[None, :]
    other_scene = ~same
    valid = torch.cat([torch.ones_like(same), other_scene, other_scene], 1)
    semi = valid & (d > d_ap[:, None].detach()) & (d < d_ap[:, None].detach() + margin)
    big = torch.full_like(d, 9.0)
    d_semi = torch.where(semi, d, big).min(1).values
    has = semi.any(1)
    d_mined = torch.where(has, d_semi, d_an_own)
    own = torch.relu(d_ap - d_an_own + margin)
    mined = torch.relu(d_ap - d_mined + margin)
    loss = own.mean() + mined.mean()
    return loss, float((own > 0).float().mean())


# -- validation -------------------------------------------------------------------------


@dataclass
class ValSet:
    images_ref: np.ndarray
    images_query: np.ndarray
    labels: np.ndarray          # 1 = drifted
    kinds: list[str]


def make_valset(scenes: list[Scene], spec: InputSpec, identities: bool, per_clip: int,
                per_still: int, seed: int = VAL_SEED) -> ValSet:
    """Fixed validation pairs: benign and each kind of drift, from held-out scenes."""
    rng = np.random.default_rng(seed)
    refs, queries, labels, kinds = [], [], [], []
    for idx, scene in enumerate(scenes):
        n = per_clip if len(scene.frames) > 1 else per_still
        for k in range(n):
            if identities:
                a, p, neg, kind = identity_triplet(rng, scenes, idx)
                pairs = [(a, p, 0, "benign"), (a, neg, 1, kind)]
            else:
                kind = augment.NEGATIVE_KINDS[(idx + k) % len(augment.NEGATIVE_KINDS)]
                a, p, neg, kind = augment.triplet(rng, scenes, idx, kind=kind)
                pairs = [(a, p, 0, "benign"), (a, neg, 1, kind)]
            for r, q, lab, kd in pairs:
                refs.append(prepare(r, spec))
                queries.append(prepare(q, spec))
                labels.append(lab)
                kinds.append(kd)
    return ValSet(np.stack(refs), np.stack(queries), np.array(labels), kinds)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a drifted pair scores higher than a benign one (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([neg, pos]), kind="mergesort")
    allv = np.concatenate([neg, pos])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    rp = r[len(neg):]
    return float((rp.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def embed_np(model: torch.nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Unit embeddings of prepared views [N, C, H, W], in batches, without gradients."""
    import torch  # late: see the module docstring

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def default_threshold(benign_similarity: np.ndarray) -> float:
    """The similarity at FALSE_ALARM_TARGET false alarms on benign pairs: what a model's file carries.

    One place, so every validation and the exported file agree on it.
    """
    return float(np.quantile(benign_similarity, FALSE_ALARM_TARGET))


def evaluate(model, val: ValSet) -> dict:
    """AUC, threshold at FALSE_ALARM_TARGET on benign pairs, detection per kind at that threshold."""
    ea, eb = embed_np(model, val.images_ref), embed_np(model, val.images_query)
    sim = (ea * eb).sum(1)
    benign = sim[val.labels == 0]
    thr = default_threshold(benign) if len(benign) else 0.5
    drifted = sim < thr
    kinds = sorted(set(val.kinds))
    per_kind = {k: float(np.mean(drifted[[kk == k for kk in val.kinds]])) for k in kinds}
    return {
        "auc": auc(1 - sim, val.labels),
        "threshold": thr,
        "false_alarm_rate": float(np.mean(drifted[val.labels == 0])),
        "detection_rate": float(np.mean(drifted[val.labels == 1])),
        "alert_rate_by_kind": per_kind,
        "pairs": int(len(sim)),
        "benign_similarity_median": float(np.median(benign)) if len(benign) else float("nan"),
        "drift_similarity_median": float(np.median(sim[val.labels == 1])),
    }


# -- main ----------------------------------------------------------------------------------


def split(corpus: Corpus, val_clips: tuple[str, ...], identities: bool, seed: int) -> tuple[list, list]:
    """Hold out named clips, every VAL_STILL_EVERY-th still, or 20% of identities."""
    if identities:
        order = np.random.default_rng(seed).permutation(len(corpus.scenes))
        n_val = max(2, len(order) // 5)
        val_idx = set(order[:n_val].tolist())
        train = [s for i, s in enumerate(corpus.scenes) if i not in val_idx]
        val = [s for i, s in enumerate(corpus.scenes) if i in val_idx]
        return train, val
    train, val = [], []
    stills_seen = 0
    for s in corpus.scenes:
        if s.fixed:
            (val if s.name in val_clips else train).append(s)
        elif s.name.startswith("unsteady/"):
            train.append(s)
        else:
            (val if stills_seen % VAL_STILL_EVERY == 0 else train).append(s)
            stills_seen += 1
    return train, val


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--footage", type=Path, help="folder of fixed-camera clips / frame folders (one camera each)")
    p.add_argument("--stills", type=Path, help="folder of photos (each one more camera)")
    p.add_argument("--identities", type=Path, help="ROOT/<identity>/*.jpg labelled folders instead of footage")
    p.add_argument("--out", type=Path, required=True, help="output folder (model.onnx, card, plots)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64, help="triplets per step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--margin", type=float, default=0.3)
    p.add_argument("--arch", choices=("camwatch", "seed"), default="camwatch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--workers", type=int, default=1, help="render processes (0 = render in the training process)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--val-clips", default=",".join(DEFAULT_VAL_CLIPS))
    p.add_argument("--val-every", type=int, default=500, help="validate every N steps (0 = only at the end)")
    p.add_argument("--max-frames", type=int, default=120, help="frames kept per clip")
    p.add_argument("--stills-limit", type=int, default=None, help="use only the first N stills (smoke runs)")
    p.add_argument("--name", default="camwatch-drift")
    p.add_argument("--version", default=None, help="model version (default: date and seed)")
    p.add_argument("--init", type=Path, help="start from this model.pt (state_dict of the same --arch)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--skip-speed", action="store_true", help="do not measure ONNX Runtime speed (tests)")
    a = p.parse_args(argv)
    if a.identities is None and a.footage is None and a.stills is None:
        p.error("give --footage and/or --stills, or --identities")
    for flag in ("footage", "stills", "identities"):
        path = getattr(a, flag)
        if path is not None and not path.is_dir():
            p.error(f"--{flag} {path}: not a folder")
    return a


def load(args) -> Corpus:
    corpus = Corpus()
    if args.identities is not None:
        return load_identities(args.identities)
    if args.footage is not None:
        c = load_footage(args.footage, max_frames=args.max_frames)
        corpus.scenes += c.scenes
        corpus.sources += c.sources
    if args.stills is not None:
        c = load_stills(args.stills, limit=args.stills_limit)
        corpus.scenes += c.scenes
        corpus.sources += c.sources
    return corpus


def train_net(args, train_scenes: list[Scene], spec: InputSpec, identities: bool, val: ValSet, history: dict,
              device: torch.device) -> torch.nn.Module:
    """The network trained for ``args.steps`` steps on batches rendered ahead by worker processes.

    Channels-last tensors: the 2-core CPU runs this net's forward and backward in
    0.26 s per 192-view batch instead of 0.45 s (the same convolutions, laid out so
    oneDNN need not reorder them).
    """
    import torch  # late: see the module docstring
    from tqdm import tqdm

    from .nets import build

    torch.manual_seed(args.seed)
    model, _ = build(args.arch)
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location="cpu"))
    model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = max(1, min(200, args.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(1, args.steps)))))
    job = Job(train_scenes, scene_weights(train_scenes), spec, args.batch, args.seed, identities)
    pre = Prefetcher(job, 0, args.steps, args.workers)
    bar = tqdm(range(args.steps), disable=args.no_progress, mininterval=5, file=sys.stderr)
    running = None
    try:
        for step in bar:
            x, ids = pre.get()
            model.train()
            xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
            loss, viol = triplet_loss(model(xt), torch.from_numpy(ids).to(device), args.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            lv = float(loss.detach())
            running = lv if running is None else 0.98 * running + 0.02 * lv
            history["step"].append(step)
            history["loss"].append(lv)
            history["violating"].append(viol)
            bar.set_postfix(loss=f"{running:.4f}", viol=f"{viol:.2f}", refresh=False)
            if args.val_every and (step + 1) % args.val_every == 0 and step + 1 < args.steps:
                m = evaluate(model, val)
                history["val_step"].append(step + 1)
                history["val_auc"].append(m["auc"])
                tqdm.write(f"step {step + 1}: loss {running:.4f}, validation AUC {m['auc']:.4f}, "
                           f"detection {m['detection_rate']:.3f} at {m['false_alarm_rate']:.3f} false alarms",
                           file=sys.stderr)
    finally:
        pre.close()
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


def validation_pairs(val_scenes: list[Scene], spec_d: dict, identities: bool, per_clip: int | None = None,
                     per_still: int | None = None, seed: int = VAL_SEED) -> tuple[InputSpec, ValSet]:
    """The model's input spec and the fixed validation pairs the default threshold is set on."""
    spec = InputSpec(spec_d["width"], spec_d["height"], spec_d["channels"], spec_d["scale"],
                     tuple(spec_d["mean"]), tuple(spec_d["std"]))
    clip_n, still_n = VAL_PAIRS_IDENTITIES if identities else (VAL_PAIRS_PER_CLIP, VAL_PAIRS_PER_STILL)
    return spec, make_valset(val_scenes, spec, identities, clip_n if per_clip is None else per_clip,
                             still_n if per_still is None else per_still, seed)


def main(argv: list[str] | None = None) -> int:
    import torch  # late: see the module docstring

    from . import card, onnx_export
    from .nets import build

    args = parse_args(argv)
    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    corpus = load(args)
    identities = args.identities is not None
    train_scenes, val_scenes = split(corpus, tuple(v for v in args.val_clips.split(",") if v), identities, args.seed)
    if len(train_scenes) < 2 or not val_scenes:
        print(f"need at least 2 training scenes and 1 validation scene, got {len(train_scenes)} and "
              f"{len(val_scenes)}", file=sys.stderr)
        return 2
    spec_d = build(args.arch)[1]
    print(f"data: {len(train_scenes)} training scenes, {len(val_scenes)} validation scenes "
          f"({time.time() - t_start:.0f} s to load)", flush=True)
    spec, val = validation_pairs(val_scenes, spec_d, identities)

    history: dict = {"step": [], "loss": [], "violating": [], "val_step": [], "val_auc": []}
    t_train = time.time()
    model = train_net(args, train_scenes, spec, identities, val, history, device)
    train_s = time.time() - t_train
    metrics = evaluate(model, val)
    history["val_step"].append(args.steps)
    history["val_auc"].append(metrics["auc"])

    torch.save(model.state_dict(), args.out / "model.pt")   # for --init (git-ignored)
    version = args.version or time.strftime("%Y%m%d") + f"-s{args.seed}-{args.steps}"
    dim = int(embed_np(model, val.images_ref[:1]).shape[1])
    onnx_path = args.out / "model.onnx"
    onnx_export.export(model, spec_d, onnx_path,
                       onnx_export.metadata(spec_d, dim, metrics["threshold"], args.name, version))
    diff = onnx_export.max_abs_diff(model, onnx_path, np.concatenate([val.images_ref[:8], val.images_query[:8]]))
    speed = {} if args.skip_speed else onnx_export.measure_speed(onnx_path)
    info = {
        "command": "python -m export.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "arch": args.arch, "seed": args.seed, "steps": args.steps, "batch_triplets": args.batch,
        "margin": args.margin, "lr": args.lr,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "train_seconds": train_s, "seconds_per_step": train_s / max(1, args.steps),
        "total_seconds": time.time() - t_start, "views_rendered": 3 * args.batch * args.steps,
        "data": corpus.sources, "train_scenes": len(train_scenes), "val_scenes": [s.name for s in val_scenes
                                                                                    if s.fixed or identities][:50],
        "val_stills": sum(1 for s in val_scenes if not s.fixed), "validation": metrics,
        "onnx_max_abs_diff": diff, "speed": speed, "input": spec_d, "embedding_dim": dim,
        "model_name": args.name, "model_version": version, "threads": args.threads,
    }
    (args.out / "history.json").write_text(json.dumps(history))
    (args.out / "info.json").write_text(json.dumps(info, indent=2, default=str))
    card.loss_plot(history, args.out / "loss.png")
    card.architecture_plot(model, spec_d, args.out / "architecture.png")
    (args.out / "model-card.md").write_text(card.model_card(info))
    print(json.dumps({k: info[k] for k in ("parameters", "seconds_per_step", "train_seconds", "onnx_max_abs_diff")}
                     | {"auc": metrics["auc"], "threshold": metrics["threshold"]} | speed), flush=True)
    if diff > 1e-4:
        print(f"ONNX Runtime differs from PyTorch by {diff:.2e} (> 1e-4)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
