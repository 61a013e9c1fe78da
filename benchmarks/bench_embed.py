#!/usr/bin/env python3
"""Views per second of the drift model on ONNX Runtime's CPU provider.

End to end from a decoded 1080p BGR frame (what a camera source hands over):
preprocess (grey, pyrDown, INTER_AREA to the model's input) + inference, at
batch 1 and 32 on 1 and 2 intra-op threads, with the cost split between the
two. Each figure is the median of several repeats; frames differ within a
batch so no cache flatters the numbers.

    python benchmarks/bench_embed.py                 # the shipped model
    python benchmarks/bench_embed.py --model X.onnx --repeats 7 --seconds 1.5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camwatch.embedder import load_embedder  # noqa: E402
from camwatch.preprocess import prepare_batch  # noqa: E402


def frames_1080p(n: int, seed: int = 0) -> list[np.ndarray]:
    """n different 1920x1080 textured BGR frames (a synthetic street-like texture)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (68, 120)).astype(np.float32)
    base = cv2.resize(base, (1920 + 64, 1080 + 64), interpolation=cv2.INTER_CUBIC) * 40 + 128
    base += rng.normal(0, 12, base.shape).astype(np.float32)
    grey = np.clip(base, 0, 255).astype(np.uint8)
    out = []
    for i in range(n):
        dx, dy = (7 * i) % 64, (5 * i) % 64
        g = grey[dy:dy + 1080, dx:dx + 1920]
        out.append(np.ascontiguousarray(np.stack([g, np.roll(g, 3, 1), np.roll(g, 5, 0)], axis=2)))
    return out


def timed(fn, seconds: float) -> float:
    """Seconds per call of fn, run repeatedly for about ``seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX model (default: the shipped one)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one repeat")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()

    frames = frames_1080p(32)
    print(f"frames: 1920x1080 BGR; repeats: {a.repeats} x {a.seconds:.1f} s; medians")
    print(f"{'threads':>7} {'batch':>5} {'preprocess ms/view':>19} {'inference ms/view':>18} "
          f"{'total ms/view':>14} {'views/s':>9} {'inference-only views/s':>23}")
    for threads in (int(t) for t in a.threads.split(",")):
        emb = load_embedder(a.model, device="cpu", threads=threads)
        spec = emb.spec.input
        for batch in (int(b) for b in a.batches.split(",")):
            chunk = frames[:batch]
            prepared = prepare_batch(chunk, spec)
            pre, inf = [], []
            for _ in range(a.repeats):
                pre.append(timed(lambda: prepare_batch(chunk, spec), a.seconds) / batch)
                inf.append(timed(lambda: emb.run_prepared(prepared), a.seconds) / batch)
            p, i = statistics.median(pre), statistics.median(inf)
            print(f"{threads:>7} {batch:>5} {p * 1e3:>19.3f} {i * 1e3:>18.3f} {(p + i) * 1e3:>14.3f} "
                  f"{1 / (p + i):>9.0f} {1 / i:>23.0f}")
    print(f"model: {emb.spec.name} {emb.spec.version} ({emb.spec.short_id}), input "
          f"{spec.width}x{spec.height} {spec.channels}, provider {emb.provider}")
    print("preprocessing runs in the calling thread; with 2 cores, 2 checking threads each "
          "preprocess + infer at 1 thread: about 2x the 1-thread views/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
