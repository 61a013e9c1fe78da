"""The daemon: schedule checks, keep each camera's state, react to signals.

Shape of the work, and why:

- APScheduler 3 fires one interval job per enabled camera (jitter so cameras
  do not fetch in lockstep, ``coalesce`` and ``max_instances=1`` so a slow
  camera never piles up runs). Jobs run on a bounded pool of *daemon* threads
  (``settings.workers``): a camera hung inside a library holds at most one
  worker and can never keep the process from exiting.
- A job only fetches a frame (bounded by the camera's timeout in sources.py)
  and queues it. ONE inference thread embeds everything queued as one batch,
  so frames due together are embedded together and the model is never used
  from two threads at once.
- The decision per camera (nearest reference, calibrated threshold,
  hysteresis) produces state changes; state changes produce events, metrics
  and log lines. Nothing else changes state.
- References are only ever made on purpose: ``auto_enroll`` enrols the first
  good frame of a camera that has no reference at all, never otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import select
import signal
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from camwatch.core.errors import CamwatchError, ConfigError, SourceError
from camwatch.core.secrets import register_secret, scrub
from camwatch.service import notify
from camwatch.service.checks import embed_views, judge, threshold_for, view_of

log = logging.getLogger(__name__)

STATES = ("ok", "drifted", "unavailable", "no_reference", "disabled")
#: Consecutive failed fetches before a camera_down event (one failure is a hiccup).
DOWN_AFTER_FAILURES = 2
#: Seconds the inference thread waits for more frames before embedding a batch.
BATCH_GATHER_S = 0.02
#: Largest batch embedded at once.
MAX_BATCH = 64
#: Frames fetched but not yet assessed, at most: a fetch worker waits (bounded by its
#: camera's timeout) while inference is behind, so 1,000 cameras due at once cannot
#: pile 1,000 decoded frames (0.7 MB each at 640x360) in memory.
MAX_QUEUED = 2 * MAX_BATCH
#: A missed run is still started this late (seconds) rather than dropped.
MISFIRE_GRACE_S = 30
#: How often delivered events past settings.events.keep_days are forgotten.
PRUNE_EVERY_S = 6 * 3600
#: Seconds from start (or a camera's addition) to its first check.
FIRST_CHECK_AFTER_S = 0.5
#: Hard bound on shutdown work (flush of events, closing sources).
STOP_BUDGET_S = 6.0
#: run_forever wakes at least this often even if no signal or stop() came (a safety net only).
MAIN_WAKE_S = 30.0
#: Backoff of a failing camera: first retry after up to this many seconds...
BACKOFF_BASE_S = 1.0
#: ...growing to at most this many check intervals (and never less than the floor).
BACKOFF_CAP_INTERVALS = 4
BACKOFF_CAP_FLOOR_S = 10.0


# -- per-camera state ----------------------------------------------------------


@dataclass
class CameraRuntime:
    """Everything the daemon remembers about one camera between checks."""

    camera: Any
    generation: int = 0              # bumped when the camera's config changes: late results are dropped
    state: str | None = None         # None until the first check
    hysteresis: Any = None
    backoff: Any = None
    source: Any = None
    failures: int = 0                # consecutive failed fetches
    down: bool = False               # camera_down sent, camera_up not yet
    retry_at: float = 0.0            # monotonic: scheduled checks are skipped until then
    busy: bool = False               # a fetch or an assessment is in flight
    no_reference_logged: bool = False
    expected_at: float | None = None  # unix time this run was scheduled for
    last_done: float = 0.0           # monotonic time of the latest completed check
    last_similarity: float | None = None
    last_threshold: float | None = None
    last_kind: str | None = None
    ref_ids: frozenset = frozenset()  # references last judged against; a change resets hysteresis
    drift_open: bool = False         # drift_started sent, drift_cleared not yet (survives an outage)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class Queued:
    """A fetched frame on its way to the inference thread."""

    runtime: CameraRuntime
    generation: int
    image: np.ndarray
    captured_at: float


# -- a scheduler executor on daemon threads ------------------------------------


def _make_executor(workers: int, expected: Callable[[str, float], None]) -> Any:
    """An APScheduler executor whose threads are daemon threads, bounded in number.

    concurrent.futures' pool joins its (non-daemon) threads at exit, so a fetch
    hung in a library would hold up shutdown; ours cannot. It also hands each
    job the time it was scheduled for, so the scheduler's lag can be measured.
    """
    from apscheduler.executors.base import BaseExecutor, run_job

    class DaemonThreadExecutor(BaseExecutor):
        def __init__(self) -> None:
            super().__init__()
            self._jobs: queue.Queue[Any] = queue.Queue()
            self._threads = [threading.Thread(target=self._work, name=f"fetch-{i}", daemon=True)
                             for i in range(max(1, int(workers)))]
            for t in self._threads:
                t.start()

        def _work(self) -> None:
            while True:
                item = self._jobs.get()
                if item is None:
                    return
                job, run_times = item
                expected(job.id, run_times[-1].timestamp())
                try:
                    events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
                except BaseException as exc:  # reported to the scheduler like the stock executor
                    self._run_job_error(job.id, exc, exc.__traceback__)
                else:
                    self._run_job_success(job.id, events)

        def _do_submit_job(self, job: Any, run_times: list) -> None:
            self._jobs.put((job, run_times))

        def shutdown(self, wait: bool = True) -> None:
            for _ in self._threads:
                self._jobs.put(None)

    return DaemonThreadExecutor()


# -- the daemon ------------------------------------------------------------------


def _structure_note(j: Any) -> str:
    """Why a view's threshold differs from the camera's, for the alert line; "" when it does not."""
    v, base = j.verdict, j.threshold.value
    if v.structure is None or j.threshold.structure_scale is None or abs(v.threshold - base) < 1e-3:
        return ""
    way = "raised" if v.threshold > base else "lowered"
    return (f" (the camera's {base:.3f}, {way} by the view's structure: distance {v.structure:.3f} "
            f"against its scale {j.threshold.structure_scale:.3f})")


class Daemon:
    """Load everything, schedule checks, run until stopped; ``reload`` on SIGHUP."""

    def __init__(self, config_path: str):
        self.config_path = config_path
        self.config: Any = None
        self.embedder: Any = None
        self.store: Any = None
        self.events: Any = None
        self.dispatcher: Any = None
        self.evidence: Any = None
        self.metrics: Any = None
        self.metrics_server: Any = None
        self.scheduler: Any = None
        self.runtimes: dict[str, CameraRuntime] = {}
        self._lock = threading.RLock()
        self._queue: queue.Queue[Queued] = queue.Queue(maxsize=MAX_QUEUED)
        self._stop = threading.Event()
        self._signalled_stop = 0            # the signal number, set by install_signals' handlers
        self._signalled_reload = False
        self._wakeup_installed = False
        self._wake_r, self._wake_w = os.pipe()       # wakes run_forever (see there)
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._inference: threading.Thread | None = None
        self._last_progress = time.monotonic()
        self._batch_started: float | None = None
        self._started = False

    # ---- start-up --------------------------------------------------------------
    def start(self) -> None:
        """Everything up to READY=1: config, model warm, store, events, metrics, schedule."""
        from camwatch.service.metrics import Metrics
        from camwatch.store.references import ReferenceStore
        from camwatch.vision.embedder import load_embedder

        self.config = load_config_registered(self.config_path)
        s = self.config.settings
        self.embedder = load_embedder(str(s.model) if s.model else None, device=s.device,
                                      require_gpu=s.require_gpu)
        self.embedder.warmup()
        spec = self.embedder.spec
        log.info("model %s %s on %s (threshold %.3f)", spec.name, spec.version,
                 self.embedder.provider, spec.threshold)
        self.store = ReferenceStore(s.state_dir)
        redone = self.store.reembed(self.embedder)
        if redone:
            log.info("refreshed %d reference(s) made with another model or statistics route", redone)
        self.metrics = Metrics()
        self._start_events()
        from camwatch import __version__
        self.metrics.set_build_info(__version__, str(spec.name), str(spec.version))
        self.metrics.set_provider(self.embedder.provider, bool(s.require_gpu))
        if s.metrics.enabled:
            self.metrics_server = self.metrics.serve(s.metrics.address, s.metrics.port)
        self._start_scheduler()
        self._apply_cameras(self.config, first=True)
        self._inference = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._inference.start()
        self._started = True
        notify.ready(self.status_line())
        log.info("camwatch started: %d camera(s), %d enabled",
                 len(self.config.cameras), sum(1 for c in self.config.cameras if c.enabled))

    def _start_events(self) -> None:
        """Event store (durable outbox), its dispatcher, and evidence files."""
        from camwatch.service.alerts import Dispatcher, build_sinks
        from camwatch.store.events import EventStore

        s = self.config.settings
        self.events = EventStore(s.state_dir)
        self.dispatcher = Dispatcher(self.events, build_sinks(s.webhooks), metrics=self.metrics)
        self.dispatcher.start()

    def prune_events(self) -> int:
        """Forget delivered events older than ``settings.events.keep_days`` (never a pending one)."""
        days = self.config.settings.events.keep_days
        if not days or self.events is None:
            return 0
        try:
            gone = self.events.prune(time.time() - days * 86400.0)
        except CamwatchError as exc:
            log.warning("events: %s", scrub(str(exc)))
            return 0
        if gone:
            log.info("events: forgot %d delivered event(s) older than %d days", gone, days)
        return gone

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        executor = _make_executor(self.config.settings.workers, self._note_expected)
        # Watchdog and status jobs get their own thread: busy camera workers must not starve them.
        control = _make_executor(1, lambda job_id, when: None)
        self.scheduler = BackgroundScheduler(executors={"default": executor, "control": control},
                                             job_defaults={"coalesce": True, "max_instances": 1,
                                                           "misfire_grace_time": MISFIRE_GRACE_S})
        self.scheduler.start()

    def _note_expected(self, job_id: str, scheduled: float) -> None:
        rt = self.runtimes.get(job_id.split(":", 1)[-1])
        if rt is not None:
            rt.expected_at = scheduled

    # ---- cameras ---------------------------------------------------------------
    def _apply_cameras(self, config: Any, first: bool = False) -> None:
        """Make the running cameras match ``config``: add, remove, replace changed ones.

        An unchanged camera keeps its runtime (hysteresis, backoff, state);
        a changed one starts afresh (its references and calibration live in
        the store and are kept either way).
        """
        from camwatch.core.decision import Hysteresis

        wanted = {c.id: c for c in config.cameras}
        with self._lock:
            for cid in list(self.runtimes):
                if cid not in wanted:
                    self._drop_camera(cid)
                    log.info("camera %s removed", cid)
            for cid, cam in wanted.items():
                old = self.runtimes.get(cid)
                if old is not None and old.camera == cam:
                    continue
                if old is not None:
                    self._drop_camera(cid, keep_metrics=True)
                    log.info("camera %s changed; its checks restart", cid)
                # Alerts left open (by a changed runtime, or by a previous run that was
                # killed) stay open: the clearing event is still owed, and no duplicate.
                drift_open, down = (old.drift_open, old.down) if old is not None \
                    else _open_alerts(self.events, cid)
                rt = CameraRuntime(camera=cam, generation=(old.generation + 1) if old else 0,
                                   hysteresis=Hysteresis(confirm=cam.confirm, recover=cam.recover,
                                                         drifted=drift_open),
                                   backoff=_backoff_for(cam), drift_open=drift_open, down=down)
                self.runtimes[cid] = rt
                refs = self.store.summary().get(cid)
                self.metrics.camera_added(cid, "disabled" if not cam.enabled else
                                          ("no_reference" if refs is None and not cam.auto_enroll
                                           else "unavailable"))
                self.metrics.set_references(cid, refs.count if refs else 0, refs.newest_at if refs else None)
                if not cam.enabled:
                    rt.state = "disabled"
                    continue
                if not first and old is None:
                    log.info("camera %s added", cid)
                self._schedule(rt)

    def _schedule(self, rt: CameraRuntime) -> None:
        from datetime import timedelta

        cam = rt.camera
        # APScheduler adds uniform(0, jitter) to every run, counted from the previous run: the
        # mean interval grows by jitter/2 (10% jitter made 30 s checks come every 31.5 s).
        # The phases below do the spreading; a little jitter only keeps two cameras whose
        # phases collide from connecting in lockstep forever.
        jitter = min(cam.interval * 0.02, 1.0)
        # Every camera's first check at the same moment, so their frames are embedded as one
        # batch. From the second on, each camera keeps its own phase in the interval (stable,
        # from its id): APScheduler counts each run from the previous one, so without it
        # 1,000 cameras stayed due within the same few seconds every round (lag p99 > 1 s
        # in bench_scale); the jitter only varies the phase a little.
        first = datetime.now().astimezone() + timedelta(seconds=FIRST_CHECK_AFTER_S)
        rt.expected_at = first.timestamp()
        phase = cam.interval * (0.5 + (zlib.crc32(cam.id.encode()) % 1000) / 1000)
        self.scheduler.add_job(self._run_check, "date", run_date=first, id=f"first:{cam.id}",
                               args=(cam.id, rt.generation), replace_existing=True)
        self.scheduler.add_job(self._run_check, "interval", seconds=cam.interval, jitter=jitter,
                               id=f"check:{cam.id}", args=(cam.id, rt.generation),
                               start_date=first + timedelta(seconds=phase), replace_existing=True)

    def _drop_camera(self, cid: str, keep_metrics: bool = False) -> None:
        rt = self.runtimes.pop(cid, None)
        for job in (f"first:{cid}", f"check:{cid}"):
            try:
                self.scheduler.remove_job(job)
            except Exception:  # JobLookupError: a disabled camera has no job, a first check ran
                pass
        if rt is not None:
            _close_source(rt)
        if not keep_metrics:
            self.metrics.camera_removed(cid)

    # ---- one check -----------------------------------------------------------------
    def _run_check(self, cid: str, generation: int) -> None:
        """A scheduler job: fetch one frame (bounded) and queue it for inference."""
        rt = self.runtimes.get(cid)
        if rt is None or rt.generation != generation or self._stop.is_set():
            return
        started = time.time()
        if rt.expected_at is not None:
            self.metrics.observe_lag(started - rt.expected_at)
        cam = rt.camera
        if cam.active_hours is not None and not cam.active_at(datetime.now()):
            self.metrics.check_done(cid, "skipped")
            self._progress()
            return
        if time.monotonic() < rt.retry_at or rt.busy:
            self.metrics.check_done(cid, "skipped")
            return
        rt.busy = True
        try:
            frame = self._fetch(rt)
        except SourceError as exc:
            rt.busy = False
            self._fetch_failed(rt, exc)
            return
        except Exception as exc:  # a bug in a source must not kill the job for good
            rt.busy = False
            log.error("camera %s: unexpected error fetching a frame: %s", cid,
                      scrub(f"{type(exc).__name__}: {exc}"), exc_info=log.isEnabledFor(logging.DEBUG))
            self._fetch_failed(rt, SourceError("other", f"camera {cid}: {type(exc).__name__}"))
            return
        self.metrics.observe_fetch(time.time() - started)
        try:
            self._queue.put(Queued(rt, generation, frame.image, frame.captured_at),
                            timeout=max(1.0, float(cam.timeout)))
        except queue.Full:
            rt.busy = False
            self.metrics.check_done(cid, "skipped")
            log.warning("camera %s: check skipped, %d frames already wait for inference",
                        cid, MAX_QUEUED, extra={"camera": cid})

    def _fetch(self, rt: CameraRuntime) -> Any:
        from camwatch.sources.base import open_source

        # The source is kept across failures: it knows whether its previous attempt is
        # still hung (and refuses to start another), and a stream source reconnects itself.
        if rt.source is None:
            rt.source = open_source(rt.camera)
        return rt.source.read()

    def _fetch_failed(self, rt: CameraRuntime, exc: SourceError) -> None:
        cid = rt.camera.id
        rt.failures += 1
        delay = rt.backoff.next_delay()
        rt.retry_at = time.monotonic() + delay
        self.metrics.frame_error(cid, getattr(exc, "reason", "other"))
        self.metrics.check_done(cid, "error")
        message = scrub(str(exc))
        if rt.state != "unavailable":
            log.warning("camera %s unavailable: %s (retrying in %.1f s)", cid, message, delay,
                        extra={"camera": cid, "reason": getattr(exc, "reason", "other")})
        else:
            log.debug("camera %s still unavailable: %s", cid, message)
        self._set_state(rt, "unavailable")
        if rt.failures >= DOWN_AFTER_FAILURES and not rt.down:
            rt.down = True
            self.metrics.alert(cid, "unavailable")
            self._emit(cid, "camera_down", f"{rt.failures} failed fetches: {message}")
        self._progress()

    # ---- inference ---------------------------------------------------------------
    def _inference_loop(self) -> None:
        # Blocks without a timeout: stop() queues None to wake it. A polling get woke the
        # thread twice a second, ~0.4 ms CPU/s with nothing to do (benchmarks/bench_idle.py).
        stopping = False
        while not stopping and not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + BATCH_GATHER_S
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True          # this batch is still assessed, then the loop ends
                    break
                batch.append(item)
            self._batch_started = time.monotonic()
            try:
                self._assess_batch(batch)
            except Exception as exc:  # one bad batch must not stop every later check
                log.error("assessing %d frame(s) failed: %s", len(batch),
                          scrub(f"{type(exc).__name__}: {exc}"), exc_info=True)
            finally:
                self._batch_started = None
                for item in batch:
                    item.runtime.busy = False

    def _assess_batch(self, batch: Sequence[Queued]) -> None:
        from camwatch.service.enrol import enrol_frame

        todo: list[tuple[Queued, list, np.ndarray]] = []
        for item in batch:
            rt = item.runtime
            cam = rt.camera
            if self.runtimes.get(cam.id) is not rt or rt.generation != item.generation:
                continue  # removed or changed by a reload while fetching
            self._fetched_ok(rt)
            refs = self.store.for_camera(cam.id, images=False)
            if not refs and cam.auto_enroll:
                # Only a camera with no reference at all: never a re-baseline.
                try:
                    done = enrol_frame(self.store, self.embedder, cam, item.image, "default")
                except CamwatchError as exc:
                    log.warning("camera %s: auto_enroll refused this frame: %s", cam.id, scrub(str(exc)))
                    self.metrics.check_done(cam.id, "no_reference")
                    self._set_state(rt, "no_reference")
                    continue
                log.info("camera %s: no reference yet; enrolled this view as reference %d (auto_enroll)",
                         cam.id, done.reference.id, extra={"camera": cam.id})
                self._refresh_reference_metrics(cam.id)
                refs = self.store.for_camera(cam.id, images=False)
            if not refs:
                self.metrics.check_done(cam.id, "no_reference", at=item.captured_at)
                if not rt.no_reference_logged:
                    log.warning("camera %s has no reference; enrol it with: camwatch enroll %s",
                                cam.id, cam.id, extra={"camera": cam.id})
                    rt.no_reference_logged = True
                self._set_state(rt, "no_reference")
                self._progress(rt)
                continue
            rt.no_reference_logged = False
            ids = frozenset(r.id for r in refs)
            if rt.ref_ids and ids != rt.ref_ids:
                # Enrolled anew (e.g. after a deliberate move): judge afresh from this check.
                log.info("camera %s: references changed; hysteresis starts afresh", cam.id)
                rt.hysteresis.reset()
                self._refresh_reference_metrics(cam.id)
            rt.ref_ids = ids
            todo.append((item, refs, view_of(cam, item.image)))
        if not todo:
            return
        t0 = time.perf_counter()
        vectors, all_stats = embed_views(self.embedder, [v for _, _, v in todo])
        self.metrics.observe_inference(time.perf_counter() - t0, len(todo))

        for (item, refs, view), vec, stats in zip(todo, vectors, all_stats):
            rt = item.runtime
            try:
                threshold = threshold_for(rt.camera, self.config.settings, self.embedder, self.store)
                j = judge(vec, stats, refs, threshold)
                self._decide(rt, j, item, view)
            except Exception as exc:
                log.error("camera %s: assessment failed: %s", rt.camera.id,
                          scrub(f"{type(exc).__name__}: {exc}"), exc_info=True)

    def _decide(self, rt: CameraRuntime, j: Any, item: Queued, view: np.ndarray) -> None:
        """Hysteresis on one verdict, then the state change's events and metrics."""
        cam = rt.camera
        v = j.verdict
        if j.threshold.calibrating and not v.drifted:
            self.store.add_calibration_sample(cam.id, self.embedder.spec.identity, v.similarity,
                                              structure=v.structure)
        confirmed = rt.hysteresis.update(bool(v.drifted))
        rt.last_similarity, rt.last_threshold, rt.last_kind = v.similarity, v.threshold, v.kind
        self.metrics.check_done(cam.id, "drifted" if v.drifted else "ok", v.similarity,
                                v.threshold, at=item.captured_at)
        extra = {"camera": cam.id, "similarity": round(float(v.similarity), 4),
                 "threshold": round(v.threshold, 4), "kind": v.kind,
                 "structure": None if v.structure is None else round(float(v.structure), 4)}
        log.debug("camera %s: similarity %.3f threshold %.3f (%s)%s", cam.id, v.similarity,
                  v.threshold, j.threshold.source, f" looks {v.kind}" if v.drifted else "",
                  extra=extra)
        new_state = "drifted" if confirmed else "ok"
        if confirmed and not rt.drift_open:
            rt.drift_open = True
            evidence = self._write_evidence(cam, v, v.threshold, view, item.captured_at)
            log.warning("camera %s DRIFTED (%s): similarity %.3f below threshold %.3f%s",
                        cam.id, v.kind, v.similarity, v.threshold, _structure_note(j), extra=extra)
            self.metrics.alert(cam.id, v.kind)
            self._emit(cam.id, "drift_started", f"reference {v.reference_id}", kind=v.kind,
                       similarity=v.similarity, threshold=v.threshold, evidence=evidence)
        elif not confirmed and rt.drift_open:
            rt.drift_open = False
            log.info("camera %s back to its enrolled view: similarity %.3f (threshold %.3f)",
                     cam.id, v.similarity, v.threshold, extra=extra)
            self._emit(cam.id, "drift_cleared", similarity=v.similarity, threshold=v.threshold)
        elif rt.state in (None, "unavailable", "no_reference") and new_state == "ok":
            log.info("camera %s ok: similarity %.3f (threshold %.3f)", cam.id, v.similarity,
                     v.threshold, extra=extra)
        self._set_state(rt, new_state)
        self._progress(rt)

    def _fetched_ok(self, rt: CameraRuntime) -> None:
        cid = rt.camera.id
        rt.backoff.reset()
        rt.retry_at = 0.0
        if rt.failures:
            log.info("camera %s reachable again after %d failed fetch(es)", cid, rt.failures)
            self.metrics.reconnected(cid)
        rt.failures = 0
        self.metrics.set_up(cid, True)
        if rt.down:
            rt.down = False
            self._emit(cid, "camera_up")

    def _set_state(self, rt: CameraRuntime, state: str) -> None:
        if rt.state == state:
            return
        rt.state = state
        self.metrics.set_state(rt.camera.id, state)
        notify.status(self.status_line())

    def _progress(self, rt: CameraRuntime | None = None) -> None:
        now = time.monotonic()
        self._last_progress = now
        if rt is not None:
            rt.last_done = now

    def _refresh_reference_metrics(self, cid: str) -> None:
        s = self.store.summary().get(cid)
        self.metrics.set_references(cid, s.count if s else 0, s.newest_at if s else None)

    # ---- events and evidence -----------------------------------------------------
    def _emit(self, cid: str, type_: str, message: str = "", kind: str | None = None,
              similarity: float | None = None, threshold: float | None = None,
              evidence: str | None = None) -> None:
        """Record an event durably (outbox); delivery to log/webhooks is the dispatcher's job.

        A failure to record is logged loudly but never stops the checks.
        """
        from camwatch.store.events import Event

        if self.dispatcher is None:
            return
        try:
            self.dispatcher.publish(Event(camera_id=cid, type=type_, kind=kind,
                                          similarity=None if similarity is None else float(similarity),
                                          threshold=None if threshold is None else float(threshold),
                                          evidence=evidence, message=scrub(message)))
        except Exception as exc:
            log.error("camera %s: could not record %s event: %s", cid, type_, scrub(str(exc)))

    def _write_evidence(self, cam: Any, verdict: Any, threshold: float, view: np.ndarray,
                        at: float) -> str | None:
        """Reference and current view side by side, so a person can see what changed."""
        import cv2

        from camwatch.store.evidence import write_evidence

        ev = self.config.settings.evidence
        if not getattr(ev, "enabled", True) or verdict.reference_id is None:
            return None
        try:
            ref = self.store.get(verdict.reference_id)
            if ref is None:
                return None
            ref_img = cv2.imdecode(np.frombuffer(ref.image_jpeg, np.uint8), cv2.IMREAD_COLOR)
            path = write_evidence(self.config.settings.state_dir, cam.id, ref_img, view,
                                  similarity=float(verdict.similarity), threshold=threshold,
                                  kind=verdict.kind, when=at, keep=ev.keep,
                                  reference_time=ref.created_at)
            return str(path)
        except Exception as exc:  # an alert without a picture beats no alert
            log.warning("camera %s: evidence not written: %s", cam.id, scrub(str(exc)))
            return None

    # ---- status, watchdog --------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("ok", "drifted", "unavailable", "no_reference", "disabled", "pending")}
        for rt in list(self.runtimes.values()):
            out[rt.state or "pending"] += 1
        return out

    def status_line(self) -> str:
        c = self.counts()
        parts = [f"{n} {s.replace('_', ' ')}" for s, n in c.items() if n]
        return ", ".join(parts) if parts else "no cameras"

    def watchdog_tick(self) -> None:
        """WATCHDOG=1 only while checks make progress, or when nothing is due.

        Progress is a check that completed (assessed, or failed with a
        classified error: a dead camera is reported by metrics and events, not
        by systemd killing us). No ping when the inference thread died or has
        been stuck in one batch, or when no check completed for three intervals
        plus a timeout: then systemd's watchdog restarts a daemon that only
        looks alive.
        """
        now = time.monotonic()
        due = [rt for rt in list(self.runtimes.values()) if rt.camera.enabled]
        if not due:
            notify.watchdog()
            return
        window = 3 * max(rt.camera.interval for rt in due) + max(rt.camera.timeout for rt in due) + 1
        started = self._batch_started
        if not self._inference_alive():
            log.error("the inference thread has stopped; not pinging the systemd watchdog")
        elif started is not None and now - started > window:
            log.error("one inference batch has run for %.0f s; not pinging the systemd watchdog",
                      now - started)
        elif now - self._last_progress > window:
            log.warning("no check completed in %.0f s; not pinging the systemd watchdog",
                        now - self._last_progress)
        else:
            notify.watchdog()

    def _inference_alive(self) -> bool:
        return self._inference is not None and self._inference.is_alive()

    # ---- reload, stop ------------------------------------------------------------
    def reload(self) -> bool:
        """SIGHUP: apply a new config, or keep the old one if the new one is bad."""
        notify.reloading()
        try:
            config = load_config_registered(self.config_path)
            _check_reloadable(self.config, config)
        except CamwatchError as exc:
            for line in str(exc).splitlines():
                log.error("reload rejected, the running config stays: %s", line)
            self.metrics.config_reloads.labels("error").inc()
            notify.ready(self.status_line())
            return False
        if config.settings.webhooks != self.config.settings.webhooks:
            self._restart_dispatcher(config)
        self._apply_cameras(config)
        self.config = config
        self.metrics.config_reloads.labels("ok").inc()
        log.info("config reloaded: %d camera(s)", len(config.cameras))
        notify.ready(self.status_line())
        return True

    def _restart_dispatcher(self, config: Any) -> None:
        """New webhooks take effect on reload; undelivered rows stay in the outbox either way."""
        from camwatch.service.alerts import Dispatcher, build_sinks

        old = self.dispatcher
        self.dispatcher = Dispatcher(self.events, build_sinks(config.settings.webhooks), metrics=self.metrics)
        if old is not None:
            old.stop(timeout=STOP_BUDGET_S)
        self.dispatcher.start()
        log.info("event sinks now: %s", ", ".join(self.dispatcher.sink_names) or "none")

    def stop(self) -> None:
        """Stop without waiting for hung fetches; flush what must not be lost."""
        if self._started:
            notify.stopping()
        self._stop.set()
        self._wake_main()
        try:
            self._queue.put_nowait(None)   # wakes the inference thread (a full queue: it is busy anyway)
        except queue.Full:
            pass
        deadline = time.monotonic() + STOP_BUDGET_S
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown(wait=False)
            except Exception:
                pass
        if self._inference is not None:
            self._inference.join(max(0.1, min(2.0, deadline - time.monotonic())))
        if self.dispatcher is not None:
            try:
                self.dispatcher.stop(timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                log.warning("event dispatcher did not stop cleanly: %s", scrub(str(exc)))
        for rt in list(self.runtimes.values()):
            _close_source(rt)
        for closable in (self.events, self.store, self.metrics_server):  # events flushed: synchronous=FULL
            if closable is not None:
                try:
                    closable.close()
                except Exception:
                    pass
        if self._started:
            log.info("camwatch stopped")
        if not self._wakeup_installed:     # a signal's wakeup byte must never hit a reused fd
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._wake_r = self._wake_w = -1

    def run_forever(self) -> int:
        """Block until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code."""
        interval = notify.watchdog_interval()
        if interval:
            self.scheduler.add_job(self.watchdog_tick, "interval", seconds=interval, id="watchdog",
                                   executor="control", next_run_time=datetime.now().astimezone())
        self.scheduler.add_job(lambda: notify.status(self.status_line()), "interval", seconds=10,
                               id="status", executor="control")
        self.scheduler.add_job(self.prune_events, "interval", seconds=PRUNE_EVERY_S, id="events-prune",
                               executor="control", next_run_time=datetime.now().astimezone())
        # Sleeps in select() on a pipe that signals (set_wakeup_fd) and stop() write to, instead
        # of waking every 0.5 s to look at flags (~0.4 ms CPU/s doing nothing). The timeout is
        # only a safety net.
        while not self._stop.is_set():
            if self._signalled_stop:
                log.info("%s received; stopping", signal.Signals(self._signalled_stop).name)
                self._stop.set()
                break
            if self._signalled_reload:
                self._signalled_reload = False
                self.reload()
                continue
            ready, _, _ = select.select([self._wake_r], [], [], MAIN_WAKE_S)
            if ready:
                try:
                    os.read(self._wake_r, 4096)
                except (BlockingIOError, InterruptedError):
                    pass
        return 0

    def _wake_main(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass   # a full pipe already wakes it; a closed one means no one waits

    def install_signals(self) -> None:
        # The handlers run in the main thread between two bytecodes, so they only set plain
        # attributes: taking a lock (an Event's, logging's) could deadlock on one the main
        # thread holds at that moment. set_wakeup_fd wakes run_forever's select(),
        # whichever thread the signal hit, and run_forever acts on the flags.
        def on_stop(signum: int, _frame: Any) -> None:
            self._signalled_stop = signum

        def on_hup(_signum: int, _frame: Any) -> None:
            self._signalled_reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._wakeup_installed = True


def _backoff_for(cam: Any) -> Any:
    """A dead camera is retried less often (at most every few intervals), never given up on."""
    from camwatch.sources.base import Backoff

    return Backoff(base=BACKOFF_BASE_S, cap=max(BACKOFF_CAP_FLOOR_S, BACKOFF_CAP_INTERVALS * cam.interval))


def _open_alerts(events: Any, cid: str) -> tuple[bool, bool]:
    """(drift open, camera down) as the camera's recorded events leave them.

    The runtime is in memory only; without this a restart after a drift (or a
    kill -9) would never send drift_cleared, and would alert the same drift twice.
    """
    drift = down = False
    try:
        recorded = events.list(cid, limit=1000) if events is not None else []
    except Exception as exc:  # the check loop matters more than this lookup
        log.warning("camera %s: could not read its past events: %s", cid, scrub(str(exc)))
        return False, False
    for e in recorded:
        if e.type in ("drift_started", "drift_cleared"):
            drift = e.type == "drift_started"
        elif e.type in ("camera_down", "camera_up"):
            down = e.type == "camera_down"
    return drift, down


def _close_source(rt: CameraRuntime) -> None:
    src, rt.source = rt.source, None
    if src is not None:
        try:
            src.close()
        except Exception:
            log.debug("closing camera %s's source failed", rt.camera.id, exc_info=True)


def _check_reloadable(old: Any, new: Any) -> None:
    """Settings that need a restart are refused on reload rather than silently ignored."""
    a, b = old.settings, new.settings
    fixed = [("model", a.model, b.model), ("device", a.device, b.device),
             ("state_dir", a.state_dir, b.state_dir), ("metrics", a.metrics, b.metrics),
             ("workers", a.workers, b.workers)]
    changed = [name for name, x, y in fixed if x != y]
    if changed:
        raise ConfigError(f"{new.path}: settings.{', settings.'.join(changed)}: "
                          "changed; restart camwatch for this to take effect")


def load_config_registered(path: str) -> Any:
    """Load the config and register its secrets for scrubbing before anything logs."""
    from camwatch.config import load_config

    config = load_config(path)
    for secret in getattr(config, "secrets", ()) or ():
        register_secret(secret)
    for cam in config.cameras:
        register_secret(getattr(cam, "password", None))
    return config


# -- CLI: run -------------------------------------------------------------------


def cli_run(args: argparse.Namespace) -> int:
    """``camwatch [run] --config F``: the daemon; exits 0 on SIGTERM/SIGINT.

    After an orderly stop (scheduler stopped, events and references closed,
    everything durable already on disk) the process leaves with ``os._exit``:
    a camera's reader thread may still sit inside FFmpeg, and letting the
    interpreter finalise under it aborts the process ("FATAL: exception not
    rethrown") or waits for it, which a hung camera must never cause.
    """
    daemon = Daemon(args.config)
    daemon.install_signals()
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        raise
    try:
        code = daemon.run_forever()
    finally:
        daemon.stop()
    from camwatch.cli.main import _leave

    _leave(code)


# -- CLI: check -----------------------------------------------------------------


@dataclass
class CheckRow:
    """One camera's line in ``camwatch check``."""

    id: str
    state: str                   # ok, drifted, unavailable, no_reference, disabled, unknown, error
    url: str = ""                # redacted
    similarity: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    kind: str | None = None
    reference_id: int | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "drifted": 1}.get(self.state, 2)


def run_checks(config: Any, cameras: Sequence[Any], embedder: Any, store: Any) -> list[CheckRow]:
    """Check cameras once, now: frames fetched in parallel (bounded), one batch embedded.

    The same view, threshold and assessment code as the daemon; no hysteresis
    (a one-shot answer), no calibration samples recorded, no enrolment.
    """
    from camwatch.service.enrol import fetch_frames

    frames = fetch_frames(cameras)
    rows: dict[str, CheckRow] = {}
    todo: list[tuple[Any, list, np.ndarray]] = []
    for cam in cameras:
        got = frames[cam.id]
        row = CheckRow(cam.id, "error", url=scrub(cam.redacted_url))
        rows[cam.id] = row
        if isinstance(got, BaseException):
            row.state = "unavailable"
            row.error = scrub(str(got).splitlines()[0] if str(got) else type(got).__name__)
            continue
        refs = store.for_camera(cam.id, images=False)
        if not refs:
            row.state = "no_reference"
            row.error = f"no reference; enrol it with: camwatch enroll {cam.id}"
            continue
        todo.append((cam, refs, view_of(cam, got.image)))
    if todo:
        vectors, all_stats = embed_views(embedder, [v for _, _, v in todo])
        for (cam, refs, view), vec, stats in zip(todo, vectors, all_stats):
            row = rows[cam.id]
            try:
                threshold = threshold_for(cam, config.settings, embedder, store)
                j = judge(vec, stats, refs, threshold)
            except CamwatchError as exc:
                row.error = scrub(str(exc))
                continue
            v = j.verdict
            row.state = "drifted" if v.drifted else "ok"
            row.similarity = round(float(v.similarity), 4)
            row.threshold = round(float(v.threshold), 4)
            row.threshold_source = threshold.source
            row.kind = v.kind if v.drifted else None
            row.reference_id = v.reference_id
    return [rows[c.id] for c in cameras]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def cli_check(args: argparse.Namespace) -> int:
    """``camwatch check [CAMERA...] [--json]``: exit 0 all as enrolled, 1 any drifted, 2 any error."""
    from camwatch.store.references import ReferenceStore
    from camwatch.vision.embedder import load_embedder

    config = load_config_registered(args.config)
    rows: list[CheckRow] = []
    cameras = []
    if args.cameras:
        for cid in dict.fromkeys(args.cameras):
            try:
                cam = config.camera(cid)
            except ConfigError as exc:
                rows.append(CheckRow(cid, "unknown", error=scrub(" ".join(exc.problems))))
                continue
            if cam.enabled:
                cameras.append(cam)
            else:
                rows.append(CheckRow(cid, "disabled", url=scrub(cam.redacted_url),
                                     error="disabled in the config"))
    else:
        cameras = [c for c in config.cameras if c.enabled]
        if not cameras:
            raise ConfigError(f"{config.path}: no enabled camera to check")
    if cameras:
        s = config.settings
        store = ReferenceStore(s.state_dir)
        try:
            embedder = load_embedder(str(s.model) if s.model else None, device=s.device,
                                     require_gpu=s.require_gpu)
            rows = run_checks(config, cameras, embedder, store) + rows
        finally:
            store.close()
    # disabled cameras named explicitly are reported but do not fail the check
    code = max((r.exit_code for r in rows if r.state != "disabled"), default=0)
    if args.json:
        doc = {"config": str(config.path), "exit_code": code,
               "cameras": [{k: v for k, v in r.__dict__.items()} for r in rows]}
        print(scrub(json.dumps(doc, indent=2)))
    else:
        for r in rows:
            line = (f"{r.id}  {r.state}  similarity {_fmt(r.similarity)}  threshold {_fmt(r.threshold)}"
                    + (f"  kind {r.kind}" if r.kind else ""))
            if r.error:
                line = f"{r.id}  {r.state}  {r.error}"
            print(scrub(line))
    return code
