"""A camera's check from frame to alert: fetch -> batch inference -> judge -> monitor -> actions.

Shape of the work, and why:

- A scheduled job (``run_check``, on a scheduler worker) only fetches a frame,
  bounded by the camera's timeout in sources/, and queues it. ONE inference
  thread embeds everything queued as one batch, so frames due together are
  embedded together and the model is never used from two threads at once.
- Each camera's ``Monitor`` (core/monitor.py) turns what a check saw into
  actions; ``carry_out`` performs them: metrics, durable events, evidence
  pictures, log lines. Nothing else changes a camera's state. The calls into
  one camera's monitor come from several threads (a fetch worker, the
  inference thread, the scheduler's thread telling of a skipped run), so they
  are made under the camera's lock; carrying the actions out is not.
- A run that cannot start (the previous check still running, inference
  behind, a failing camera's backoff) is told to the monitor, which counts it
  and says it once (``Monitor.skipped``).
- References are only ever made on purpose: ``auto_enroll`` enrols the first
  good frame of a camera that has no reference at all, never otherwise.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Concatenate, ParamSpec

import cv2
import numpy as np

from camwatch.config import CameraConfig, Settings
from camwatch.core.errors import CamwatchError, SourceError, StoreError
from camwatch.core.lines import with_evidence
from camwatch.core.monitor import (
    Action,
    Assessed,
    CountCheck,
    Emit,
    Monitor,
    Note,
    Progress,
    Reconnected,
    RecordCalibration,
    ReferencesChanged,
    SetState,
    Silenced,
)
from camwatch.core.secrets import scrub
from camwatch.core.types import CameraState, Frame
from camwatch.service.actions import accept_view
from camwatch.service.checks import embed_views, judge, learn_from, threshold_for, view_of
from camwatch.service.console.snapshot import LastView, ViewLog
from camwatch.service.enrol import enrol_frame
from camwatch.service.metrics import Metrics
from camwatch.service.mqtt import CameraTopics
from camwatch.sources import open_source
from camwatch.sources.protocol import FrameSource
from camwatch.store.events import SILENCED_UNTIL, Event
from camwatch.store.evidence import write_evidence
from camwatch.store.references import Reference, ReferenceStore
from camwatch.vision.embedder import Embedder

log = logging.getLogger(__name__)
P = ParamSpec("P")

#: Seconds the inference thread waits for more frames before embedding a batch.
BATCH_GATHER_S = 0.02
#: Largest batch embedded at once.
MAX_BATCH = 64
#: Frames fetched but not yet assessed, at most: a fetch worker waits (bounded by its
#: camera's timeout) while inference is behind, so 1,000 cameras due at once cannot
#: pile 1,000 decoded frames (0.7 MB each at 640x360) in memory.
MAX_QUEUED = 2 * MAX_BATCH


@dataclass
class CameraRuntime:
    """A camera as the service runs it: its config, its monitor, and the check in flight."""

    camera: CameraConfig
    monitor: Monitor
    generation: int = 0              # bumped when the camera's config changes: late results are dropped
    source: FrameSource | None = None
    busy: bool = False               # a fetch or an assessment is in flight
    expected_at: float | None = None  # unix time this run was scheduled for
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # the monitor's
    # The latest assessed view and 24 h of checks, for the console (filled only while it is enabled).
    views: ViewLog = field(default_factory=ViewLog, repr=False, compare=False)
    # (label, who, mode): an operator's "accept/add this view" (service.actions.MODES), done at the next check
    accept: tuple[str, str, str] | None = None
    disabled_by: str | None = None   # an operator disabled its checks (store.controls)

    def observe(self, call: Callable[Concatenate[Monitor, P], list[Action]], *args: P.args,
                **kwargs: P.kwargs) -> list[Action]:
        """``call(monitor, ...)``: one observation of the camera's monitor, serialised with the others
        of this camera, e.g. ``rt.observe(Monitor.fetched, now)``."""
        with self.lock:
            return call(self.monitor, *args, **kwargs)

    @property
    def state(self) -> CameraState | None:
        return self.monitor.state

    @property
    def enabled(self) -> bool:
        """Checked: enabled in the config and not disabled by an operator."""
        return self.camera.enabled and self.disabled_by is None

    def close_source(self) -> None:
        src, self.source = self.source, None
        if src is not None:
            try:
                src.close()
            except Exception:
                log.debug("closing camera %s's source failed", self.camera.id, exc_info=True)


@dataclass
class Queued:
    """A fetched frame on its way to the inference thread."""

    runtime: CameraRuntime
    generation: int
    image: np.ndarray
    captured_at: float


class Pipeline:
    """Fetches on the scheduler's workers, embeds on one inference thread, and carries out the monitors' actions.

    ``runtimes`` is the daemon's table of cameras (it adds and removes them);
    ``publish`` records an event durably; ``on_state`` is told whenever a
    camera's state changes; ``clock`` is monotonic seconds (tests pass their own);
    ``states``: the MQTT state topics, told what the metrics are told.
    """

    def __init__(self, settings: Settings, embedder: Embedder, store: ReferenceStore, metrics: Metrics,
                 runtimes: dict[str, CameraRuntime], publish: Callable[[Event], object],
                 on_state: Callable[[], object] = lambda: None, clock: Callable[[], float] = time.monotonic,
                 states: CameraTopics | None = None):
        self.settings = settings          # replaced by the daemon on reload
        self.embedder = embedder
        self.store = store
        self.metrics = metrics
        self.runtimes = runtimes
        self.publish = publish
        self.on_state = on_state
        self.clock = clock
        self.states = states
        self.last_progress = clock()      # the latest completed check, any camera
        self.batch_started: float | None = None
        self._queue: queue.Queue[Queued | None] = queue.Queue(maxsize=MAX_QUEUED)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the inference thread -------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No new checks from now; the inference thread finishes the batch in hand and ends."""
        self._stopping.set()
        try:
            self._queue.put_nowait(None)   # wakes the inference thread (a full queue: it is busy anyway)
        except queue.Full:
            pass

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- one scheduled check: fetch and queue (on a scheduler worker) ---------------------
    def run_check(self, cid: str, generation: int) -> None:
        """A scheduler job: fetch one frame (bounded) and queue it for inference."""
        rt = self.runtimes.get(cid)
        if rt is None or rt.generation != generation or self._stopping.is_set():
            return
        started = time.time()
        if rt.expected_at is not None:
            self.metrics.observe_lag(started - rt.expected_at)
        cam = rt.camera
        if cam.active_hours is not None and not cam.active_at(datetime.now()):
            self.carry_out(rt, rt.observe(Monitor.outside_hours, self.clock()))
            return
        if rt.busy:
            self.run_skipped(cid)
            return
        if not rt.monitor.due(self.clock()):
            self.carry_out(rt, rt.observe(Monitor.skipped, self.clock(), "backoff"))
            return
        rt.busy = True
        try:
            frame = self._fetch(rt)
        except SourceError as exc:
            self._fetch_failed(rt, exc)
            return
        except Exception as exc:  # a bug in a source must not kill the job for good
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
            why = f"{MAX_QUEUED} frames already wait for inference (the model is slower than the cameras' checks)"
            self.carry_out(rt, rt.observe(Monitor.skipped, self.clock(), "overload", why))

    def run_skipped(self, cid: str) -> None:
        """A run of ``cid``'s check did not start: its previous check is still running (called
        by the scheduler for a run it did not start, and by ``run_check``)."""
        rt = self.runtimes.get(cid)
        if rt is None:
            return
        cam = rt.camera
        if cam.timeout > cam.interval:
            why = (f"the previous check is still running; its timeout ({cam.timeout:g} s) is longer than "
                   f"its interval ({cam.interval:g} s), so a camera that does not answer holds it past "
                   "the next run (shorten the timeout or lengthen the interval)")
        else:
            why = "the previous check is still running (fetching, or waiting for inference)"
        self.carry_out(rt, rt.observe(Monitor.skipped, self.clock(), "busy", why))

    def _fetch(self, rt: CameraRuntime) -> Frame:
        # The source is kept across failures: it knows whether its previous attempt is
        # still hung (and refuses to start another), and a stream source reconnects itself.
        if rt.source is None:
            rt.source = open_source(rt.camera)
        return rt.source.read()

    def _fetch_failed(self, rt: CameraRuntime, exc: SourceError) -> None:
        try:
            self.metrics.frame_error(rt.camera.id, exc.reason)
            message = scrub(str(exc))
            self.carry_out(rt, rt.observe(Monitor.fetch_failed, self.clock(), exc.reason, message))
        finally:
            rt.busy = False

    # ---- inference: embed a batch, judge each view -------------------------------------
    def _inference_loop(self) -> None:
        # Blocks without a timeout: stop() queues None to wake it. A polling get woke the
        # thread twice a second, ~0.4 ms CPU/s with nothing to do (benchmarks/bench_idle.py).
        stopping = False
        while not stopping and not self._stopping.is_set():
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
            self.batch_started = self.clock()
            try:
                self._assess_batch(batch)
            except Exception as exc:  # one bad batch must not stop every later check
                log.error("assessing %d frame(s) failed: %s", len(batch),
                          scrub(f"{type(exc).__name__}: {exc}"), exc_info=True)
            finally:
                self.batch_started = None
                for queued in batch:
                    queued.runtime.busy = False

    def _assess_batch(self, batch: Sequence[Queued]) -> None:
        todo: list[tuple[Queued, list[Reference], np.ndarray]] = []
        for item in batch:
            rt = item.runtime
            if self.runtimes.get(rt.camera.id) is not rt or rt.generation != item.generation:
                continue  # removed or changed by a reload while fetching
            self.metrics.set_up(rt.camera.id, True)
            self.carry_out(rt, rt.observe(Monitor.fetched, self.clock()))
            try:
                refs = self._references(rt, item)
            except StoreError as exc:   # the store is unreachable (a shared server down): this check only
                log.error("camera %s: not checked: %s", rt.camera.id, scrub(str(exc)), extra={"camera": rt.camera.id})
                continue
            if refs:
                todo.append((item, refs, view_of(rt.camera, item.image)))
        if not todo:
            return
        t0 = time.perf_counter()
        vectors, all_stats = embed_views(self.embedder, [v for _, _, v in todo])
        self.metrics.observe_inference(time.perf_counter() - t0, len(todo))

        for (item, refs, view), vec, stats in zip(todo, vectors, all_stats):
            rt = item.runtime
            try:
                threshold = threshold_for(rt.camera, self.settings, self.embedder, self.store)
                j = judge(vec, stats, refs, threshold)
                learn_from(rt.camera.id, j, item.captured_at, rt.monitor.drift_open)
                if self.settings.console.enabled:
                    rt.views.add(LastView.of(view, item.captured_at, j.verdict.similarity,
                                             threshold.value, bool(j.verdict.drifted), j.verdict.kind))
                seen = Assessed(j.verdict, frozenset(r.id for r in refs), item.captured_at, threshold.value,
                                threshold.source, threshold.calibrating, threshold.structure_scale, stats)
                self.carry_out(rt, rt.observe(Monitor.assessed, self.clock(), seen), view, item.captured_at)
            except Exception as exc:
                log.error("camera %s: assessment failed: %s", rt.camera.id,
                          scrub(f"{type(exc).__name__}: {exc}"), exc_info=True)

    def _references(self, rt: CameraRuntime, item: Queued) -> list[Reference]:
        """The camera's references, enrolling this frame first under auto_enroll; [] (and the
        monitor told) when there is none."""
        cam = rt.camera
        if rt.accept is not None:   # asked for in the console; made here, on the model's one thread
            (label, who, mode), rt.accept = rt.accept, None
            accepted = accept_view(self.store, self.embedder, cam, item.image, label, who, mode)
            if accepted is not None:
                self.refresh_reference_metrics(cam.id)
                try:
                    self.publish(accepted)
                except Exception as exc:
                    log.error("camera %s: could not record %s event: %s", cam.id, accepted.type, scrub(str(exc)))
        refs = self.store.for_camera(cam.id, images=False)
        if not refs and cam.auto_enroll and not self.store.ever_enrolled(cam.id):
            # Only a camera that never had a reference in this store: never a re-baseline.
            try:
                done = enrol_frame(self.store, self.embedder, cam, item.image, "default")
            except CamwatchError as exc:
                log.warning("camera %s: auto_enroll refused this frame: %s", cam.id, scrub(str(exc)))
                self.carry_out(rt, rt.observe(Monitor.no_reference, self.clock(), None, enrol_refused=True))
                return []
            log.info("camera %s: no reference yet; enrolled this view as reference %d (auto_enroll)",
                     cam.id, done.reference.id, extra={"camera": cam.id})
            self.refresh_reference_metrics(cam.id)
            refs = self.store.for_camera(cam.id, images=False)
        if not refs:
            self.carry_out(rt, rt.observe(Monitor.no_reference, self.clock(), item.captured_at))
        return refs

    # ---- the monitor's actions ------------------------------------------------------------
    def carry_out(self, rt: CameraRuntime, actions: Sequence[Action], view: np.ndarray | None = None,
                  at: float | None = None) -> None:
        """Do what the monitor asked, in its order. ``view``/``at``: the judged view, for evidence.

        The monitor has already moved on when its actions are carried out, so one action the
        store refuses (a full disk while a calibration sample is written) must not cost the
        ones after it: an event behind it would be lost.
        """
        for a in actions:
            try:
                self._carry_out_one(rt, a, view, at)
            except StoreError as exc:
                log.error("camera %s: %s not carried out: %s", rt.camera.id, type(a).__name__, scrub(str(exc)),
                          extra={"camera": rt.camera.id})

    def _carry_out_one(self, rt: CameraRuntime, a: Action, view: np.ndarray | None, at: float | None) -> None:
        cid = rt.camera.id
        if isinstance(a, CountCheck):
            self.metrics.check_done(cid, a.result, a.similarity, a.threshold, at=a.at)
            if self.states is not None and a.result in ("ok", "drifted", "no_reference"):
                self.states.checked(cid, a.similarity, time.time() if a.at is None else a.at)
        elif isinstance(a, SetState):
            self.metrics.set_state(cid, a.state.value, drifted=a.drift_open)
            if self.states is not None:
                self.states.state(cid, a.state.value, rt.monitor.alert_kind if a.drift_open else None)
            self.on_state()
        elif isinstance(a, Note):
            log.log(a.level, "%s", a.text, extra={"camera": cid, **a.extra})
        elif isinstance(a, Emit):
            evidence = None
            if a.evidence_reference is not None and view is not None:
                evidence = self._write_evidence(rt.camera, a, view, at)
            if a.alert is not None and a.silenced_until is None:   # silenced: recorded, not an alert
                self.metrics.alert(cid, a.alert)
            if self.states is not None and a.type in ("drift_started", "drift_cleared"):
                self.states.kind(cid, (a.kind or "unknown") if a.type == "drift_started" else None)
                if evidence is not None:
                    self.states.evidence(cid, evidence)
            if a.line:
                log.log(a.level, "%s", with_evidence(a.line, evidence),
                        extra={"camera": cid, "event": a.type, "kind": a.kind, "similarity": a.similarity,
                               "threshold": a.threshold})
            self._emit(cid, a, evidence)
        elif isinstance(a, RecordCalibration):
            self.store.add_calibration_sample(cid, self.embedder.spec.identity, a.similarity,
                                              structure=a.structure, stats=a.stats, reference_id=a.reference_id,
                                              doubtful=a.doubtful)
        elif isinstance(a, ReferencesChanged):
            self.refresh_reference_metrics(cid)
        elif isinstance(a, Reconnected):
            self.metrics.reconnected(cid)
        elif isinstance(a, Progress):
            self.last_progress = a.at
        elif isinstance(a, Silenced):
            self.metrics.set_silenced(cid, a.until)

    def refresh_reference_metrics(self, cid: str) -> None:
        s = self.store.summary().get(cid)
        self.metrics.set_references(cid, s.count if s else 0, s.newest_at if s else None)

    def _emit(self, cid: str, e: Emit, evidence: str | None) -> None:
        """Record an event durably (outbox); delivery to log/webhooks is the dispatcher's job.

        A failure to record is logged loudly but never stops the checks.
        """
        details = dict(e.details)
        if e.silenced_until is not None:   # the dispatcher holds it back from every sink but the log
            details[SILENCED_UNTIL] = round(e.silenced_until, 3)
        try:
            self.publish(Event(camera_id=cid, type=e.type, kind=e.kind,
                               similarity=None if e.similarity is None else float(e.similarity),
                               threshold=None if e.threshold is None else float(e.threshold),
                               evidence=evidence, message=scrub(e.message), details=details))
        except Exception as exc:
            log.error("camera %s: could not record %s event: %s", cid, e.type, scrub(str(exc)))

    def _write_evidence(self, cam: CameraConfig, e: Emit, view: np.ndarray, at: float | None) -> str | None:
        """Reference and current view side by side, so a person can see what changed."""
        ev = self.settings.evidence
        if not ev.enabled or e.evidence_reference is None:
            return None
        try:
            ref = self.store.get(e.evidence_reference)
            if ref is None:
                return None
            ref_img = cv2.imdecode(np.frombuffer(ref.image_jpeg, np.uint8), cv2.IMREAD_COLOR)
            if ref_img is None:
                raise StoreError(f"reference {ref.id} has an undecodable image")
            path = write_evidence(self.settings.state_dir, cam.id, ref_img, view,
                                  similarity=None if e.similarity is None else float(e.similarity),
                                  threshold=e.threshold, kind=e.kind, when=at, keep=ev.keep,
                                  reference_time=ref.created_at)
            return str(path)
        except Exception as exc:  # an alert without a picture beats no alert
            log.warning("camera %s: evidence not written: %s", cam.id, scrub(str(exc)))
            return None
