#!/usr/bin/env python3
"""Views per second of the drift model on ONNX Runtime (the CPU provider unless --device says).

End to end from a decoded 1080p BGR frame (what a camera source hands over):
preprocess (2x2 mean, grey, pyrDown, INTER_AREA to the model's input) +
inference, at batch 1 and 32 on 1 and 2 threads, with the cost split between
the two, and view_stats' cost per view beside it. Then the whole-machine figure:
as many parallel streams as threads, each preparing and embedding its own
batches at 1 thread. Each figure is the median of several repeats; 64 different
frames are cycled so no cache flatters the numbers.

    python benchmarks/bench_embed.py                 # the shipped model
    python benchmarks/bench_embed.py --model X.onnx --repeats 7 --seconds 1.5
    # only the whole-machine figure and the one-pass floor, interleaved repeat by repeat
    # so machine load hits both alike
    python benchmarks/bench_embed.py --streams-only --repeats 7
    # on a GPU host (onnxruntime-gpu): the same figures with inference on CUDA
    python benchmarks/bench_embed.py --device cuda --threads 1,8 --batches 1,32,64
    python benchmarks/bench_embed.py --device cuda --shapes      # what a change of batch size costs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import cv2
import harness  # noqa: F401  (puts the repository on sys.path)
import numpy as np

from camwatch.vision import prepare
from camwatch.vision.analyse import analyse_batch
from camwatch.vision.embedder import load_embedder
from camwatch.vision.stats import view_stats


def frames_1080p(n: int, seed: int = 0) -> list[np.ndarray]:
    """n different 1920x1080 textured BGR frames (a synthetic street-like texture)."""
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


def _run_streams(loop, streams: int, counts: list[int]) -> float:
    """Run ``loop(k)`` in ``streams`` threads at once; items counted per second of the whole run."""
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def streams_rate(emb, frames: list[np.ndarray], batch: int, streams: int, seconds: float,
                 analyse: bool = False) -> float:
    """Views/s of ``streams`` threads that each prepare + embed their own batches at 1 thread.

    The whole-machine figure: with 1-thread ONNX Runtime and 1-worker preprocessing
    per stream, each core runs its own preprocess + inference loop (cv2 and ORT
    release the GIL). ``analyse``: the daemon's route (model input and view
    statistics from one reduction of each frame) instead of ``prepare`` alone.
    """
    spec = emb.spec.input
    stop = time.perf_counter() + seconds
    counts = [0] * streams

    def loop(k: int) -> None:
        n = len(frames)
        turn = 0
        while time.perf_counter() < stop:
            chunk = [frames[(k * 7919 + turn * batch + i) % n] for i in range(batch)]   # a new frame each time
            turn += 1
            x = analyse_batch(chunk, spec)[0] if analyse else prepare.prepare_batch(chunk, spec)
            emb.run_prepared(x)
            counts[k] += batch

    return _run_streams(loop, streams, counts)


def passes_rate(frames: list[np.ndarray], streams: int, seconds: float) -> float:
    """Frames/s of ``streams`` threads doing one colour-to-grey pass per frame and nothing else.

    The ceiling for any preprocessing that reads each decoded frame once: a 1080p
    BGR frame is 6.2 MB, so this is mostly the machine's memory bandwidth.
    """
    stop = time.perf_counter() + seconds
    counts = [0] * streams

    def loop(k: int) -> None:
        i = k * 31
        while time.perf_counter() < stop:
            cv2.cvtColor(frames[i % len(frames)], cv2.COLOR_BGR2GRAY)
            i += 1
            counts[k] += 1

    return _run_streams(loop, streams, counts)


def streams_only(a: argparse.Namespace) -> int:
    """The whole-machine figure and the floor, taken in turn within each repeat."""
    frames = frames_1080p(64)
    prepare.PREPARE_WORKERS = 1
    emb1 = load_embedder(a.model, device=a.device, threads=1)              # OpenCV one thread, as in camwatch
    streams = max(int(t) for t in a.threads.split(","))
    batches = [int(b) for b in a.batches.split(",")] if a.batches != "1,32" else [32]
    names = [("prepare", b) for b in batches] + [("floor", 0)]
    rates: dict = {n: [] for n in names}
    for _ in range(a.repeats):
        for r, b in names:
            rates[(r, b)].append(passes_rate(frames, streams, a.seconds) if r == "floor"
                                 else streams_rate(emb1, frames, b, streams, a.seconds))
    print(f"frames: 1920x1080 BGR, {len(frames)} different ones cycled; {streams} parallel streams, each OpenCV 1 "
          f"thread, prepare + ONNX Runtime 1 thread; {a.repeats} repeats x {a.seconds:.1f} s, "
          f"taken in turn within each repeat; medians")
    for (r, b), v in rates.items():
        what = ("floor: one cvtColor pass per frame, nothing else, frames/s" if r == "floor"
                else f"batch {b:>2}, end to end views/s")
        print(f"  {what:<58} {statistics.median(v):6.0f}  (runs: {', '.join(f'{x:.0f}' for x in v)})")
    spec = emb1.spec.input
    print(f"model: {emb1.spec.name} {emb1.spec.version} ({emb1.spec.short_id}), input "
          f"{spec.width}x{spec.height} {spec.channels}, provider {emb1.provider}")
    return 0


def shapes(a: argparse.Namespace) -> int:
    """Batch sizes 1 to 19 in turn, as the daemon's batches come: what a change of shape costs.

    Twice each, without and with the embedder's padding to one shape (on by default
    on a GPU), after warmup, on 640x360 frames of noise.
    """
    frames = [np.random.default_rng(i).integers(0, 255, (360, 640, 3), dtype=np.uint8) for i in range(20)]
    for pad in (False, True):
        emb = load_embedder(a.model, device=a.device)
        emb.pad_batches = pad
        emb.warmup()
        for rnd in range(2):
            start = time.perf_counter()
            for n in range(1, 20):
                emb.embed(frames[:n])
            print(f"pad_batches={pad!s:<5} pass {rnd}: {(time.perf_counter() - start) * 1e3:7.0f} ms "
                  f"for batch sizes 1..19 in turn (provider {emb.provider})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX model (default: the shipped one)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "tensorrt"),
                    help="where ONNX Runtime runs the model (preprocessing stays on the CPU)")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one repeat")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--streams-only", action="store_true",
                    help="only the parallel-streams figure (batch 32 unless --batches) and the floor")
    ap.add_argument("--shapes", action="store_true",
                    help="only the cost of changing batch size run to run, padded and not")
    a = ap.parse_args()
    if a.shapes:
        return shapes(a)
    if a.streams_only:
        return streams_only(a)

    frames = frames_1080p(64)
    print(f"frames: 1920x1080 BGR, {len(frames)} different ones cycled (no cache flatters the numbers); "
          f"repeats: {a.repeats} x {a.seconds:.1f} s; medians")
    print("threads T: prepare_batch split over T workers (OpenCV one thread each, as camwatch runs it),"
          " ONNX Runtime T intra-op threads, one batch after the other (how the daemon embeds a round of checks)")
    print("exact route: the pyrDown chain as before the fast route, one frame after the other, timed in the same"
          " repeats (interleaved, so a busy machine slows both alike)")
    print(f"{'threads':>7} {'batch':>5} {'preprocess ms/view':>19} {'inference ms/view':>18} "
          f"{'total ms/view':>14} {'views/s':>9} {'inference-only views/s':>23} {'view_stats ms/view':>19} "
          f"{'exact route ms/view':>20} {'views/s exact':>13}")
    emb = None
    for threads in (int(t) for t in a.threads.split(",")):
        prepare.PREPARE_WORKERS = threads
        emb = load_embedder(a.model, device=a.device, threads=threads)   # sets OpenCV to one thread
        spec = emb.spec.input
        for batch in (int(b) for b in a.batches.split(",")):
            chunks = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]
            turn = iter(range(10 ** 9))
            prepared = prepare.prepare_batch(chunks[0], spec)
            pre, inf, stats, exact = [], [], [], []
            for _ in range(a.repeats):
                pre.append(timed(lambda: prepare.prepare_batch(chunks[next(turn) % len(chunks)], spec),
                                 a.seconds) / batch)
                exact.append(timed(lambda: [prepare.prepare_exact(f, spec)
                                            for f in chunks[next(turn) % len(chunks)]], a.seconds) / batch)
                inf.append(timed(lambda: emb.run_prepared(prepared), a.seconds) / batch)
                stats.append(timed(lambda: [view_stats(f) for f in chunks[next(turn) % len(chunks)]],
                                   a.seconds / 2) / batch)
            p, i, st = statistics.median(pre), statistics.median(inf), statistics.median(stats)
            ex = statistics.median(exact)
            print(f"{threads:>7} {batch:>5} {p * 1e3:>19.3f} {i * 1e3:>18.3f} {(p + i) * 1e3:>14.3f} "
                  f"{1 / (p + i):>9.0f} {1 / i:>23.0f} {st * 1e3:>19.3f} {ex * 1e3:>20.3f} {1 / (ex + i):>13.0f}")
    prepare.PREPARE_WORKERS = 1
    emb1 = load_embedder(a.model, device=a.device, threads=1)              # OpenCV one thread, as in camwatch
    max_streams = max(int(t) for t in a.threads.split(","))
    print("\nparallel streams (each: OpenCV 1 thread, prepare + ONNX Runtime 1 thread), end to end views/s:")
    for batch in (int(b) for b in a.batches.split(",")):
        rates = [streams_rate(emb1, frames, batch, max_streams, a.seconds) for _ in range(a.repeats)]
        print(f"  {max_streams} streams, batch {batch:>2}: {statistics.median(rates):8.0f} views/s "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")
    print("\nthe daemon's route, model input + view statistics from one reduction (analyse.analyse_batch), "
          "+ inference:")
    for batch in (int(b) for b in a.batches.split(",")):
        rates = [streams_rate(emb1, frames, batch, max_streams, a.seconds, analyse=True) for _ in range(a.repeats)]
        print(f"  {max_streams} streams, batch {batch:>2}: {statistics.median(rates):8.0f} views/s "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")
    floor = [passes_rate(frames, max_streams, a.seconds) for _ in range(a.repeats)]
    print(f"\nfloor: {max_streams} streams doing nothing but one pass over each frame (cv2.cvtColor to grey): "
          f"{statistics.median(floor):.0f} frames/s (runs: {', '.join(f'{r:.0f}' for r in floor)})")
    spec = emb1.spec.input
    print(f"model: {emb1.spec.name} {emb1.spec.version} ({emb1.spec.short_id}), input "
          f"{spec.width}x{spec.height} {spec.channels}, provider {emb1.provider}")
    print("view_stats (daemon: once per check, after the batch, in the checking thread) is not in views/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
