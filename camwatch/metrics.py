"""Prometheus metrics: every metric object camwatch exports, and the HTTP endpoint.

One ``Metrics`` instance owns its own ``CollectorRegistry`` so that tests (and a
reload) can build several without "duplicated timeseries" errors. Per-camera
series are created when a camera is added, with every label value the daemon
can produce, so that ``rate()`` and ``absent()`` work from the first scrape
instead of a series appearing only after its first event.

Naming follows Prometheus conventions (``camwatch_`` prefix, base units,
``_total`` counters, ``_timestamp_seconds``); labels are bounded: camera id,
state, result, reason, kind, provider, sink. Never a URL, a pid or anything
that may hold a secret. docs/metrics.md documents every series.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import start_http_server

from .errors import ConfigError

log = logging.getLogger(__name__)

#: Camera states, the values of the ``state`` label (docs/DESIGN.md "Camera states").
STATES = ("ok", "drifted", "unavailable", "no_reference", "disabled")
#: Outcomes of one scheduled check (``result`` label of camwatch_checks_total).
RESULTS = ("ok", "drifted", "error", "no_reference", "skipped")
#: SourceError.reason values (camwatch/errors.py), the ``reason`` label of frame errors.
FRAME_ERROR_REASONS = ("connect", "timeout", "stalled", "ended", "http_status", "not_image",
                       "too_large", "decode", "auth", "unsupported", "other")
#: Alert kinds: the drift kinds decision.py names, plus a camera that went down.
ALERT_KINDS = ("moved", "covered", "blinded", "defocused", "unknown", "unavailable")

FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class MetricsServer:
    """A running /metrics endpoint; ``port`` is the bound one (useful with port 0)."""

    address: str
    port: int
    _httpd: object
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port (the daemon calls this on shutdown)."""
        self._httpd.shutdown()  # type: ignore[attr-defined]
        self._httpd.server_close()  # type: ignore[attr-defined]
        self._thread.join(timeout=5)


class Metrics:
    """Every camwatch metric, in one registry.

    Attributes are the prometheus_client objects (for anything the helper
    methods do not cover); the methods are what the daemon calls. All methods
    are thread-safe (prometheus_client's metric objects are).
    """

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            # process_* (CPU, memory, fds, start time) and python_info, for the dashboard.
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        cam = ["camera"]
        self.similarity = Gauge(
            "camwatch_camera_similarity",
            "Cosine similarity of the latest view to the camera's nearest reference (NaN before the first check)",
            cam, registry=r)
        self.threshold = Gauge(
            "camwatch_camera_threshold",
            "Similarity below which the camera's view counts as drifted (calibrated per camera)",
            cam, registry=r)
        self.drifted = Gauge(
            "camwatch_camera_drifted",
            "1 while the camera's view is confirmed drifted (after hysteresis), else 0",
            cam, registry=r)
        self.state = Gauge(
            "camwatch_camera_state",
            "1 for the camera's current state, 0 for the others",
            ["camera", "state"], registry=r)
        self.up = Gauge(
            "camwatch_camera_up",
            "1 if the latest frame fetch succeeded, else 0",
            cam, registry=r)
        self.last_check = Gauge(
            "camwatch_camera_last_check_timestamp_seconds",
            "Unix time of the camera's latest completed check (frame fetched and assessed)",
            cam, registry=r)
        self.checks = Counter(
            "camwatch_checks_total",
            "Scheduled checks by result (ok, drifted, error, no_reference, skipped)",
            ["camera", "result"], registry=r)
        self.frame_errors = Counter(
            "camwatch_frame_errors_total",
            "Failed frame fetches by reason",
            ["camera", "reason"], registry=r)
        self.reconnects = Counter(
            "camwatch_reconnects_total",
            "Times a camera's source was reopened after a failure",
            cam, registry=r)
        self.alerts = Counter(
            "camwatch_alerts_total",
            "Alerts raised (drift_started by kind, camera_down as 'unavailable')",
            ["camera", "kind"], registry=r)
        self.references = Gauge(
            "camwatch_camera_references",
            "Reference views stored for the camera",
            cam, registry=r)
        self.reference_time = Gauge(
            "camwatch_camera_reference_timestamp_seconds",
            "Unix time the camera's newest reference was enrolled (0 when none)",
            cam, registry=r)
        self.fetch_duration = Histogram(
            "camwatch_frame_fetch_duration_seconds",
            "Time to get one frame from a camera (successful fetches)",
            buckets=FETCH_BUCKETS, registry=r)
        self.inference_duration = Histogram(
            "camwatch_inference_duration_seconds",
            "Time to embed one batch of frames (preprocessing included)",
            buckets=INFERENCE_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "camwatch_inference_batch_size",
            "Frames embedded together in one inference call",
            buckets=BATCH_BUCKETS, registry=r)
        self.scheduler_lag = Histogram(
            "camwatch_scheduler_lag_seconds",
            "How late a check started compared with its scheduled time",
            buckets=LAG_BUCKETS, registry=r)
        self.provider = Gauge(
            "camwatch_inference_provider_info",
            "1 for the ONNX Runtime execution provider actually in use",
            ["provider"], registry=r)
        self.gpu_required = Gauge(
            "camwatch_gpu_required",
            "1 when settings.require_gpu or device asks for a GPU, else 0",
            registry=r)
        self.build_info = Gauge(
            "camwatch_build_info",
            "Always 1; labels give the camwatch version and the model in use",
            ["version", "model", "model_version"], registry=r)
        self.cameras_configured = Gauge(
            "camwatch_cameras",
            "Cameras in the loaded configuration (enabled or not)",
            registry=r)
        self.events_pending = Gauge(
            "camwatch_events_pending",
            "Event deliveries waiting in the outbox (all sinks)",
            registry=r)
        self.deliveries = Counter(
            "camwatch_event_deliveries_total",
            "Event delivery attempts by sink and result (ok, error)",
            ["sink", "result"], registry=r)
        self.config_reloads = Counter(
            "camwatch_config_reloads_total",
            "Configuration reloads (SIGHUP) by result (ok, error)",
            ["result"], registry=r)
        self.start_time = Gauge(
            "camwatch_start_timestamp_seconds",
            "Unix time the daemon started",
            registry=r)
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        self.start_time.set_to_current_time()
        self._cameras: set[str] = set()
        self._lock = threading.Lock()

    # ---- cameras -------------------------------------------------------------------
    def camera_added(self, camera_id: str, state: str = "unavailable") -> None:
        """Create every per-camera series now, so each exists from the first scrape."""
        with self._lock:
            self._cameras.add(camera_id)
            self.cameras_configured.set(len(self._cameras))
        self.similarity.labels(camera_id).set(math.nan)
        self.threshold.labels(camera_id).set(math.nan)
        self.drifted.labels(camera_id).set(0)
        self.up.labels(camera_id).set(0)
        self.last_check.labels(camera_id).set(0)
        self.references.labels(camera_id).set(0)
        self.reference_time.labels(camera_id).set(0)
        self.reconnects.labels(camera_id)
        for result in RESULTS:
            self.checks.labels(camera_id, result)
        for reason in FRAME_ERROR_REASONS:
            self.frame_errors.labels(camera_id, reason)
        for kind in ALERT_KINDS:
            self.alerts.labels(camera_id, kind)
        self.set_state(camera_id, state)

    def camera_removed(self, camera_id: str) -> None:
        """Drop every series of a camera removed by a reload (no stale 'down' alerts)."""
        with self._lock:
            self._cameras.discard(camera_id)
            self.cameras_configured.set(len(self._cameras))
        for metric in (self.similarity, self.threshold, self.drifted, self.up, self.last_check,
                       self.references, self.reference_time, self.reconnects):
            _remove(metric, (camera_id,))
        for result in RESULTS:
            _remove(self.checks, (camera_id, result))
        for reason in FRAME_ERROR_REASONS:
            _remove(self.frame_errors, (camera_id, reason))
        for kind in ALERT_KINDS:
            _remove(self.alerts, (camera_id, kind))
        for state in STATES:
            _remove(self.state, (camera_id, state))

    def cameras(self) -> frozenset[str]:
        """Camera ids that currently have series."""
        with self._lock:
            return frozenset(self._cameras)

    def set_state(self, camera_id: str, state: str) -> None:
        """Mark ``state`` as the camera's current one (1) and every other state 0.

        ``camwatch_camera_drifted`` follows: 1 exactly when the state is drifted.
        """
        if state not in STATES:
            raise ValueError(f"unknown camera state {state!r}; expected one of {', '.join(STATES)}")
        for s in STATES:
            self.state.labels(camera_id, s).set(1 if s == state else 0)
        self.drifted.labels(camera_id).set(1 if state == "drifted" else 0)

    def check_done(self, camera_id: str, result: str, similarity: float | None = None,
                   threshold: float | None = None, at: float | None = None) -> None:
        """Record one check: its result, and similarity/threshold when a view was assessed.

        ``at`` (unix time) marks the latest completed check for results that
        fetched and assessed a frame (ok, drifted, no_reference).
        """
        if result not in RESULTS:
            raise ValueError(f"unknown check result {result!r}; expected one of {', '.join(RESULTS)}")
        self.checks.labels(camera_id, result).inc()
        if similarity is not None:
            self.similarity.labels(camera_id).set(float(similarity))
        if threshold is not None:
            self.threshold.labels(camera_id).set(float(threshold))
        if result in ("ok", "drifted", "no_reference"):
            self.up.labels(camera_id).set(1)
            if at is None:
                self.last_check.labels(camera_id).set_to_current_time()
            else:
                self.last_check.labels(camera_id).set(at)

    def set_up(self, camera_id: str, up: bool) -> None:
        """1 when the latest fetch succeeded."""
        self.up.labels(camera_id).set(1 if up else 0)

    def frame_error(self, camera_id: str, reason: str) -> None:
        """Count one failed fetch; an unknown reason is counted as 'other' (bounded labels)."""
        if reason not in FRAME_ERROR_REASONS:
            reason = "other"
        self.frame_errors.labels(camera_id, reason).inc()
        self.up.labels(camera_id).set(0)

    def reconnected(self, camera_id: str) -> None:
        """Count one reopening of the camera's source after a failure."""
        self.reconnects.labels(camera_id).inc()

    def alert(self, camera_id: str, kind: str | None) -> None:
        """Count one alert; drift kinds from decision.py, 'unavailable' for camera_down."""
        kind = kind if kind in ALERT_KINDS else "unknown"
        self.alerts.labels(camera_id, kind).inc()

    def set_references(self, camera_id: str, count: int, newest_created_at: float | None) -> None:
        """How many references a camera has and when the newest was enrolled."""
        self.references.labels(camera_id).set(count)
        self.reference_time.labels(camera_id).set(newest_created_at or 0)

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

    def delivery(self, sink: str, ok: bool) -> None:
        """Count one delivery attempt of an event to a sink ('log', 'webhook1', ...)."""
        self.deliveries.labels(sink, "ok" if ok else "error").inc()

    def sinks_added(self, sinks: Iterable[str]) -> None:
        """Create the delivery series of each sink so rate() works from the start."""
        for sink in sinks:
            for result in ("ok", "error"):
                self.deliveries.labels(sink, result)

    # ---- exposition ----------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition, as /metrics would serve it."""
        return generate_latest(self.registry)

    def serve(self, address: str = "127.0.0.1", port: int = 9808) -> MetricsServer:
        """Serve /metrics on ``address:port`` from a daemon thread.

        Loopback by default: metrics name cameras, which is not for everyone.
        A port in use (or an address not on this host) raises ConfigError
        naming ``settings.metrics`` and ``address:port``.
        """
        try:
            httpd, thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = " (another camwatch running?)" if exc.errno == 98 else ""
            raise ConfigError(
                f"settings.metrics: cannot listen on {address}:{port}: {reason}{hint}") from None
        bound = httpd.server_address[1]
        log.info("metrics on http://%s:%d/metrics", address if ":" not in address else f"[{address}]", bound)
        return MetricsServer(address, bound, httpd, thread)


def _remove(metric: object, labels: tuple[str, ...]) -> None:
    try:
        metric.remove(*labels)  # type: ignore[attr-defined]
    except KeyError:
        pass
