"""The daemon's heap policy (``service.heap``), measured in real child processes: the policy is process-wide
and cannot be undone, so each case runs in a Python of its own and counts the page faults of the
allocations a check makes (several blocks of ~1 MB alive at once, all freed, made again)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from camwatch.service.heap import OPERATOR_SETTINGS

_CHILD = """
import json, resource, sys
import numpy as np
from camwatch.service.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):                       # warm: the first blocks are new to the process either way
    np.ones((720, 1280, 3), np.uint8).sum()
before = faults()
for _ in range(50):                      # the focus grid's temporaries: several ~1 MB images alive at once
    grey = np.ones((360, 640), np.float32)
    parts = [grey * k for k in range(6)]
    del grey, parts
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallopt") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (OSError, ValueError, AttributeError):
        return False


def _run(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in OPERATOR_SETTINGS}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc(), reason="the policy is glibc's mallopt; other C libraries are left as they are")
def test_a_check_s_blocks_are_reused_instead_of_faulted_in_again():
    plain = _run("plain")
    kept = _run("keep")
    assert kept["kept"] is True
    # 50 rounds of 7 blocks of 0.9 MB: glibc's default trims the ~6 MB freed at its heap's top (past twice
    # the largest block seen) and faults them in again the next round (~1,500 pages a round).
    assert plain["faults"] > 50 * 1000, plain
    assert kept["faults"] < plain["faults"] / 20, (kept, plain)


@pytest.mark.skipif(not _glibc(), reason="the policy is glibc's mallopt; other C libraries are left as they are")
def test_an_operator_s_own_malloc_setting_is_left_as_set():
    # A trim threshold of 0 trims every free: the operator asked for the smallest heap, and gets it.
    res = _run("keep", MALLOC_TRIM_THRESHOLD_="0")
    assert res["kept"] is False
    assert res["faults"] > 50 * 1000, res
