"""Metrics served on loopback and scraped over real HTTP, checked by exact name and labels;
camwatch's renderer checked against prometheus_client's generate_latest."""

from __future__ import annotations

import gzip
import math
import random
import socket
import threading
import time
import urllib.request

import pytest
from daemon_helpers import Daemon, write_config
from media import scene_image, write_image
from modelkit import grid_model
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from camwatch.core.errors import ConfigError
from camwatch.core.types import ALERT_KINDS, RESULTS, STATES
from camwatch.service import listener
from camwatch.service.metrics import FRAME_ERROR_REASONS, Metrics


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
    allowed = {"camera", "state", "result", "reason", "kind", "provider", "sink", "store", "version", "model",
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


# ---- the renderer: /metrics at 1,000 cameras is joined from kept lines, not generate_latest -------
def parsed(text: bytes) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
    """Every sample as (name, sorted labels, repr of value): NaN compares equal to NaN."""
    return sorted((s.name, tuple(sorted(s.labels.items())), repr(s.value))
                  for fam in text_string_to_metric_families(text.decode()) for s in fam.samples)


def busy_metrics(process: bool = False) -> Metrics:
    m = Metrics(process=process)
    m.set_build_info("0.1.0", "camwatch-drift", "1.2.0")
    m.set_provider("CPUExecutionProvider")
    m.sinks_added(["log"])
    for cam in ("gate", "yard", "never-checked", "odd_id-9"):
        m.camera_added(cam)
    m.camera_added('quote"back\\slash\nnewline')  # not a valid config id, escaped all the same
    m.check_done("gate", "ok", 0.9312345678901234, 0.8, at=1_795_449_820.141)
    m.check_done("yard", "drifted", 0.41, 0.81)
    m.set_state("yard", "drifted")
    m.alert("yard", "moved")
    m.frame_error("odd_id-9", "timeout")
    m.reconnected("odd_id-9")
    m.set_references("gate", 3, 1_700_000_000.5)
    m.set_state("never-checked", "disabled")
    m.observe_fetch(0.1)
    m.observe_lag(0.2)
    m.delivery("log", False)
    return m


def test_render_is_what_generate_latest_gives():
    m = busy_metrics()
    ours, theirs = m.render(), generate_latest(m.registry)
    assert ours == theirs  # byte for byte, same order
    samples = parsed(ours)
    assert samples == parsed(theirs)
    names = {name for name, _, _ in samples}
    # counters as prometheus_client exposes them: _total, and _created as a gauge of its own
    assert {"camwatch_checks_total", "camwatch_checks_created", "camwatch_reconnects_created"} <= names
    created = [float(v) for name, _, v in samples if name == "camwatch_checks_created"]
    assert len(created) == 5 * len(RESULTS) and all(1.6e9 < t < 4e9 for t in created)
    assert (("camwatch_camera_similarity", (("camera", "never-checked"),), "nan") in samples)
    assert ("camwatch_camera_up", (("camera", 'quote"back\\slash\nnewline'),), "0.0") in samples
    assert b"# TYPE camwatch_checks_total counter\n" in ours
    assert b"# TYPE camwatch_checks_created gauge\n" in ours


def test_render_with_the_process_collector_gives_the_same_samples():
    m = busy_metrics(process=True)
    live = ("process_", "camwatch_start_")  # read afresh at every collect

    def stable(text: bytes):
        return [s for s in parsed(text) if not s[0].startswith(live)]

    ours, theirs = m.render(), generate_latest(m.registry)
    assert stable(ours) == stable(theirs)
    assert {s[0] for s in parsed(ours)} == {s[0] for s in parsed(theirs)}


def test_render_follows_disabled_created_series():
    import prometheus_client

    m = busy_metrics()
    prometheus_client.disable_created_metrics()
    try:
        ours, theirs = m.render(), generate_latest(m.registry)
    finally:
        prometheus_client.enable_created_metrics()
    assert ours == theirs and b"camwatch_checks_created" not in ours


def test_render_of_no_camera_and_of_a_removed_one():
    m = Metrics(process=False)
    assert m.render() == generate_latest(m.registry)
    m.camera_added("gone")
    m.camera_removed("gone")
    m.check_done("gone", "ok", 0.9, 0.8)  # a check finishing after its camera was removed
    m.alert("gone", "moved")
    assert m.render() == generate_latest(m.registry)
    assert b'"gone"' not in m.render() and m.cameras() == frozenset()


def test_render_stays_whole_under_concurrent_updates():
    """Writers on other threads while scraping: every render parses, every camera has all its
    series or none (added and removed meanwhile), and exactly one state at 1."""
    m = Metrics(process=False)
    cams = [f"c{i}" for i in range(40)]
    for c in cams:
        m.camera_added(c)
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            c = rng.choice(cams)
            m.check_done(c, rng.choice(RESULTS), rng.random(), 0.8)
            m.set_state(c, rng.choice(STATES))
            m.frame_error(c, rng.choice(FRAME_ERROR_REASONS))
            if rng.random() < 0.05:
                m.camera_removed(c)
                m.camera_added(c, rng.choice(STATES))

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):
            per_camera: dict[str, list[tuple[str, dict[str, str], float]]] = {}
            for fam in text_string_to_metric_families(m.render().decode()):
                for s in fam.samples:
                    if "camera" in s.labels:
                        per_camera.setdefault(s.labels["camera"], []).append((s.name, s.labels, s.value))
            for cam, samples in per_camera.items():
                assert len(samples) == 59, (cam, len(samples))
                assert sum(v for name, _, v in samples if name == "camwatch_camera_state") == 1, cam
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert m.render() == generate_latest(m.registry)  # and equal once quiet


def test_served_as_prometheus_asks_text_format_gzipped(served):
    m, port = served
    m.camera_added("cam1")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert resp.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(resp.read())
    def stable(text: bytes):
        return [s for s in parsed(text) if not s[0].startswith("process_")]  # read afresh each time

    assert stable(body) == stable(m.render())
    # a name[] filter still works (prometheus_client's own application answers it)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]=camwatch_camera_up", timeout=5) as resp:
        names = {fam.name for fam in text_string_to_metric_families(resp.read().decode())}
    assert names == {"camwatch_camera_up"}


# ---- the listener: a fixed pool, bounded connections (issue 22 row 8) --------------------------
def _threads(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def _idle_and_dripping(port: int, idle: int, dripping: int) -> tuple[list[socket.socket], threading.Event]:
    """``idle`` connections that send nothing and ``dripping`` ones sending a request a byte a second."""
    conns = []
    for _ in range(idle + dripping):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        conns.append(s)
    stop = threading.Event()

    def drip() -> None:
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(len(request)):
            for s in conns[idle:]:
                try:
                    s.send(request[i:i + 1])
                except OSError:
                    pass
            if stop.wait(1.0):
                return

    threading.Thread(target=drip, daemon=True).start()
    return conns, stop


def _timed_scrape(port: int) -> float:
    t0 = time.monotonic()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and b"camwatch_" in gzip.decompress(resp.read())
    return time.monotonic() - t0


def test_idle_and_dripping_connections_hold_no_thread_and_are_closed_at_their_deadline(monkeypatch):
    monkeypatch.setattr(listener, "HEAD_TIMEOUT_S", 1.5)
    m = Metrics()
    server = m.serve("127.0.0.1", 0)

    def serving() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("metrics-http"))

    try:
        before = serving()
        assert before == listener.WORKERS + 1
        conns, stop = _idle_and_dripping(server.port, idle=300, dripping=50)   # past MAX_OPEN (256)
        time.sleep(0.5)
        assert serving() == before                            # no thread per connection
        assert _timed_scrape(server.port) < 3                 # an honest scrape is still answered
        time.sleep(2.5)                                       # past the head deadline: all closed
        stop.set()
        closed = 0
        for s in conns:
            s.settimeout(2)
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
            s.close()
        assert closed == len(conns)
        assert serving() == before
    finally:
        server.close()


def test_metrics_listener_backlog_and_threads_are_fixed():
    m = Metrics()
    server = m.serve("127.0.0.1", 0)
    try:
        assert server._httpd.request_queue_size == listener.BACKLOG >= 128
        names = [t.name for t in threading.enumerate() if t.name.startswith("metrics-http")]
        assert len(names) == listener.WORKERS + 1
        # answers keep working one after another and side by side
        results: list[float] = []
        threads = [threading.Thread(target=lambda: results.append(_timed_scrape(server.port))) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 20
    finally:
        server.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("metrics-http")]


def test_a_real_daemon_keeps_its_threads_under_a_thousand_idle_connections(tmp_path):
    grid_model(tmp_path / "grid.onnx")
    write_image(tmp_path / "gate.png", scene_image(seed=1, scene="street"))
    cfg = write_config(tmp_path / "cameras.yaml", [{"id": "gate", "url": str(tmp_path / "gate.png"),
                                                    "auto_enroll": True}],
                       model=str(tmp_path / "grid.onnx"), device="cpu")
    d = Daemon(cfg, log_level="INFO")
    conns: list[socket.socket] = []
    try:
        d.wait_state("gate", "ok", timeout=60)
        before = _threads(d.proc.pid)
        conns, stop = _idle_and_dripping(d.port, idle=950, dripping=50)
        time.sleep(2)
        during = _threads(d.proc.pid)
        took = _timed_scrape(d.port)
        assert during <= before + 2, (before, during)          # was 19 -> 166 with a thread each
        assert took < 3, took
        assert d.value("camwatch_checks_total", camera="gate", result="ok") >= 2   # checks go on
        stop.set()
    finally:
        for s in conns:
            s.close()
        d.stop()
