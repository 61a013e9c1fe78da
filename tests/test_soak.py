"""The soak (benchmarks/soak.py) for 2 minutes, as CI runs it.

A real camwatch process on 20 cameras (10 RTSP from the real GStreamer server,
snapshot and stream modes; 10 HTTP snapshots from a real HTTP server) while
the RTSP server is stopped and started, frozen with SIGSTOP and thawed, and
the HTTP cameras answer 500 for a while. soak.py samples RSS, open files and
threads from /proc and exits non-zero if RSS or open files grow more than 15%
after the warm-up, if camwatch dies, logs a traceback or stops checking. The
10-minute run is ``python3 benchmarks/soak.py --minutes 10 --cameras 20`` (bound 10%).

Why 15% here: RSS wanders in a 216-244 MB band with the faults and comes back
(10-minute run, docs/performance.md: no trend), and two minutes compare one
short window of that band with another. Measured on session 4's machine, two
minutes each: +8.4% and +5.6% for the code before the structure cue, +10.1%,
-0.9%, +4.7% and +8.4% after it, so 10% failed one healthy run in six. 15% over the ~80 s
judged still fails any leak of ~0.4 MB/s or more (keeping one 640x360 frame
per check would be ~7 MB/s); the 10-minute run is the one that bounds slow leaks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from media import have_ffmpeg
from servers import gst_rtsp_available

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_two_minutes_with_faults():
    if not have_ffmpeg():
        pytest.skip("ffmpeg is not installed (scripts/test.sh installs it)")
    why = gst_rtsp_available()
    if why:
        pytest.skip(why)
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "2",
                          "--cameras", "20", "--sample", "4", "--fault-every", "24", "--fault-for", "8",
                          "--max-growth", "15"],
                         capture_output=True, text=True, timeout=230, cwd=REPO)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    # the run really injected each kind of fault and judged growth on real samples
    assert "faults injected:" in out.stdout
    for kind in ("rtsp-down", "rtsp-freeze", "http-500"):
        assert kind in out.stdout, report
    assert "RSS" in out.stdout and "open files" in out.stdout and "soak: PASS" in out.stdout, report
