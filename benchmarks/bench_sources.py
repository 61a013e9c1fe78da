"""What a frame costs from each kind of source, on loopback servers made here.

Prints medians (and 90th percentiles) over several runs of:
  - images: reading a JPEG's declared size from its header (done before every decode),
    decode_image against a bare cv2.imdecode, and refusing a 30000x30000 PNG bomb
  - demo: rendering one 640x360 frame of each scene (the demo's CPU cost per check)
  - HTTP snapshot: one fetch + decode over keep-alive, 640x360 and 1280x720 JPEGs
  - RTSP snapshot: open + first frame + release (the per-check cost of snapshot mode)
  - RTSP stream: read() of the newest frame from a held connection (stream mode),
    and the CPU the reader thread burns decoding 15 fps in the background
The RTSP parts need gst-rtsp-server for /usr/bin/python3 and ffmpeg (scripts/test.sh).

    nice -n 10 python3 benchmarks/bench_sources.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import harness  # noqa: E402,F401  (puts the repository and tests/ on sys.path)
import numpy as np
from hostile import png_bomb  # noqa: E402
from media import Media, scene_image  # noqa: E402
from servers import RtspServer, SnapshotServer, camera_config, gst_rtsp_available  # noqa: E402

from camwatch.sources import open_source  # noqa: E402
from camwatch.sources.demo import SCENES, DemoScene, parse_demo_url  # noqa: E402
from camwatch.vision.images import ImageFileError, decode_image, image_size  # noqa: E402


def report(name: str, seconds: list[float], unit: str = "ms") -> None:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    print(f"{name:<44} median {statistics.median(ms):8.2f} {unit}   p90 {p90:8.2f} {unit}   (n={len(ms)})")


def timed(fn, n: int, warm: int = 2) -> list[float]:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_images(n: int) -> None:
    jpeg = cv2.imencode(".jpg", scene_image(1920, 1080))[1].tobytes()
    report("header size of a 1920x1080 JPEG", [t * 1000 for t in timed(lambda: image_size(jpeg), n * 50)],
           unit="us")
    report("cv2.imdecode 1920x1080 JPEG", timed(lambda: cv2.imdecode(np.frombuffer(jpeg, np.uint8),
                                                                      cv2.IMREAD_COLOR), n))
    report("decode_image 1920x1080 JPEG (header checked)", timed(lambda: decode_image(jpeg), n))
    bomb = png_bomb(30000)

    def refuse() -> None:
        try:
            decode_image(bomb)
        except ImageFileError:
            return
        raise AssertionError("the bomb was decoded")

    report(f"refuse a 30000x30000 PNG ({len(bomb) // 1024} KB)", [t * 1000 for t in timed(refuse, n)], unit="us")


def bench_demo(n: int) -> None:
    for scene in SCENES:
        world = DemoScene(parse_demo_url(f"demo:{scene}?seed=1"))
        clock = iter(range(10**9))
        report(f"demo {scene} frame 640x360", timed(lambda: world.frame(next(clock) * 0.1), n * 5))


def bench_http(n: int) -> None:
    ctl = SnapshotServer().start()
    try:
        for w, h in ((640, 360), (1280, 720)):
            ctl.image(f"/{w}.jpg", scene_image(w, h))
            src = open_source(camera_config(id="b", url=ctl.url(f"/{w}.jpg"), timeout=5))
            report(f"http snapshot {w}x{h} (keep-alive)", timed(src.read, n))
            ctl.digest(f"/d{w}.jpg", "u", "pw-bench", scene_image(w, h))
            src = open_source(camera_config(id="b", url=ctl.url(f"/d{w}.jpg"), timeout=5,
                                         username="u", password="pw-bench", auth="digest"))
            report(f"http snapshot {w}x{h} (digest auth)", timed(src.read, n))
    finally:
        ctl.stop()


def bench_rtsp(n: int) -> None:
    why = gst_rtsp_available()
    if why:
        print(f"rtsp: skipped ({why})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        media = Media(Path(tmp))
        server = RtspServer({"small": [media.clip("scene", 640, 360)],
                             "hd": [media.clip("scene", 1280, 720)]})
        server.start()
        try:
            for mount, label in (("small", "640x360"), ("hd", "1280x720")):
                for transport in ("tcp", "udp"):
                    src = open_source(camera_config(id="r", url=server.url(mount, transport), timeout=5))
                    report(f"rtsp snapshot {label} {transport} (open+frame)", timed(src.read, n, warm=1))
            stream = open_source(camera_config(id="s", url=server.url("small"), timeout=5, mode="stream"))
            try:
                stream.read()

                def newest() -> None:
                    time.sleep(0.1)  # as a check would: some frames arrive in between
                    stream.read()

                report("rtsp stream read 640x360 (after 100 ms)", [t - 0.1 for t in timed(newest, n)])
                cpu0, wall0 = time.process_time(), time.perf_counter()
                time.sleep(3)
                cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
                print(f"{'rtsp stream 640x360 15 fps background CPU':<44} {100 * cpu:8.1f} % of a core")
            finally:
                stream.close()
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    bench_images(args.repeat)
    bench_demo(args.repeat)
    bench_http(args.repeat)
    bench_rtsp(args.repeat)


if __name__ == "__main__":
    main()
