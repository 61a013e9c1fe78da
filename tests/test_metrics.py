"""Metrics served on loopback and scraped over real HTTP, checked by exact name and labels."""

from __future__ import annotations

import math
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from camwatch.errors import ConfigError
from camwatch.metrics import ALERT_KINDS, FRAME_ERROR_REASONS, RESULTS, STATES, Metrics


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def served():
    m = Metrics()
    server = m.serve("127.0.0.1", 0)
    yield m, server.port
    server.close()


def test_every_camera_series_exists_from_the_first_scrape(served):
    m, port = served
    m.camera_added("front-door")
    m.camera_added("yard", state="no_reference")
    s = scrape(port)
    for cam in ("front-door", "yard"):
        assert math.isnan(value(s, "camwatch_camera_similarity", camera=cam))
        assert math.isnan(value(s, "camwatch_camera_threshold", camera=cam))
        assert value(s, "camwatch_camera_drifted", camera=cam) == 0
        assert value(s, "camwatch_camera_up", camera=cam) == 0
        assert value(s, "camwatch_camera_last_check_timestamp_seconds", camera=cam) == 0
        assert value(s, "camwatch_camera_references", camera=cam) == 0
        assert value(s, "camwatch_camera_reference_timestamp_seconds", camera=cam) == 0
        assert value(s, "camwatch_reconnects_total", camera=cam) == 0
        for r in RESULTS:
            assert value(s, "camwatch_checks_total", camera=cam, result=r) == 0
        for r in FRAME_ERROR_REASONS:
            assert value(s, "camwatch_frame_errors_total", camera=cam, reason=r) == 0
        for k in ALERT_KINDS:
            assert value(s, "camwatch_alerts_total", camera=cam, kind=k) == 0
    assert sum(value(s, "camwatch_camera_state", camera="yard", state=st) for st in STATES) == 1
    assert value(s, "camwatch_camera_state", camera="yard", state="no_reference") == 1
    assert value(s, "camwatch_camera_state", camera="front-door", state="unavailable") == 1
    assert value(s, "camwatch_cameras") == 2
    assert value(s, "camwatch_start_timestamp_seconds") > 1.6e9
    assert ("process_start_time_seconds", ()) in s


def test_a_check_cycle_shows_up(served):
    m, port = served
    m.camera_added("cam1")
    m.set_references("cam1", 2, 1_700_000_000.0)
    m.check_done("cam1", "ok", similarity=0.93, threshold=0.81, at=1_800_000_000.0)
    m.set_state("cam1", "ok")
    m.check_done("cam1", "drifted", similarity=0.42, threshold=0.81)
    m.set_state("cam1", "drifted")
    m.alert("cam1", "moved")
    m.frame_error("cam1", "timeout")
    m.frame_error("cam1", "something-new")  # unknown reasons stay bounded
    m.reconnected("cam1")
    m.observe_fetch(0.12)
    m.observe_inference(0.004, 3)
    m.observe_lag(0.3)
    m.observe_lag(-0.01)
    m.set_provider("CPUExecutionProvider", gpu_required=True)
    m.set_build_info("0.1.0", "camwatch-drift", "3")
    m.set_events_pending(4)
    m.sinks_added(["log", "webhook-0123abcd"])
    m.delivery("log", True)
    s = scrape(port)
    assert value(s, "camwatch_camera_similarity", camera="cam1") == pytest.approx(0.42)
    assert value(s, "camwatch_camera_threshold", camera="cam1") == pytest.approx(0.81)
    assert value(s, "camwatch_camera_drifted", camera="cam1") == 1
    assert value(s, "camwatch_camera_state", camera="cam1", state="drifted") == 1
    assert value(s, "camwatch_camera_state", camera="cam1", state="ok") == 0
    assert value(s, "camwatch_checks_total", camera="cam1", result="ok") == 1
    assert value(s, "camwatch_checks_total", camera="cam1", result="drifted") == 1
    assert value(s, "camwatch_alerts_total", camera="cam1", kind="moved") == 1
    assert value(s, "camwatch_frame_errors_total", camera="cam1", reason="timeout") == 1
    assert value(s, "camwatch_frame_errors_total", camera="cam1", reason="other") == 1
    assert value(s, "camwatch_camera_up", camera="cam1") == 0  # the latest fetch failed
    assert value(s, "camwatch_reconnects_total", camera="cam1") == 1
    assert value(s, "camwatch_camera_references", camera="cam1") == 2
    assert value(s, "camwatch_camera_reference_timestamp_seconds", camera="cam1") == 1_700_000_000.0
    assert value(s, "camwatch_frame_fetch_duration_seconds_count") == 1
    assert value(s, "camwatch_frame_fetch_duration_seconds_bucket", le="0.25") == 1
    assert value(s, "camwatch_frame_fetch_duration_seconds_bucket", le="0.1") == 0
    assert value(s, "camwatch_inference_duration_seconds_count") == 1
    assert value(s, "camwatch_inference_batch_size_sum") == 3
    assert value(s, "camwatch_scheduler_lag_seconds_count") == 2
    assert value(s, "camwatch_scheduler_lag_seconds_sum") == pytest.approx(0.3)
    assert value(s, "camwatch_inference_provider_info", provider="CPUExecutionProvider") == 1
    assert value(s, "camwatch_gpu_required") == 1
    assert value(s, "camwatch_build_info", version="0.1.0", model="camwatch-drift", model_version="3") == 1
    assert value(s, "camwatch_events_pending") == 4
    assert value(s, "camwatch_event_deliveries_total", sink="log", result="ok") == 1
    assert value(s, "camwatch_event_deliveries_total", sink="webhook-0123abcd", result="error") == 0

    m.set_provider("CUDAExecutionProvider")  # info gauges keep exactly one series
    s = scrape(port)
    assert [k for k in s if k[0] == "camwatch_inference_provider_info"] == [
        ("camwatch_inference_provider_info", (("provider", "CUDAExecutionProvider"),))]


def test_removed_camera_leaves_no_series(served):
    m, port = served
    m.camera_added("gone")
    m.camera_added("stays")
    m.check_done("gone", "ok", 0.9, 0.8)
    m.camera_removed("gone")
    s = scrape(port)
    assert not [k for k in s if ("camera", "gone") in k[1]]
    assert value(s, "camwatch_camera_up", camera="stays") == 0
    assert value(s, "camwatch_cameras") == 1


def test_labels_are_bounded_and_names_follow_conventions(served):
    m, port = served
    m.camera_added("c")
    s = scrape(port)
    allowed = {"camera", "state", "result", "reason", "kind", "provider", "sink", "version", "model",
               "model_version", "le",
               # python_info from prometheus_client's platform collector
               "implementation", "major", "minor", "patchlevel"}
    for name, labels in s:
        for key, val in labels:
            assert key in allowed, (name, key)
            assert "://" not in val
        if name.startswith("camwatch_") and name.endswith("_total"):
            continue
        assert not name.endswith("_count_total")


def test_invalid_state_or_result_is_a_bug_caught_early():
    m = Metrics(process=False)
    m.camera_added("c")
    with pytest.raises(ValueError):
        m.set_state("c", "weird")
    with pytest.raises(ValueError):
        m.check_done("c", "maybe")


def test_busy_port_is_one_clear_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ConfigError) as err:
            Metrics(process=False).serve("127.0.0.1", port)
        msg = str(err.value)
        assert f"127.0.0.1:{port}" in msg and "settings.metrics" in msg and "\n" not in msg
    finally:
        holder.close()


def test_two_instances_do_not_collide():
    a, b = Metrics(), Metrics()
    a.camera_added("x")
    b.camera_added("x")
    assert b"camwatch_camera_up" in a.render() and b"camwatch_camera_up" in b.render()
