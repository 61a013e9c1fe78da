"""The daemon's composition root: build the parts, start and stop them, reload, signals, watchdog.

The work itself lives elsewhere: when checks run is scheduler.py's, what a
check does (fetch, embed, judge, alert) is pipeline.py's, and what a camera's
state is and which alerts it owes is core/monitor.py's. This module wires
them to the config, the model, the stores, the metrics and systemd, and
keeps them in step with the config on SIGHUP.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

from camwatch import __version__
from camwatch.config import CameraConfig, Config, load_config
from camwatch.core.cluster import Cluster
from camwatch.core.errors import CamwatchError, ConfigError
from camwatch.core.monitor import Monitor, OpenAlerts, Policy, open_alerts
from camwatch.core.secrets import scrub
from camwatch.core.types import STATES, CameraState
from camwatch.service import commands, controls, notify
from camwatch.service.alerts import Backlog, Dispatcher
from camwatch.service.console.data import Sources
from camwatch.service.console.server import ConsoleServer
from camwatch.service.discovery import Discovery
from camwatch.service.enrol import reembed
from camwatch.service.metrics import Metrics, MetricsServer
from camwatch.service.mqtt import CameraTopics, MqttLink, MqttSink
from camwatch.service.pipeline import CameraRuntime, Pipeline
from camwatch.service.scheduler import Scheduler
from camwatch.service.sinks import Sink, build_sinks
from camwatch.store.events import Event, EventStore
from camwatch.store.references import ReferenceStore
from camwatch.vision.embedder import Embedder, load_embedder

log = logging.getLogger(__name__)

#: How often delivered events past settings.events.keep_days are forgotten.
PRUNE_EVERY_S = 6 * 3600
#: How often systemd's status line is refreshed.
STATUS_EVERY_S = 10
#: Hard bound on shutdown work (flush of events, closing sources).
STOP_BUDGET_S = 6.0
#: How often the operators' settings in the store (silenced, disabled: the CLI's) are looked at: with
#: the status line, so an idle daemon wakes no more often than before (the console's apply at once).
CONTROLS_EVERY_S = STATUS_EVERY_S
#: run_forever wakes at least this often even if no signal or stop() came (a safety net only).
MAIN_WAKE_S = 30.0


class Daemon:
    """Load everything, schedule checks, run until stopped; ``reload`` on SIGHUP.

    ``clock``: monotonic seconds for retries, progress and the watchdog (tests pass their own).
    """

    def __init__(self, config_path: str, clock: Callable[[], float] = time.monotonic):
        self.config_path = config_path
        self.clock = clock
        self.config: Config | None = None
        self.embedder: Embedder | None = None
        self.store: ReferenceStore | None = None
        self.events: EventStore | None = None
        self.dispatcher: Dispatcher | None = None
        # What the events store owes while it fails; outlives a reload's new dispatcher.
        self.backlog = Backlog(on_change=lambda: notify.status(self.status_line()))
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        self.console: ConsoleServer | None = None
        self.scheduler: Scheduler | None = None
        self.pipeline: Pipeline | None = None
        self.runtimes: dict[str, CameraRuntime] = {}
        self._controls = controls.Applier()       # operators' settings in the store, carried out
        #: This process's place in the fleet (settings.cluster): it checks only the cameras it owns.
        self.cluster = Cluster()
        self.mqtt: MqttLink | None = None          # settings.mqtt: the broker link, its sink, topics, discovery
        self.mqtt_sinks: list[Sink] = []
        self.topics: CameraTopics | None = None
        self.discovery: Discovery | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._signalled_stop = 0            # the signal number, set by install_signals' handlers
        self._signalled_reload = False
        self._wakeup_installed = False
        self._wake_r, self._wake_w = os.pipe()       # wakes run_forever (see there)
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._started = False

    # ---- start-up --------------------------------------------------------------
    def start(self) -> None:
        """Everything up to READY=1: config, model warm, store, events, metrics, schedule."""
        self.config = config = load_config(self.config_path)
        self.cluster = config.cluster(socket.gethostname())   # before the model: a wrong member fails fast
        s = config.settings
        self.embedder = embedder = load_embedder(str(s.model) if s.model else None, device=s.device,
                                                 require_gpu=s.require_gpu)
        embedder.warmup()
        spec = embedder.spec
        log.info("model %s %s on %s (threshold %.3f)", spec.name, spec.version, embedder.provider, spec.threshold)
        self.store = ReferenceStore(s.state_dir, url=s.store)
        redone = reembed(self.store, embedder)
        if redone:
            log.info("refreshed %d reference(s) made with another model or statistics route", redone)
        self.metrics = metrics = Metrics()
        self.events = EventStore(s.state_dir, url=s.store)
        if s.mqtt.enabled:
            self._start_mqtt(config, metrics)
        self.dispatcher = Dispatcher(self.events, build_sinks(s.webhooks, self.mqtt_sinks), metrics=metrics,
                                     backlog=self.backlog)
        self.dispatcher.start()
        metrics.set_build_info(__version__, str(spec.name), str(spec.version))
        metrics.set_provider(embedder.provider, bool(s.require_gpu))
        metrics.set_probes(self.health, lambda: self._started and not self._stop.is_set())
        if s.metrics.enabled:
            self.metrics_server = metrics.serve(s.metrics.address, s.metrics.port)
        self.pipeline = Pipeline(s, embedder, self.store, metrics, self.runtimes, self._publish,
                                 on_state=lambda: notify.status(self.status_line()), clock=self.clock,
                                 states=self.topics)
        self.scheduler = Scheduler(s.workers, self.pipeline.run_check, self._note_expected, self.pipeline.run_skipped)
        self.scheduler.start()
        self._apply_cameras(config, first=True)
        self.apply_controls()
        self.pipeline.start()
        if s.console.enabled:
            self.console = ConsoleServer(s.console, Sources(lambda: self.config, lambda: self.runtimes,
                                                            lambda: self.store, lambda: self.events,
                                                            publish=self._publish, apply=self.apply_controls))
        self._started = True
        notify.ready(self.status_line())
        log.info("camwatch started: %d camera(s), %d enabled",
                 len(config.cameras), sum(1 for c in config.cameras if c.enabled))
        if self.cluster.members > 1:
            log.info("cluster: member %d of %d, each camera on %d member(s): this member checks %d of the "
                     "%d camera(s)", self.cluster.member, self.cluster.members, self.cluster.replication,
                     len(self.runtimes), len(config.cameras))

    def _publish(self, event: Event) -> None:
        # Through whichever dispatcher is current: a reload may have replaced it. An alert of a
        # silenced camera is already marked so by its monitor (only the log tells it).
        if self.dispatcher is not None:
            self.dispatcher.publish(event)

    def _start_mqtt(self, config: Config, metrics: Metrics) -> None:
        """The broker link, connecting in the background: a broker down at start-up delays nothing."""
        s = config.settings
        link = self.mqtt = MqttLink(s.mqtt)
        self.mqtt_sinks = [MqttSink(link)]
        self.topics = CameraTopics(link)
        self.discovery = Discovery(link, s.state_dir)
        link.on_change = metrics.set_mqtt_connected
        metrics.set_mqtt_connected(False)
        link.on_connected.append(lambda: self.dispatcher.resume(MqttSink.name) if self.dispatcher else None)
        if s.mqtt.commands:
            link.on_command = lambda cid, name, payload: commands.handle(cid, name, payload, self.runtimes,
                                                                         self.store, self.act)
        link.start()
        log.info("MQTT: publishing to %s under %s/ (discovery %s, commands %s)", link.broker, link.prefix,
                 "on" if s.mqtt.discovery else "off", "on" if s.mqtt.commands else "off")

    def act(self, event: Event) -> None:
        """Record an operator's action done through ``service.actions`` (the console, MQTT commands) and
        carry out the settings it changed at once."""
        self._publish(event)
        self.apply_controls()

    def apply_controls(self) -> None:
        """Carry out what operators set in the store (service/actions.py: the console, its API, the CLI,
        MQTT commands): service/controls.py."""
        if self.pipeline is not None and self.scheduler is not None and self.store is not None:
            self._controls.apply(self.store, self.runtimes, self.pipeline, self.scheduler, self._lock)

    def _note_expected(self, camera_id: str, scheduled: float) -> None:
        rt = self.runtimes.get(camera_id)
        if rt is not None:
            rt.expected_at = scheduled

    def prune_events(self) -> int:
        """Forget delivered events older than ``settings.events.keep_days`` (never a pending one)."""
        days = self.config.settings.events.keep_days if self.config is not None else 0
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

    # ---- cameras ---------------------------------------------------------------
    def _apply_cameras(self, config: Config, first: bool = False) -> None:
        """Make the running cameras match ``config``: add, remove, replace changed ones.

        An unchanged camera keeps its runtime (monitor, backoff, state); a
        changed one starts afresh but still owes the alerts it left open (its
        references and calibration live in the store and are kept either way).
        """
        assert self.store is not None and self.metrics is not None and self.scheduler is not None
        cluster = self.cluster
        owners = cluster.assignment(c.id for c in config.cameras)
        self.metrics.set_cluster(cluster.member, cluster.replication, cluster.counts(owners), len(config.cameras))
        wanted = {c.id: c for c in config.cameras if cluster.member in owners[c.id]}
        rows = controls.rows(self.store)
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
                policy = _policy(cam)
                disabled_by = rows[cid].disabled_by if cid in rows else None
                enabled = cam.enabled and disabled_by is None
                if old is not None:
                    monitor = old.monitor.carried_over(policy, enabled)
                    monitor.silenced_until = None     # told again by apply_controls: its metric is new
                else:   # alerts left open by a previous run (stopped, or killed) are still owed
                    monitor = Monitor(cid, policy, enabled, _open_alerts(self.events, cid))
                rt = CameraRuntime(cam, monitor, generation=(old.generation + 1) if old else 0,
                                   disabled_by=disabled_by)
                self.runtimes[cid] = rt
                refs = self.store.summary().get(cid)
                shown = (CameraState.DISABLED if not enabled else
                         CameraState.NO_REFERENCE if refs is None and not cam.auto_enroll else CameraState.UNAVAILABLE)
                self.metrics.camera_added(cid, shown.value, drifted=monitor.drift_open and enabled)
                if self.topics is not None:
                    self.topics.state(cid, shown.value, monitor.alert_kind if monitor.drift_open else None)
                self.metrics.set_references(cid, refs.count if refs else 0, refs.newest_at if refs else None)
                if not enabled:
                    continue
                if not first and old is None:
                    log.info("camera %s added", cid)
                rt.expected_at = self.scheduler.add_camera(cam, rt.generation)
        if self.discovery is not None:   # entities of removed cameras go, new ones come
            self.discovery.sync(config.cameras)

    def _drop_camera(self, cid: str, keep_metrics: bool = False) -> None:
        assert self.scheduler is not None and self.metrics is not None
        rt = self.runtimes.pop(cid, None)
        self.scheduler.remove_camera(cid)
        if rt is not None:
            rt.close_source()
        if not keep_metrics:
            self.metrics.camera_removed(cid)

    # ---- status, watchdog --------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (*STATES, "pending")}
        for rt in list(self.runtimes.values()):
            out[rt.state.value if rt.state else "pending"] += 1
        return out

    def status_line(self) -> str:
        """systemd's STATUS=: the cameras by state, led by a failing events store when there is one."""
        c = self.counts()
        parts = [f"{n} {s.replace('_', ' ')}" for s, n in c.items() if n]
        line = ", ".join(parts) if parts else "no cameras"
        failing = self.backlog.describe()
        return f"{failing}; {line}" if failing else line

    def _status_tick(self) -> None:
        self.apply_controls()
        notify.status(self.status_line())

    def health(self) -> tuple[bool, str]:
        """Whether checks make progress, and why not: the systemd watchdog's and /healthz's one rule.

        Progress is a check that completed (assessed, or failed with a
        classified error: a dead camera is reported by metrics and events, not
        by killing the daemon). Not healthy when the inference thread died or
        has been stuck in one batch, or when no check completed for three
        intervals plus a timeout: then systemd's watchdog (or Kubernetes'
        liveness probe) restarts a daemon that only looks alive. A member that
        owns no enabled camera is healthy. A failing events store is not a
        reason: a restart would not free the disk and would lose the events
        held in memory; it shows in the status line, the log and
        ``camwatch_store_ok`` instead.
        """
        now = self.clock()
        due = [rt for rt in list(self.runtimes.values()) if rt.enabled]
        if not due:
            return True, "ok: no camera to check"
        window = 3 * max(rt.camera.interval for rt in due) + max(rt.camera.timeout for rt in due) + 1
        p = self.pipeline
        started = p.batch_started if p is not None else None
        last = p.last_progress if p is not None else now
        if p is None or not p.alive():
            return False, "the inference thread has stopped"
        if started is not None and now - started > window:
            return False, f"one inference batch has run for {now - started:.0f} s"
        if now - last > window:
            return False, f"no check completed in {now - last:.0f} s"
        return True, "ok"

    def watchdog_tick(self) -> None:
        """WATCHDOG=1 only while ``health()`` says checks make progress (or nothing is due)."""
        ok, why = self.health()
        if ok:
            notify.watchdog()
        else:
            log.log(logging.WARNING if why.startswith("no check") else logging.ERROR,
                    "%s; not pinging the systemd watchdog", why)

    # ---- reload, stop ------------------------------------------------------------
    def reload(self) -> bool:
        """SIGHUP: apply a new config, or keep the old one if the new one is bad."""
        assert self.config is not None and self.metrics is not None and self.pipeline is not None
        notify.reloading()
        try:
            config = load_config(self.config_path)
            _check_reloadable(self.config, config)
            cluster = config.cluster(socket.gethostname())
            sinks = build_sinks(config.settings.webhooks, self.mqtt_sinks) \
                if config.settings.webhooks != self.config.settings.webhooks else None
        except CamwatchError as exc:
            for line in str(exc).splitlines():
                log.error("reload rejected, the running config stays: %s", line)
            self.metrics.config_reloads.labels("error").inc()
            notify.ready(self.status_line())
            return False
        if sinks is not None:
            self._restart_dispatcher(sinks)
        if cluster != self.cluster:
            log.info("cluster now: member %d of %d, each camera on %d member(s)", cluster.member,
                     cluster.members, cluster.replication)
        self.cluster = cluster
        self._apply_cameras(config)
        self.config = config
        self.apply_controls()
        self.pipeline.settings = config.settings
        self.metrics.config_reloads.labels("ok").inc()
        log.info("config reloaded: %d camera(s)", len(config.cameras))
        notify.ready(self.status_line())
        return True

    def _restart_dispatcher(self, sinks: list[Sink]) -> None:
        """New webhooks take effect on reload; undelivered rows stay in the outbox either way, and
        events the store could not take yet stay in the shared backlog."""
        assert self.events is not None
        old = self.dispatcher
        self.dispatcher = Dispatcher(self.events, sinks, metrics=self.metrics, backlog=self.backlog)
        if old is not None:
            old.stop(timeout=STOP_BUDGET_S, flush=False)
        self.dispatcher.start()
        log.info("event sinks now: %s", ", ".join(self.dispatcher.sink_names) or "none")

    def stop(self) -> None:
        """Stop without waiting for hung fetches; flush what must not be lost."""
        if self._started:
            notify.stopping()
        self._stop.set()
        self._wake_main()
        if self.pipeline is not None:
            self.pipeline.stop()
        deadline = time.monotonic() + STOP_BUDGET_S
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown()
            except Exception:
                pass
        if self.pipeline is not None:
            self.pipeline.join(max(0.1, min(2.0, deadline - time.monotonic())))
        if self.dispatcher is not None:
            try:
                self.dispatcher.stop(timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                log.warning("event dispatcher did not stop cleanly: %s", scrub(str(exc)))
        lost = list(self.backlog.events)
        if lost:
            log.error("%d event(s) the events store never took are lost at exit: %s", len(lost),
                      "; ".join(f"{e.type} of camera {e.camera_id} at {e.iso_time}" for e in lost[:10])
                      + (" ..." if len(lost) > 10 else ""))
        if self.mqtt is not None:   # after the dispatcher: what it could deliver is delivered
            try:
                self.mqtt.close()
            except Exception as exc:
                log.warning("MQTT link did not close cleanly: %s", scrub(str(exc)))
        for rt in list(self.runtimes.values()):
            rt.close_source()
        # events flushed: synchronous=FULL; the console first, as it reads the stores
        for closable in (self.console, self.events, self.store, self.metrics_server):
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
        assert self.scheduler is not None
        interval = notify.watchdog_interval()
        if interval:
            self.scheduler.every(interval, self.watchdog_tick, "watchdog", now=True)
        self.scheduler.every(STATUS_EVERY_S, self._status_tick, "status")
        self.scheduler.every(PRUNE_EVERY_S, self.prune_events, "events-prune", now=True)
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
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self._signalled_stop = signum

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._signalled_reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._wakeup_installed = True


def _policy(cam: CameraConfig) -> Policy:
    return Policy(confirm=cam.confirm, recover=cam.recover, interval=cam.interval)


def _open_alerts(events: EventStore | None, cid: str) -> OpenAlerts:
    """The alerts a camera's recorded events leave open (core.monitor.open_alerts)."""
    try:
        recorded = events.list(cid, limit=1000) if events is not None else []
    except Exception as exc:  # the check loop matters more than this lookup
        log.warning("camera %s: could not read its past events: %s", cid, scrub(str(exc)))
        return OpenAlerts()
    return open_alerts(recorded)


def _check_reloadable(old: Config, new: Config) -> None:
    """Settings that need a restart are refused on reload rather than silently ignored."""
    a, b = old.settings, new.settings
    fixed = [("model", a.model, b.model), ("device", a.device, b.device),
             ("state_dir", a.state_dir, b.state_dir), ("store", a.store, b.store), ("metrics", a.metrics, b.metrics),
             ("console", a.console, b.console), ("mqtt", a.mqtt, b.mqtt),
             ("workers", a.workers, b.workers)]
    changed = [name for name, x, y in fixed if x != y]
    if changed:
        raise ConfigError(f"{new.path}: settings.{', settings.'.join(changed)}: "
                          "changed; restart camwatch for this to take effect")
