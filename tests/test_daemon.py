"""The daemon carries out its cameras' state machine, in process, on real parts.

Each test runs a real ``Daemon`` (APScheduler, worker threads, the inference
thread, a real /metrics port, a real SQLite state dir and events outbox) on
real file cameras whose image files are swapped under it, with modelkit's
grid ONNX model. Only ``test_watchdog_starves_when_inference_is_stuck``
replaces something: the embedder's ``run_prepared`` is made to block, because a
hung accelerator cannot be produced on this CPU-only machine.

The state machine's rules themselves (confirm/recover counts, down after N
failures, open alerts...) are tests/test_monitor.py's, on a fake clock. Here
the tests that need several checks in a row run them with ``check_now`` (the
scheduler's own job, called at once) on cameras whose interval is an hour, and
a daemon's clock is moved instead of sleeping through a backoff or a watchdog
window; the scheduler itself is exercised by the tests that keep short intervals.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from daemon_helpers import SilentServer, camwatch, http_get, write_config
from media import scene_image, write_image
from modelkit import grid_model

from camwatch.core.types import ALERT_KINDS
from camwatch.service.daemon import Daemon
from camwatch.store.events import EventStore
from camwatch.store.references import ReferenceStore


def wait(what: str, cond, timeout: float = 30.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def value(d: Daemon, name: str, **labels: str) -> float:
    v = d.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v


#: A camera with this interval is checked once at start, then only by check_now.
HOUR = 3600


def check_now(d: Daemon, cid: str) -> None:
    """One check of ``cid`` now, as the scheduler runs it (fetch on this thread, judged on the
    inference thread); returns once it is judged."""
    rt = d.runtimes[cid]
    wait(f"{cid} idle", lambda: not rt.busy)
    d.pipeline.run_check(cid, rt.generation)
    wait(f"{cid} judged", lambda: not rt.busy)


def probe(d: Daemon, path: str) -> tuple[int, str]:
    """A real GET of the daemon's /healthz or /readyz: (status, body)."""
    assert d.metrics_server is not None
    return http_get(d.metrics_server.port, path)


class Clock:
    """time.monotonic() plus what the test adds: skips a backoff or a watchdog window without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    grid_model(tmp_path / "grid.onnx")
    for cid, seed, scene in (("a", 1, "street"), ("b", 2, "shop"), ("c", 3, "lobby")):
        write_image(tmp_path / f"{cid}.png", scene_image(seed=seed, scene=scene))
    return tmp_path


def config(folder: Path, cameras: list[dict], **settings) -> Path:
    settings.setdefault("model", str(folder / "grid.onnx"))
    settings.setdefault("device", "cpu")
    return write_config(folder / "cameras.yaml", cameras, **settings)


def cam(folder: Path, cid: str, **kw) -> dict:
    return {"id": cid, "url": str(folder / f"{cid}.png"), **kw}


@pytest.fixture
def running():
    started: list[Daemon] = []

    def start(cfg: Path, clock: Clock | None = None) -> Daemon:
        d = Daemon(str(cfg), clock=clock or time.monotonic)
        started.append(d)
        d.start()
        return d

    yield start
    for d in started:
        d.stop()


def test_auto_enroll_only_when_no_reference_and_never_after_restart(folder, running):
    cfg = config(folder, [cam(folder, "a", auto_enroll=True, interval=HOUR)])
    d = running(cfg)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    first = ReferenceStore(folder / "state").for_camera("a", images=False)
    assert len(first) == 1
    d.stop()

    # The camera is turned while camwatch is down: the restart must not take the new view.
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    d = running(cfg)
    wait("the first check", lambda: value(d, "camwatch_checks_total", camera="a", result="drifted") == 1)
    check_now(d, "a")                                   # confirm: 2 (daemon_helpers.write_config)
    assert d.runtimes["a"].state == "drifted"
    again = ReferenceStore(folder / "state").for_camera("a", images=False)
    assert [r.id for r in again] == [r.id for r in first]


def test_no_reference_is_logged_once_with_the_hint(folder, running, caplog):
    caplog.set_level(logging.INFO)
    d = running(config(folder, [cam(folder, "b", interval=HOUR)]))
    wait("the first check", lambda: d.runtimes["b"].state == "no_reference")
    check_now(d, "b"), check_now(d, "b")
    assert value(d, "camwatch_checks_total", camera="b", result="no_reference") == 3
    assert d.runtimes["b"].state == "no_reference"
    hints = [r for r in caplog.records if "camwatch enroll b" in r.getMessage()]
    assert len(hints) == 1
    assert ReferenceStore(folder / "state").for_camera("b") == []  # no auto_enroll: nothing taken


def test_drift_confirmed_after_confirm_checks_then_recovers(folder, running):
    out = camwatch("enroll", "a", "--config", str(config(folder, [cam(folder, "a")])))
    assert out.returncode == 0, out.stderr
    d = running(config(folder, [cam(folder, "a", confirm=3, recover=2, interval=HOUR)]))
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    for n in (1, 2):
        check_now(d, "a")
        assert value(d, "camwatch_checks_total", camera="a", result="drifted") == n
        assert d.runtimes["a"].state == "ok", "fewer drifted checks than confirm changed the state"
        assert value(d, "camwatch_camera_drifted", camera="a") == 0
    check_now(d, "a")
    assert d.runtimes["a"].state == "drifted" and value(d, "camwatch_camera_drifted", camera="a") == 1
    assert value(d, "camwatch_alerts_total", camera="a", kind="moved") == 1

    write_image(folder / "a.png", scene_image(seed=1, scene="street", t=2.0))
    check_now(d, "a")
    assert d.runtimes["a"].state == "drifted"       # recover=2: one good view does not clear
    check_now(d, "a")
    assert d.runtimes["a"].state == "ok"
    evs = EventStore(folder / "state").list("a")
    assert [e.type for e in sorted(evs, key=lambda e: e.time)] == ["drift_started", "drift_cleared"]
    assert evs and all(e.similarity is not None for e in evs)


def test_outside_active_hours_is_skipped_not_fetched(folder, running):
    now = datetime.now()
    start = (now + timedelta(hours=2)).strftime("%H:%M")
    end = (now + timedelta(hours=3)).strftime("%H:%M")
    # A missing file: fetching it would make the camera unavailable.
    d = running(config(folder, [{"id": "z", "url": str(folder / "missing.png"),
                                 "active_hours": f"{start}-{end}"}]))
    wait("skipped checks", lambda: value(d, "camwatch_checks_total", camera="z", result="skipped") >= 2)
    assert value(d, "camwatch_checks_total", camera="z", result="error") == 0
    assert d.runtimes["z"].state != "unavailable"


def test_camera_down_after_failure_streak_then_up(folder, running):
    clock = Clock()
    d = running(config(folder, [cam(folder, "a", auto_enroll=True), cam(folder, "c", auto_enroll=True)]), clock)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    saved = (folder / "a.png").read_bytes()
    n = value(d, "camwatch_checks_total", camera="c", result="ok")
    (folder / "a.png").unlink()
    wait("a unavailable", lambda: d.runtimes["a"].state == "unavailable")
    clock.advance(10)   # past the first retry delay: the next scheduled check fetches again
    wait("camera_down", lambda: any(e.type == "camera_down" for e in EventStore(folder / "state").list("a")),
         timeout=40)
    assert value(d, "camwatch_camera_up", camera="a") == 0
    # The other camera is not held up by the failing one.
    wait("c still checked", lambda: value(d, "camwatch_checks_total", camera="c", result="ok") >= n + 2)
    (folder / "a.png").write_bytes(saved)
    clock.advance(10)   # past the longest retry delay of a 1 s camera: its next scheduled check fetches
    wait("a ok again", lambda: d.runtimes["a"].state == "ok", timeout=40)
    types = [e.type for e in sorted(EventStore(folder / "state").list("a"), key=lambda e: e.time)]
    assert types == ["camera_down", "camera_up"]
    assert value(d, "camwatch_scheduler_lag_seconds_count") > 0


def test_frames_due_together_are_embedded_as_one_batch(folder, running):
    cameras = []
    for i in range(6):
        write_image(folder / f"m{i}.png", scene_image(seed=10 + i, scene="street"))
        cameras.append({"id": f"m{i}", "url": str(folder / f"m{i}.png"), "auto_enroll": True,
                        "interval": 2})
    d = running(config(folder, cameras, workers=6))
    wait("all ok", lambda: all(d.runtimes[f"m{i}"].state == "ok" for i in range(6)))
    wait("second round", lambda: all(value(d, "camwatch_checks_total", camera=f"m{i}", result="ok") >= 1
                                     for i in range(6)), timeout=20)
    frames = value(d, "camwatch_inference_batch_size_sum")
    batches = value(d, "camwatch_inference_batch_size_count")
    assert batches >= 1 and frames > batches, (frames, batches)


def test_reload_keeps_state_of_unchanged_cameras(folder, running):
    out = camwatch("enroll", "a", "--config", str(config(folder, [cam(folder, "a")])))
    assert out.returncode == 0, out.stderr
    cfg = config(folder, [cam(folder, "a", confirm=1, interval=HOUR)])
    d = running(cfg)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    check_now(d, "a")
    assert d.runtimes["a"].state == "drifted"
    rt = d.runtimes["a"]
    config(folder, [cam(folder, "a", confirm=1, interval=HOUR), cam(folder, "c", auto_enroll=True)])
    assert d.reload()
    assert d.runtimes["a"] is rt and rt.state == "drifted"
    wait("c ok", lambda: d.runtimes["c"].state == "ok")
    check_now(d, "a")
    starts = [e for e in EventStore(folder / "state").list("a") if e.type == "drift_started"]
    assert len(starts) == 1  # no second alert: the drift was not forgotten
    # A changed camera starts afresh (still owing the clear); a broken config is refused and the old one runs on.
    config(folder, [cam(folder, "a", confirm=1, interval=HOUR - 1), cam(folder, "c", auto_enroll=True)])
    assert d.reload() and d.runtimes["a"] is not rt
    assert d.runtimes["a"].monitor.drift_open
    (folder / "cameras.yaml").write_text("cameras: [{id: 'Bad Id', url: 3}]\n")
    assert not d.reload()
    assert set(d.runtimes) == {"a", "c"}


def test_watchdog_starves_when_inference_is_stuck(folder, running, monkeypatch, caplog):
    sock_path = folder / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    clock = Clock()
    try:
        d = running(config(folder, [cam(folder, "a", auto_enroll=True, timeout=1)]), clock)
        wait("a ok", lambda: d.runtimes["a"].state == "ok")
        while True:  # drain READY/STATUS
            try:
                sock.recv(4096)
            except TimeoutError:
                break
        d.watchdog_tick()
        assert sock.recv(4096) == b"WATCHDOG=1"

        release = threading.Event()
        real = d.embedder.run_prepared
        monkeypatch.setattr(d.embedder, "run_prepared", lambda batch: (release.wait(60), real(batch))[1])
        wait("a batch stuck in inference", lambda: d.pipeline.batch_started is not None)
        clock.advance(3 * 1 + 1 + 1 + 0.5)  # past the window: 3 intervals + timeout + 1 s
        d.watchdog_tick()
        with pytest.raises(socket.timeout):
            while True:
                assert b"WATCHDOG" not in sock.recv(4096)
        assert "not pinging the systemd watchdog" in caplog.text
        # Kubernetes' liveness probe reads the same rule on the metrics listener.
        assert probe(d, "/healthz")[0] == 503 and "one inference batch has run for" in probe(d, "/healthz")[1]
        assert probe(d, "/readyz") == (200, "ready\n")
        release.set()
        n = value(d, "camwatch_checks_total", camera="a", result="ok")
        wait("checks resume", lambda: value(d, "camwatch_checks_total", camera="a", result="ok") > n)
        wait("progress noted", lambda: clock() - d.pipeline.last_progress < 3)
        d.watchdog_tick()
        got = []
        while True:
            try:
                got.append(sock.recv(4096))
            except TimeoutError:
                break
        assert b"WATCHDOG=1" in got
        assert probe(d, "/healthz") == (200, "ok\n")
    finally:
        sock.close()


def test_enrolling_anew_while_drifted_clears_the_drift(folder, running):
    """A deliberate move is accepted by enrolling again: the alert clears, no implicit re-baseline."""
    cfg = config(folder, [cam(folder, "a", confirm=1, recover=1, interval=HOUR)])
    assert camwatch("enroll", "a", "--config", str(cfg)).returncode == 0
    d = running(cfg)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    for _ in range(3):
        check_now(d, "a")
        assert d.runtimes["a"].state == "drifted"  # stays drifted: the daemon never adopts the view itself
    out = camwatch("enroll", "a", "--config", str(cfg))  # another process, same state dir
    assert out.returncode == 0, out.stderr
    check_now(d, "a")
    assert d.runtimes["a"].state == "ok"
    types = [e.type for e in sorted(EventStore(folder / "state").list("a"), key=lambda e: e.time)]
    assert types == ["drift_started", "drift_cleared"]
    assert value(d, "camwatch_camera_references", camera="a") == 1


def test_drift_stays_open_across_a_restart(folder, running):
    """Killed or restarted while a camera is drifted: no second alert, and the clear still comes."""
    cfg = config(folder, [cam(folder, "a", auto_enroll=True, confirm=1, recover=1, interval=HOUR)])
    d = running(cfg)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    check_now(d, "a")
    assert d.runtimes["a"].state == "drifted"
    d.stop()

    d = running(cfg)
    wait("a drifted after restart", lambda: d.runtimes["a"].state == "drifted")
    check_now(d, "a"), check_now(d, "a")
    assert value(d, "camwatch_checks_total", camera="a", result="drifted") == 3
    assert sum(value(d, "camwatch_alerts_total", camera="a", kind=k) for k in ALERT_KINDS) == 0  # no new alert
    write_image(folder / "a.png", scene_image(seed=1, scene="street", t=1.0))
    check_now(d, "a")
    assert d.runtimes["a"].state == "ok"
    types = [e.type for e in EventStore(folder / "state").list("a")]
    assert types == ["drift_started", "drift_cleared"]


def test_calibration_keeps_each_early_checks_structure_and_then_uses_the_cameras_scale(folder, running):
    """The first ``calibration.checks`` benign checks store similarity AND structure
    distance in the real SQLite file; after them the camera is judged with its own
    threshold and structure scale (calibration.calibrate / calibrate_structure)."""
    from camwatch.config import load_config
    from camwatch.core import calibration
    from camwatch.service.checks import threshold_for
    from camwatch.vision.embedder import load_embedder

    out = camwatch("enroll", "a", "--config", str(config(folder, [cam(folder, "a")])))
    assert out.returncode == 0, out.stderr
    cfg = config(folder, [cam(folder, "a", interval=HOUR)], calibration={"checks": 3})
    d = running(cfg)
    wait("the first check", lambda: d.runtimes["a"].state == "ok")
    for _ in range(3):
        check_now(d, "a")
    assert value(d, "camwatch_checks_total", camera="a", result="ok") == 4
    d.stop()
    emb = load_embedder(str(folder / "grid.onnx"), device="cpu")
    with ReferenceStore(folder / "state") as store:
        sims = store.calibration_samples("a", emb.spec.identity)
        structures = store.calibration_structure("a", emb.spec.identity)
        assert len(sims) == len(structures) == 3          # no more once calibrated
        assert all(0 <= s < 0.05 for s in structures)      # the same still view: layout intact
        views = store.calibration_views("a", emb.spec.identity)
        ref_ids = {r.id for r in store.for_camera("a", images=False)}
        config_ = load_config(str(cfg))
        t = threshold_for(config_.camera("a"), config_.settings, emb, store)
    assert t.source == "calibrated" and t.samples == 3
    assert t.structure_scale == pytest.approx(calibration.calibrate_structure(structures))
    assert t.value == pytest.approx(calibration.calibrate(sims, emb.spec.threshold))
    # Each sample kept its view's statistics and nearest reference: the learned scene is made of
    # the reference and those three views, and survives the restart (re-derived from the store).
    assert len(views) == 3 and {ref for ref, _ in views} == ref_ids
    assert all(v["layout"] and v["focus_grid"] for _, v in views)
    assert t.backgrounds is not None and set(t.backgrounds) == ref_ids
    # ...and the fourth check, the first after calibration, was learned too (SceneHistory)
    assert all(b.views == 5 for b in t.backgrounds.values())


def test_a_calibrated_cameras_scene_keeps_learning_from_its_plain_checks(folder, running):
    """After calibration each plainly benign check joins the scene (core.calibration.SceneHistory):
    the scene the next check is judged on is learned from the reference, the calibration views and
    those; a check while the drift alert is open is never learned."""
    from camwatch.config import load_config
    from camwatch.service.checks import forget_history, history_of, threshold_for
    from camwatch.vision.embedder import load_embedder

    forget_history("a")
    cfg = config(folder, [cam(folder, "a", auto_enroll=True, confirm=1, recover=1, interval=HOUR)],
                 calibration={"checks": 3})
    d = running(cfg)
    wait("the first check", lambda: d.runtimes["a"].state == "ok")   # enrolled, and calibration's first
    for _ in range(2):
        check_now(d, "a")                       # the rest of calibration
    for _ in range(2):
        time.sleep(0.25)                        # learned views are at least learn_spacing apart
        check_now(d, "a")
    ref_id = d.store.for_camera("a", images=False)[0].id
    assert len(history_of("a").of(ref_id)) == 2
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    time.sleep(0.25)
    check_now(d, "a")
    check_now(d, "a")
    assert d.runtimes["a"].state == "drifted"
    assert len(history_of("a").of(ref_id)) == 2                # the turned view is never learned
    emb = load_embedder(str(folder / "grid.onnx"), device="cpu")
    config_ = load_config(str(cfg))
    t = threshold_for(config_.camera("a"), config_.settings, emb, d.store)
    assert t.backgrounds is not None and t.backgrounds[ref_id].views == 1 + 3 + 2


def test_offline_keeps_the_drift_until_good_checks_clear_it(folder, running):
    """A drifted camera that goes offline: unavailable AND still drifted on /metrics, no
    drift_cleared; back with its enrolled view, ``recover`` good checks clear it. After a restart
    the open drift shows from the start, even before (here: without) any check."""
    cfg = config(folder, [cam(folder, "a", confirm=1, recover=2, interval=HOUR)])
    assert camwatch("enroll", "a", "--config", str(cfg)).returncode == 0
    clock = Clock()
    d = running(cfg, clock)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    saved = (folder / "a.png").read_bytes()
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    check_now(d, "a")
    assert d.runtimes["a"].state == "drifted" and value(d, "camwatch_camera_drifted", camera="a") == 1
    (folder / "a.png").unlink()
    for _ in range(3):
        clock.advance(30)                       # past the retry delay
        check_now(d, "a")
    assert value(d, "camwatch_camera_state", camera="a", state="unavailable") == 1
    assert value(d, "camwatch_camera_up", camera="a") == 0
    assert value(d, "camwatch_camera_drifted", camera="a") == 1          # the drift was not confirmed gone
    types = [e.type for e in EventStore(folder / "state").list("a")]
    assert types == ["drift_started", "camera_down"]
    d.stop()

    # Restarted while down and drifted, on a camera checked only outside these hours: nothing is
    # checked, the open drift still shows.
    now = datetime.now()
    later = f"{(now + timedelta(hours=2)).strftime('%H:%M')}-{(now + timedelta(hours=3)).strftime('%H:%M')}"
    d = running(config(folder, [cam(folder, "a", confirm=1, recover=2, interval=HOUR, active_hours=later)]))
    assert value(d, "camwatch_camera_drifted", camera="a") == 1
    d.stop()

    (folder / "a.png").write_bytes(saved)
    d = running(config(folder, [cam(folder, "a", confirm=1, recover=2, interval=HOUR)]))
    wait("a checked", lambda: value(d, "camwatch_checks_total", camera="a", result="ok") == 1)
    assert d.runtimes["a"].state == "drifted" and value(d, "camwatch_camera_drifted", camera="a") == 1
    check_now(d, "a")                            # the second good check: recover=2
    assert d.runtimes["a"].state == "ok" and value(d, "camwatch_camera_drifted", camera="a") == 0
    types = [e.type for e in EventStore(folder / "state").list("a")]
    assert types == ["drift_started", "camera_down", "camera_up", "drift_cleared"]


def test_the_drift_line_names_the_view_the_numbers_and_the_evidence(folder, running, caplog):
    """The operator's line, the metric and the event all show the camera's own threshold, the
    one calibration gave it, while the structure cue moves the bar each view is held to; the
    cues are in the event's details."""
    from camwatch.config import load_config
    from camwatch.service.checks import threshold_for

    caplog.set_level(logging.DEBUG)
    cfg = config(folder, [cam(folder, "a", interval=HOUR, confirm=2)], calibration={"checks": 3})
    assert camwatch("enroll", "a", "--config", str(cfg)).returncode == 0
    d = running(cfg)
    wait("a ok", lambda: d.runtimes["a"].state == "ok")
    for _ in range(3):
        check_now(d, "a")
    c = load_config(str(cfg))
    t = threshold_for(c.camera("a"), c.settings, d.embedder, d.store)
    assert t.source == "calibrated" and t.structure_scale
    write_image(folder / "a.png", scene_image(seed=1, scene="street", moved=True))
    for _ in range(2):
        check_now(d, "a")
        assert value(d, "camwatch_camera_threshold", camera="a") == pytest.approx(t.value)
    assert d.runtimes["a"].state == "drifted"
    (e,) = [e for e in EventStore(folder / "state").list("a") if e.type == "drift_started"]
    assert e.threshold == pytest.approx(t.value) and e.evidence and Path(e.evidence).is_file()
    assert e.details["camera_threshold"] == pytest.approx(t.value, abs=1e-4)
    assert e.details["threshold_source"] == "calibrated" and "structure_distance" in e.details
    assert e.details["structure_scale"] == pytest.approx(t.structure_scale, abs=1e-4)
    assert e.details["adjusted_threshold"] != pytest.approx(t.value, abs=1e-4)    # the cue moved it
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("camera a: view "))
    sim = f"{e.similarity:.2f}"
    assert line == (f"camera a: view {e.kind.upper()} (match {sim}, needs {t.value:.2f}"
                    + (", but the layout changed" if e.similarity >= t.value else "")
                    + f"; evidence {e.evidence})"), line
    debug = [r.getMessage() for r in caplog.records if r.getMessage().startswith("camera a: match ")]
    assert len(debug) == 6 and all(f"needs {t.value:.3f} (calibrated)" in m for m in debug[-2:]), debug
    assert "puts the bar at" in debug[-1]


def test_a_camera_slower_than_its_interval_is_skipped_counted_and_said_once(folder, running, caplog):
    """timeout 3 s, interval 1 s, a camera that accepts and never answers: the runs that find the
    previous check still going are counted as skipped and said once with the cause, never as
    APScheduler's "maximum number of running instances reached" warning."""
    caplog.set_level(logging.INFO)
    silent = SilentServer()
    try:
        d = running(config(folder, [{"id": "slow", "url": f"http://127.0.0.1:{silent.port}/snap.jpg",
                                     "interval": 1, "timeout": 3}]))
        wait("runs skipped", lambda: value(d, "camwatch_checks_total", camera="slow", result="skipped") >= 4,
             timeout=40)
        wait("a failed fetch", lambda: value(d, "camwatch_checks_total", camera="slow", result="error") >= 2,
             timeout=40)
        # Two failed fetches raise "camera unavailable": its delivery by the log sink is awaited here, so that
        # it does not land while pytest swaps this test's log handler for teardown's (a closed stream).
        wait("the unavailable event logged", lambda: any("camera unavailable" in r.getMessage()
                                                         for r in caplog.records), timeout=20)
    finally:
        silent.close()
    said = [r.getMessage() for r in caplog.records if "checks skipped" in r.getMessage()]
    assert said == ['camera slow: checks skipped: the previous check is still running; its timeout (3 s) is '
                    'longer than its interval (1 s), so a camera that does not answer holds it past the next '
                    'run (shorten the timeout or lengthen the interval); counted in camwatch_checks_total'
                    '{result="skipped"}; said again only if it recurs after checks run on time'], said
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
