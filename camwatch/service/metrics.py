"""Prometheus metrics: every metric object camwatch exports, and the HTTP endpoint.

One ``Metrics`` instance owns its own ``CollectorRegistry`` so that tests (and a
reload) can build several without "duplicated timeseries" errors. Per-camera
series (camera_series.py) are created when a camera is added, with every label
value the daemon can produce, so that ``rate()`` and ``absent()`` work from the
first scrape instead of a series appearing only after its first event.

Naming follows Prometheus conventions (``camwatch_`` prefix, base units,
``_total`` counters, ``_timestamp_seconds``); labels are bounded: camera id,
state, result, reason, kind, provider, sink. Never a URL, a pid or anything
that may hold a secret. docs/metrics.md documents every series.
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, gzip_accepted, make_wsgi_app
from prometheus_client.registry import Collector

from camwatch.core.errors import ConfigError
from camwatch.core.types import ALERT_KINDS, RESULTS
from camwatch.service.camera_series import FRAME_ERROR_REASONS, CameraCollector, state_updates
from camwatch.service.listener import PooledServer, QuietHandler

log = logging.getLogger(__name__)

FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


#: gzip level of /metrics answers: prometheus_client's 9 costs 0.17 s of CPU for the 4.4 MiB
#: of 1,000 cameras, level 1 costs 0.014 s for a 20 % larger answer (285 KiB instead of 237 KiB).
GZIP_LEVEL = 1

class _Group(Collector):
    """Several collectors as one, for generate_latest."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


@dataclass
class MetricsServer:
    """A running /metrics endpoint; ``port`` is the bound one (useful with port 0)."""

    address: str
    port: int
    _httpd: PooledServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port (the daemon calls this on shutdown)."""
        self._httpd.close_loop(self._thread, timeout=5)
        self._httpd.server_close()


class Metrics:
    """Every camwatch metric, in one registry.

    Daemon-wide attributes are the prometheus_client objects (for anything the
    helper methods do not cover); per-camera series are reached only through the
    methods, which are what the daemon calls. All methods are thread-safe.
    """

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # render() joins these around the camera series; a registry from the caller may hold
        # collectors of its own, so render() then asks generate_latest for all of it.
        self._own_registry = registry is None
        self._head: list[Collector] = []
        if process:
            # process_* (CPU, memory, fds, start time) and python_info, for the dashboard.
            self._head += [ProcessCollector(registry=None), PlatformCollector(registry=None)]
        self._camera_series = CameraCollector()
        self.fetch_duration = Histogram(
            "camwatch_frame_fetch_duration_seconds",
            "Time to get one frame from a camera (successful fetches)",
            buckets=FETCH_BUCKETS, registry=None)
        self.inference_duration = Histogram(
            "camwatch_inference_duration_seconds",
            "Time to embed one batch of frames (preprocessing included)",
            buckets=INFERENCE_BUCKETS, registry=None)
        self.batch_size = Histogram(
            "camwatch_inference_batch_size",
            "Frames embedded together in one inference call",
            buckets=BATCH_BUCKETS, registry=None)
        self.scheduler_lag = Histogram(
            "camwatch_scheduler_lag_seconds",
            "How late a check started compared with its scheduled time",
            buckets=LAG_BUCKETS, registry=None)
        self.provider = Gauge(
            "camwatch_inference_provider_info",
            "1 for the ONNX Runtime execution provider actually in use",
            ["provider"], registry=None)
        self.gpu_required = Gauge(
            "camwatch_gpu_required",
            "1 when settings.require_gpu or device asks for a GPU, else 0",
            registry=None)
        self.build_info = Gauge(
            "camwatch_build_info",
            "Always 1; labels give the camwatch version and the model in use",
            ["version", "model", "model_version"], registry=None)
        self.cameras_configured = Gauge(
            "camwatch_cameras",
            "Cameras in the loaded configuration (enabled or not)",
            registry=None)
        self.events_pending = Gauge(
            "camwatch_events_pending",
            "Event deliveries waiting in the outbox (all sinks)",
            registry=None)
        self.events_unwritten = Gauge(
            "camwatch_events_unwritten",
            "Events held in memory because the events store refused them (disk full, I/O error)",
            registry=None)
        self.events_dropped = Counter(
            "camwatch_events_dropped",
            "Events lost because the events store failed and the memory hold was full",
            registry=None)
        self.store_ok = Gauge(
            "camwatch_store_ok",
            "1 while the store takes writes, 0 from a failed write until what it owes is written",
            ["store"], registry=None)
        self.deliveries = Counter(
            "camwatch_event_deliveries_total",
            "Event delivery attempts by sink and result (ok, error)",
            ["sink", "result"], registry=None)
        self.config_reloads = Counter(
            "camwatch_config_reloads_total",
            "Configuration reloads (SIGHUP) by result (ok, error)",
            ["result"], registry=None)
        self.cluster_member = Gauge(
            "camwatch_cluster_member_info",
            "Always 1; the member label is this process's number in the fleet (settings.cluster)",
            ["member"], registry=None)
        self.cluster_members = Gauge(
            "camwatch_cluster_members",
            "Members the fleet is configured with (settings.cluster.members; 1 = no fleet)",
            registry=None)
        self.cluster_replication = Gauge(
            "camwatch_cluster_replication",
            "Members that check each camera (settings.cluster.replication)",
            registry=None)
        self.cluster_cameras = Gauge(
            "camwatch_cluster_cameras",
            "Cameras in the configuration for the whole fleet, enabled or not (this member has series for its own)",
            registry=None)
        self.cluster_member_cameras = Gauge(
            "camwatch_cluster_member_cameras",
            "Cameras the configuration gives each member, enabled or not; every member exports every member's "
            "count, so a member that is down is still counted by the others",
            ["member"], registry=None)
        self.start_time = Gauge(
            "camwatch_start_timestamp_seconds",
            "Unix time the daemon started",
            registry=None)
        self._tail: list[Collector] = [
            self.fetch_duration, self.inference_duration, self.batch_size, self.scheduler_lag,
            self.provider, self.gpu_required, self.build_info, self.cameras_configured,
            self.events_pending, self.events_unwritten, self.events_dropped, self.store_ok,
            self.deliveries, self.config_reloads, self.cluster_member, self.cluster_members,
            self.cluster_replication, self.cluster_cameras, self.cluster_member_cameras, self.start_time]
        for collector in [*self._head, self._camera_series, *self._tail]:
            self.registry.register(collector)
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        self.store_ok.labels("events").set(1)
        self.start_time.set_to_current_time()
        self._lock = threading.Lock()  # camera count and series change together
        self._live: Callable[[], tuple[bool, str]] = lambda: (True, "ok")
        self._ready: Callable[[], bool] = lambda: False
        self.mqtt_connected: Gauge | None = None

    # ---- cameras -------------------------------------------------------------------
    def camera_added(self, camera_id: str, state: str = "unavailable", drifted: bool = False) -> None:
        """Create every per-camera series now, so each exists from the first scrape.

        A camera added again (changed by a reload) gets its gauges back to a new
        camera's values; its counters keep counting.
        """
        updates = state_updates(state, drifted)
        with self._lock:
            self.cameras_configured.set(self._camera_series.add(camera_id, *updates))

    def camera_removed(self, camera_id: str) -> None:
        """Drop every series of a camera removed by a reload (no stale 'down' alerts)."""
        with self._lock:
            self.cameras_configured.set(self._camera_series.remove(camera_id))

    def cameras(self) -> frozenset[str]:
        """Camera ids that currently have series."""
        return self._camera_series.camera_ids()

    def set_state(self, camera_id: str, state: str, drifted: bool | None = None) -> None:
        """Mark ``state`` as the camera's current one (1) and every other state 0.

        ``camwatch_camera_drifted``: ``drifted`` (a drift alert is open, whatever the
        state); not given, as camera_series.state_updates settles it.
        """
        self._camera_series.update(camera_id, *state_updates(state, drifted))

    def check_done(self, camera_id: str, result: str, similarity: float | None = None,
                   threshold: float | None = None, at: float | None = None) -> None:
        """Record one check: its result, and similarity/threshold when a view was assessed.

        ``at`` (unix time) marks the latest completed check for results that
        fetched and assessed a frame (ok, drifted, no_reference).
        """
        if result not in RESULTS:
            raise ValueError(f"unknown check result {result!r}; expected one of {', '.join(RESULTS)}")
        updates: list[tuple[str, str, float]] = []
        if similarity is not None:
            updates.append(("similarity", "", similarity))
        if threshold is not None:
            updates.append(("threshold", "", threshold))
        if result in ("ok", "drifted", "no_reference"):
            updates += [("up", "", 1), ("last_check", "", time.time() if at is None else at)]
        self._camera_series.update(camera_id, *updates, count=("checks", result))

    def set_up(self, camera_id: str, up: bool) -> None:
        """1 when the latest fetch succeeded."""
        self._camera_series.update(camera_id, ("up", "", up))

    def frame_error(self, camera_id: str, reason: str) -> None:
        """Count one failed fetch; an unknown reason is counted as 'other' (bounded labels)."""
        if reason not in FRAME_ERROR_REASONS:
            reason = "other"
        self._camera_series.update(camera_id, ("up", "", 0), count=("frame_errors", reason))

    def reconnected(self, camera_id: str) -> None:
        """Count one reopening of the camera's source after a failure."""
        self._camera_series.update(camera_id, count=("reconnects", ""))

    def alert(self, camera_id: str, kind: str | None) -> None:
        """Count one alert: a drift's kind (core.types.KINDS), 'unavailable' for camera_down."""
        kind = kind if kind in ALERT_KINDS else "unknown"
        self._camera_series.update(camera_id, count=("alerts", kind))

    def set_references(self, camera_id: str, count: int, newest_created_at: float | None) -> None:
        """How many references a camera has and when the newest was enrolled."""
        self._camera_series.update(camera_id, ("references", "", count),
                                ("reference_time", "", newest_created_at or 0))

    def set_silenced(self, camera_id: str, until: float | None) -> None:
        """Until when an operator silenced the camera's alerts (None: not silenced)."""
        self._camera_series.update(camera_id, ("silenced_until", "", until or 0))

    # ---- daemon-wide ---------------------------------------------------------------
    def observe_fetch(self, seconds: float) -> None:
        self.fetch_duration.observe(seconds)

    def observe_inference(self, seconds: float, batch_size: int) -> None:
        self.inference_duration.observe(seconds)
        self.batch_size.observe(batch_size)

    def observe_lag(self, seconds: float) -> None:
        """Actual start minus scheduled start of a check (negative values count as 0)."""
        self.scheduler_lag.observe(max(0.0, seconds))

    def set_provider(self, provider: str, gpu_required: bool = False) -> None:
        """The execution provider in use (read back from the session), as an info gauge."""
        self.provider.clear()
        self.provider.labels(provider).set(1)
        self.gpu_required.set(1 if gpu_required else 0)

    def set_build_info(self, version: str, model: str, model_version: str) -> None:
        """camwatch version, model name and model version; replaces the previous ones."""
        self.build_info.clear()
        self.build_info.labels(version, model, model_version).set(1)

    def set_events_pending(self, count: int) -> None:
        self.events_pending.set(count)

    def set_events_unwritten(self, count: int) -> None:
        self.events_unwritten.set(count)

    def event_dropped(self) -> None:
        """Count one event lost to a failing store (the memory hold was full)."""
        self.events_dropped.inc()

    def set_store_ok(self, store: str, ok: bool) -> None:
        """Whether ``store`` ('events') takes writes; 0 stays until everything it owes is written."""
        self.store_ok.labels(store).set(1 if ok else 0)

    def delivery(self, sink: str, ok: bool) -> None:
        """Count one delivery attempt of an event to a sink ('log', a webhook's name)."""
        self.deliveries.labels(sink, "ok" if ok else "error").inc()

    def set_mqtt_connected(self, connected: bool) -> None:
        """1 while connected to the MQTT broker; the series exists only where MQTT is configured."""
        with self._lock:
            if self.mqtt_connected is None:
                self.mqtt_connected = Gauge("camwatch_mqtt_connected",
                                            "1 while connected to the MQTT broker (settings.mqtt), else 0",
                                            registry=None)
                self.registry.register(self.mqtt_connected)
                self._tail.append(self.mqtt_connected)
        self.mqtt_connected.set(1 if connected else 0)

    def sinks_added(self, sinks: Iterable[str]) -> None:
        """Create the delivery series of each sink so rate() works from the start."""
        for sink in sinks:
            for result in ("ok", "error"):
                self.deliveries.labels(sink, result)

    def set_cluster(self, member: int, replication: int, member_cameras: list[int], cameras: int) -> None:
        """This member's number and the fleet's shape; ``member_cameras[m]``: the cameras member m owns."""
        self.cluster_member.clear()
        self.cluster_member.labels(str(member)).set(1)
        self.cluster_members.set(len(member_cameras))
        self.cluster_replication.set(replication)
        self.cluster_cameras.set(cameras)
        self.cluster_member_cameras.clear()
        for m, n in enumerate(member_cameras):
            self.cluster_member_cameras.labels(str(m)).set(n)

    # ---- probes ----------------------------------------------------------------------
    def set_probes(self, live: Callable[[], tuple[bool, str]], ready: Callable[[], bool]) -> None:
        """What /healthz and /readyz answer: ``live()`` (checks make progress, why not); ``ready()`` (start-up done)."""
        self._live = live
        self._ready = ready

    def _probe(self, path: str) -> tuple[str, bytes]:
        if path == "/readyz":
            ok, why = (True, "ready") if self._ready() else (False, "starting or stopping")
        else:
            try:
                ok, why = self._live()
            except Exception as exc:  # a probe must answer, whatever the daemon's state
                ok, why = False, f"health check failed: {type(exc).__name__}"
        return ("200 OK" if ok else "503 Service Unavailable"), (why + "\n").encode()

    # ---- exposition ----------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition (format 0.0.4), as /metrics serves it.

        Byte for byte what ``generate_latest(self.registry)`` gives, at a fraction of
        its cost: the camera series are joined from their kept lines, only the few
        daemon-wide and process metrics go through generate_latest.
        """
        if not self._own_registry:
            return generate_latest(self.registry)
        return (generate_latest(_Group(self._head))
                + self._camera_series.render().encode()
                + generate_latest(_Group(self._tail)))

    def wsgi_app(self) -> Callable:
        """The /metrics WSGI application: render() for every GET, gzipped when accepted.

        It answers text format 0.0.4 whatever the Accept header asks: Prometheus
        takes it, and prometheus_client's OpenMetrics answer cost 1.1-1.3 s of CPU
        at 1,000 cameras. ``/healthz`` and ``/readyz`` are the liveness and readiness probes
        (``set_probes``): 200 or 503 with one line saying why. Anything else (OPTIONS, other
        methods, favicon, ``name[]`` filters) goes to prometheus_client's own application.
        """
        fallback = make_wsgi_app(self.registry)

        def app(environ: dict, start_response: Callable) -> list[bytes]:
            if environ.get("PATH_INFO") in ("/healthz", "/readyz") and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
                status, text = self._probe(environ["PATH_INFO"])
                start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                        ("Content-Length", str(len(text))), ("Cache-Control", "no-store")])
                return [text] if environ["REQUEST_METHOD"] == "GET" else []
            if (environ["REQUEST_METHOD"] != "GET" or environ.get("PATH_INFO") == "/favicon.ico"
                    or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))):
                return fallback(environ, start_response)
            body = self.render()
            headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
            if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
                body = gzip.compress(body, compresslevel=GZIP_LEVEL)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]

        return app

    def serve(self, address: str = "127.0.0.1", port: int = 9808) -> MetricsServer:
        """Serve /metrics on ``address:port``: one accept thread and a fixed pool (service/listener.py).

        Loopback by default: metrics name cameras, which is not for everyone.
        A port in use (or an address not on this host) raises ConfigError
        naming ``settings.metrics`` and ``address:port``.
        """
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            server_class = type("_Server", (PooledServer,), {"address_family": family})
            httpd = cast(PooledServer, make_server(str(sockaddr[0]), port, self.wsgi_app(), server_class,
                                                   handler_class=QuietHandler))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = " (another camwatch running?)" if exc.errno == 98 else ""
            raise ConfigError(
                f"settings.metrics: cannot listen on {address}:{port}: {reason}{hint}") from None
        httpd.open_wake()
        thread = threading.Thread(target=httpd.serve_until_closed, name="metrics-http", daemon=True)
        thread.start()
        bound = httpd.server_address[1]
        log.info("metrics on http://%s:%d/metrics", address if ":" not in address else f"[{address}]", bound)
        return MetricsServer(address, bound, httpd, thread)
