"""The console's in-process pieces, no daemon: the difference heat map against a real reference
store, and the 24-hour view log with its chart.

Split from test_console.py, whose tests all share one daemon process.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from daemon_helpers import write_config

from camwatch.config.load import load_config
from camwatch.service.console.data import Sources, difference_jpeg
from camwatch.service.console.snapshot import BUCKET_S, BUCKETS, LastView, ViewLog
from camwatch.service.console.views import chart_svg
from camwatch.store.references import ReferenceStore


def test_the_difference_is_bright_where_the_view_changed(tmp_path):
    """A real reference store; reference and view differ in one corner only: the heat map is bright there."""
    ref = np.full((180, 320, 3), 90, np.uint8)
    cur = ref.copy()
    cur[:60, :100] = 250
    cfg = load_config(str(write_config(tmp_path / "cameras.yaml", [{"id": "c1", "url": "demo:shop"}])))
    store = ReferenceStore(cfg.settings.state_dir)
    try:
        store.add("c1", "default", cv2.imencode(".jpg", ref)[1].tobytes(), np.ones(8, np.float32), "m")
        views = ViewLog()
        views.add(LastView.of(cur, 1.0, 0.5, 0.7, True, "covered"))
        runtime = SimpleNamespace(views=views)   # the one field the console reads of a CameraRuntime
        src = Sources(lambda: cfg, lambda: {"c1": runtime}, lambda: store, lambda: None)
        got = difference_jpeg(src, cfg.cameras[0])
        assert got is not None
        heat = cv2.cvtColor(cv2.imdecode(np.frombuffer(got[1], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        assert heat[10:50, 10:90].mean() > 3 * heat[100:, 150:].mean() + 20
        assert difference_jpeg(src, cfg.cameras[0]) == got      # kept until the view or the reference changes
    finally:
        store.close()


def test_the_view_log_keeps_24_hours_in_fixed_memory():
    """Fake clock: one check a minute for two days; only the last 24 h is kept, as 5-minute points."""
    log = ViewLog()
    image = np.zeros((36, 64, 3), np.uint8)
    day = 86400.0
    t0 = 1_000_000 * BUCKET_S
    for i in range(2 * 24 * 60):
        t = t0 + 60.0 * i
        log.add(LastView.of(image, t, similarity=0.9 - (0.5 if i % 5 == 0 else 0.0), threshold=0.7,
                            drifted=i % 5 == 0, kind="moved" if i % 5 == 0 else None))
    now = t0 + 2 * day - 60
    series = log.series(now)
    assert len(series) == BUCKETS and log._rows.shape == (BUCKETS, 4)
    assert series[0][0] >= now - day and [p[0] for p in series] == sorted(p[0] for p in series)
    assert all(p[1] == pytest.approx(0.4) and p[2] == pytest.approx(0.7) and p[3] == 5 and p[4] == 1
               for p in series)
    assert log.last is not None and log.last.checked_at == t0 + 60.0 * (2 * 24 * 60 - 1)
    # A day later with no check: nothing is shown as if it were recent.
    assert log.series(now + day + BUCKET_S) == []
    svg = chart_svg({"bucket_s": BUCKET_S, "time": now, "points": [
        {"t": t, "similarity_min": s, "threshold": th, "checks": n, "drifted": k} for t, s, th, n, k in series]})
    assert svg.count("<polyline") == 2 and svg.count('class="drift"') == BUCKETS
