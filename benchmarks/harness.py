"""What the benchmark scripts share: a camwatch process, its /proc and /metrics, servers, media, figures.

Import it before anything from camwatch or tests/: it is the one place that puts the
repository and tests/ on ``sys.path``, so a script run as ``python benchmarks/NAME.py``
starts the same servers (tests/servers.py) and makes the same media (tests/media.py)
as the tests, without pytest.

- ``CamwatchProcess``: the tests' ``camwatch --config F`` process (tests/daemon_helpers.py)
  that waits for its /metrics; ``write_config`` writes the cameras file it reads.
- ``proc_stats``: RSS, open files, threads and CPU seconds of a live process.
- ``scrape``, ``metric_sum``, ``histogram``, ``quantile``: /metrics read as plain text.
- ``need_tools``, ``rtsp_server``, ``SnapshotServer``, ``Media``, ``workdir``: what a
  script needs to serve cameras from a temporary folder.
- ``timed``, ``print_settings``: medians over repeats, and the settings a figure came from.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import daemon_helpers  # noqa: E402
from media import Media, have_ffmpeg, scene_image, write_image  # noqa: E402
from servers import RtspServer, SnapshotServer, gst_rtsp_available  # noqa: E402

__all__ = ["REPO", "CamwatchProcess", "Media", "RtspServer", "SnapshotServer", "histogram",
           "metric_sum", "need_tools", "print_settings", "proc_stats", "quantile", "rtsp_server", "scene_image",
           "scrape", "timed", "workdir", "write_config", "write_image"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- figures -------------------------------------------------------------------------


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median CPU seconds (this process) and wall seconds of ``fn`` over ``runs`` calls."""
    cpu, wall = [], []
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def print_settings(script: str, args: argparse.Namespace) -> None:
    """One line naming every setting a run used, so a printed figure can be rerun as it was."""
    def text(v: object) -> str:
        if isinstance(v, list):
            return " ".join(text(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)

    flags = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {text(v)}")
                     for k, v in vars(args).items() if v is not None and v is not False)
    print(f"{script}: {flags}", flush=True)


#: Set (to anything) to keep each run's folder for inspection; otherwise it is removed when the script exits.
KEEP_ENV = "CAMWATCH_BENCH_KEEP"


def workdir(prefix: str) -> Path:
    """A fresh temporary folder for a run's media, configs and state.

    Removed when the script exits (a benchmark run every day would otherwise fill
    /tmp with media and databases); with ``CAMWATCH_BENCH_KEEP`` set it is kept and
    its path printed, for inspecting a run's logs and state."""
    path = Path(tempfile.mkdtemp(prefix=f"camwatch-{prefix}-"))
    if os.environ.get(KEEP_ENV):
        atexit.register(print, f"kept: {path} ({KEEP_ENV} is set)", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# -- /proc and /metrics ----------------------------------------------------------------


def proc_stats(pid: int) -> tuple[float, int, int, float]:
    """(RSS MB, open fds, threads, CPU seconds) of a live process, from /proc."""
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE / 1e6
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime
    threads = int(fields[17])
    return rss, fds, threads, cpu


def scrape(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (plain text parsing: fast
    enough for 1,000 cameras, where prometheus_client's parser is not)."""
    total = 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and all(w in line for w in want):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative buckets le -> count of an unlabelled histogram."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bucket bound holding the q-quantile of the observations between two scrapes."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    if total <= 0:
        return float("nan")
    for b in bounds:
        if after[b] - before.get(b, 0.0) >= q * total:
            return b
    return float("inf")


# -- servers, config, daemon -----------------------------------------------------------


def need_tools() -> str | None:
    """None if ffmpeg and the RTSP server can run here, else why not (scripts exit 3 with it)."""
    if not have_ffmpeg():
        return "ffmpeg is not installed"
    return gst_rtsp_available()


def rtsp_server(folder: Path, mounts: int = 2, width: int = 640, height: int = 360) -> RtspServer:
    """A started RTSP server with mounts m0, m1, ... looping the demo world (alt clip: moved)."""
    media = Media(folder / "media")
    clips = {f"m{i}": [media.clip("scene", width, height, seed=1 + i), media.clip("moved", width, height, seed=1 + i)]
             for i in range(mounts)}
    server = RtspServer(clips)
    server.start()
    return server


def write_config(path: Path, cameras: list[dict], **settings: Any) -> Path:
    """The tests' cameras file (a free metrics port, calibration off) with benchmark defaults:
    2 s interval, 8 workers; readable by its owner only, as for a file that may hold passwords."""
    daemon_helpers.write_config(path, cameras, **{"interval": 2, "workers": 8, **settings})
    os.chmod(path, 0o600)
    return path


class CamwatchProcess(daemon_helpers.Daemon):
    """``python -m camwatch --config F`` as the tests run it, with its log in a file next to the config."""

    def __init__(self, config: Path, log_level: str = "INFO"):
        super().__init__(config, log_level=log_level)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /metrics answers; a daemon that exits first is an error with its log's tail."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"camwatch exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                scrape(self.port, 1)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"camwatch /metrics not up in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log()[-n:]
