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

The per-camera series (58 per camera) are not prometheus_client metric objects:
at 1,000 cameras prometheus_client spent 0.7-0.8 s of CPU per render building,
validating and formatting 58,000 samples, 1.3 s per answer to Prometheus
(OpenMetrics, gzip 9); now 0.02 s and 0.05 s (benchmarks/bench_metrics.py).
``_CameraSeries`` keeps each camera's values with their exposition lines,
updated on write; a scrape joins those lines. The same values reach
prometheus_client through a custom collector (``_CameraCollector``), so
``registry.collect()``, ``get_sample_value`` and ``generate_latest`` still see
every series exactly as Gauge and Counter objects exposed them.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client.metrics
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, gzip_accepted, make_wsgi_app
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from camwatch.core.errors import ConfigError

log = logging.getLogger(__name__)

#: Camera states, the values of the ``state`` label (docs/DESIGN.md "Camera states").
STATES = ("ok", "drifted", "unavailable", "no_reference", "disabled")
#: Outcomes of one scheduled check (``result`` label of camwatch_checks_total).
RESULTS = ("ok", "drifted", "error", "no_reference", "skipped")
#: SourceError.reason values (camwatch/core/errors.py), the ``reason`` label of frame errors.
FRAME_ERROR_REASONS = ("connect", "timeout", "stalled", "ended", "http_status", "not_image",
                       "too_large", "decode", "auth", "unsupported", "other")
#: Alert kinds: the drift kinds decision.py names, plus a camera that went down.
ALERT_KINDS = ("moved", "covered", "blinded", "defocused", "unknown", "unavailable")

FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


#: gzip level of /metrics answers: prometheus_client's 9 costs 0.17 s of CPU for the 4.4 MiB
#: of 1,000 cameras, level 1 costs 0.014 s for a 20 % larger answer (285 KiB instead of 237 KiB).
GZIP_LEVEL = 1


@dataclass(frozen=True)
class _Family:
    """One per-camera metric family: a series per camera and per value of ``label``.

    ``name`` is the family name as prometheus_client gives it (a counter's
    without ``_total``); ``initial`` is each series' value when a camera is added.
    """

    key: str
    name: str
    kind: str
    doc: str
    label: str = ""
    values: tuple[str, ...] = ("",)
    initial: float = 0.0

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.kind == "counter" else self.name

    def header(self, name: str, kind: str) -> str:
        """HELP and TYPE lines exactly as generate_latest writes them."""
        doc = self.doc.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


#: Every per-camera family, in exposition order (the order of the Gauge and Counter objects
#: they replace, so /metrics reads as before).
_FAMILIES = (
    _Family("similarity", "camwatch_camera_similarity", "gauge",
            "Cosine similarity of the latest view to the camera's nearest reference (NaN before the first check)",
            initial=math.nan),
    _Family("threshold", "camwatch_camera_threshold", "gauge",
            "Similarity below which the camera's latest view counts as drifted (calibrated per camera, "
            "moved by the structure cue)",
            initial=math.nan),
    _Family("drifted", "camwatch_camera_drifted", "gauge",
            "1 while the camera's view is confirmed drifted (after hysteresis), else 0"),
    _Family("state", "camwatch_camera_state", "gauge",
            "1 for the camera's current state, 0 for the others", "state", STATES),
    _Family("up", "camwatch_camera_up", "gauge", "1 if the latest frame fetch succeeded, else 0"),
    _Family("last_check", "camwatch_camera_last_check_timestamp_seconds", "gauge",
            "Unix time of the camera's latest completed check (frame fetched and assessed)"),
    _Family("checks", "camwatch_checks", "counter",
            "Scheduled checks by result (ok, drifted, error, no_reference, skipped)", "result", RESULTS),
    _Family("frame_errors", "camwatch_frame_errors", "counter",
            "Failed frame fetches by reason", "reason", FRAME_ERROR_REASONS),
    _Family("reconnects", "camwatch_reconnects", "counter",
            "Times a camera's source was reopened after a failure"),
    _Family("alerts", "camwatch_alerts", "counter",
            "Alerts raised (drift_started by kind, camera_down as 'unavailable')", "kind", ALERT_KINDS),
    _Family("references", "camwatch_camera_references", "gauge", "Reference views stored for the camera"),
    _Family("reference_time", "camwatch_camera_reference_timestamp_seconds", "gauge",
            "Unix time the camera's newest reference was enrolled (0 when none)"),
)
#: Each family's slots [start, end) in a camera's flat list of series.
_RANGES: list[tuple[int, int]] = []
#: (family key, label value) -> slot; label value "" for families with the camera label only.
_SLOT: dict[tuple[str, str], int] = {}
for _f in _FAMILIES:
    _RANGES.append((len(_SLOT), len(_SLOT) + len(_f.values)))
    for _v in _f.values:
        _SLOT[_f.key, _v] = len(_SLOT)
_HEADERS = [f.header(f.sample_name, f.kind) for f in _FAMILIES]
_CREATED_HEADERS = [f.header(f.name + "_created", "gauge") for f in _FAMILIES]


def _created_enabled() -> bool:
    """Whether counters expose ``_created`` (off with PROMETHEUS_DISABLE_CREATED_SERIES), as Counter does."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


def _escape(value: str) -> str:
    """A label value escaped for the text format (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class _CameraSeries:
    """One camera's series: values, and the exposition line of each kept current with it.

    A write formats one line (a few per check); a scrape only joins lines, instead of
    building, validating and formatting 58 samples per camera. Not locked itself:
    ``_CameraCollector`` serialises every access.
    """

    __slots__ = ("camera_id", "values", "prefixes", "lines", "created", "created_lines")

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.created = time.time()
        cam = _escape(camera_id)
        self.values = [f.initial for f in _FAMILIES for _ in f.values]
        self.prefixes = [_prefix(f.sample_name, cam, f.label, v) for f in _FAMILIES for v in f.values]
        self.lines = [p + floatToGoString(x) + "\n" for p, x in zip(self.prefixes, self.values)]
        created = floatToGoString(self.created) + "\n"
        self.created_lines = [_prefix(f.name + "_created", cam, f.label, v) + created if f.kind == "counter"
                              else "" for f in _FAMILIES for v in f.values]

    def set(self, slot: int, value: float) -> None:
        self.values[slot] = value
        self.lines[slot] = self.prefixes[slot] + floatToGoString(value) + "\n"

    def reset_gauges(self) -> None:
        """Back to a new camera's gauge values; counters keep counting (as Gauge/Counter did)."""
        for f, (start, end) in zip(_FAMILIES, _RANGES):
            if f.kind == "gauge":
                for slot in range(start, end):
                    self.set(slot, f.initial)


def _prefix(name: str, camera: str, label: str, value: str) -> str:
    """``name{labels} `` with labels sorted by name, as generate_latest orders them."""
    pairs = sorted([("camera", camera)] + ([(label, _escape(value))] if label else []))
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "} "


class _CameraCollector(Collector):
    """Every camera's series, under one lock, for prometheus_client and for our renderer.

    Writes to a camera that is not (or no longer) added are dropped: a check that
    finishes after its camera was removed by a reload must not bring back its series.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, _CameraSeries] = {}

    def add(self, camera_id: str, *updates: tuple[str, str, float]) -> int:
        """Create the camera's series, or reset its gauges if it exists, and set ``updates``
        in the same step (a scrape never sees a camera without a state); returns the camera count.
        """
        with self._lock:
            series = self._series.get(camera_id)
            if series is None:
                series = self._series[camera_id] = _CameraSeries(camera_id)
            else:
                series.reset_gauges()
            for key, label, value in updates:
                series.set(_SLOT[key, label], float(value))
            return len(self._series)

    def remove(self, camera_id: str) -> int:
        with self._lock:
            self._series.pop(camera_id, None)
            return len(self._series)

    def camera_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._series)

    def update(self, camera_id: str, *updates: tuple[str, str, float],
               count: tuple[str, str] | None = None) -> None:
        """Set (family key, label value, value) series of one camera and count one event
        (``count``: family key, label value) at once: a scrape sees all of it or none.
        """
        with self._lock:
            series = self._series.get(camera_id)
            if series is None:
                return
            for key, label, value in updates:
                series.set(_SLOT[key, label], float(value))
            if count is not None:
                slot = _SLOT[count]
                series.set(slot, series.values[slot] + 1.0)

    def render(self) -> str:
        """The per-camera families in text format 0.0.4, as generate_latest writes collect()'s samples.

        The lines are gathered under the lock (a few ms at 1,000 cameras), so one scrape
        never shows half of an update, e.g. two states at 1.
        """
        created = _created_enabled()
        parts: list[str] = []
        with self._lock:
            cameras = list(self._series.values())
            for f, (start, end), header, created_header in zip(_FAMILIES, _RANGES, _HEADERS, _CREATED_HEADERS):
                parts.append(header)
                for series in cameras:
                    parts += series.lines[start:end]
                if f.kind == "counter" and created and cameras:
                    parts.append(created_header)
                    for series in cameras:
                        parts += series.created_lines[start:end]
        return "".join(parts)

    def describe(self) -> Iterable[Metric]:
        """The family names, so the registry checks them for clashes and ``name[]`` filters work."""
        return [_metric_family(f) for f in _FAMILIES]

    def collect(self) -> Iterable[Metric]:
        """The same series as Gauge/Counter objects would give (used by generate_latest, get_sample_value)."""
        created = _created_enabled()
        with self._lock:
            snapshot = [(s.camera_id, list(s.values), s.created) for s in self._series.values()]
        for f, (start, end) in zip(_FAMILIES, _RANGES):
            family = _metric_family(f)
            for camera_id, values, at in snapshot:
                for label, value in zip(f.values, values[start:end]):
                    labels = [camera_id, label] if f.label else [camera_id]
                    if f.kind == "counter":
                        family.add_metric(labels, value, created=at if created else None)
                    else:
                        family.add_metric(labels, value)
            yield family


def _state_updates(state: str) -> list[tuple[str, str, float]]:
    """The series that say a camera is in ``state``: its state gauges and drifted."""
    if state not in STATES:
        raise ValueError(f"unknown camera state {state!r}; expected one of {', '.join(STATES)}")
    return [("drifted", "", state == "drifted")] + [("state", s, s == state) for s in STATES]


def _metric_family(f: _Family) -> GaugeMetricFamily | CounterMetricFamily:
    labels = ["camera", f.label] if f.label else ["camera"]
    if f.kind == "counter":
        return CounterMetricFamily(f.name, f.doc, labels=labels)
    return GaugeMetricFamily(f.name, f.doc, labels=labels)


class _Group(Collector):
    """Several collectors as one, for generate_latest."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    _wake: tuple[int, int] | None = None
    _closing = False

    def serve_until_closed(self) -> None:
        """serve_forever without its 0.5 s poll: sleeps in select() until a request or close.

        Why: the poll woke the thread twice a second for nothing, ~0.3 ms CPU/s, which
        at one check a second is 1% of a check (benchmarks/bench_idle.py).
        """
        assert self._wake is not None, "open_wake() first"
        with selectors.DefaultSelector() as sel:
            sel.register(self, selectors.EVENT_READ)
            sel.register(self._wake[0], selectors.EVENT_READ)
            while not self._closing:
                for key, _ in sel.select():
                    if key.fileobj is self and not self._closing:
                        self._handle_request_noblock()

    def open_wake(self) -> None:
        """The pipe close_loop writes to; made before the thread starts, so no close is missed."""
        self._wake = os.pipe()

    def close_loop(self, thread: threading.Thread, timeout: float) -> None:
        self._closing = True
        if self._wake is not None:
            os.write(self._wake[1], b"\0")
        thread.join(timeout)
        if self._wake is not None and not thread.is_alive():
            for fd in self._wake:
                os.close(fd)
            self._wake = None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """No log line per scrape."""


@dataclass
class MetricsServer:
    """A running /metrics endpoint; ``port`` is the bound one (useful with port 0)."""

    address: str
    port: int
    _httpd: object
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port (the daemon calls this on shutdown)."""
        self._httpd.close_loop(self._thread, timeout=5)  # type: ignore[attr-defined]
        self._httpd.server_close()  # type: ignore[attr-defined]


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
        self._camera_series = _CameraCollector()
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
        self.deliveries = Counter(
            "camwatch_event_deliveries_total",
            "Event delivery attempts by sink and result (ok, error)",
            ["sink", "result"], registry=None)
        self.config_reloads = Counter(
            "camwatch_config_reloads_total",
            "Configuration reloads (SIGHUP) by result (ok, error)",
            ["result"], registry=None)
        self.start_time = Gauge(
            "camwatch_start_timestamp_seconds",
            "Unix time the daemon started",
            registry=None)
        self._tail: list[Collector] = [
            self.fetch_duration, self.inference_duration, self.batch_size, self.scheduler_lag,
            self.provider, self.gpu_required, self.build_info, self.cameras_configured,
            self.events_pending, self.deliveries, self.config_reloads, self.start_time]
        for collector in [*self._head, self._camera_series, *self._tail]:
            self.registry.register(collector)
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        self.start_time.set_to_current_time()
        self._lock = threading.Lock()  # camera count and series change together

    # ---- cameras -------------------------------------------------------------------
    def camera_added(self, camera_id: str, state: str = "unavailable") -> None:
        """Create every per-camera series now, so each exists from the first scrape.

        A camera added again (changed by a reload) gets its gauges back to a new
        camera's values; its counters keep counting.
        """
        updates = _state_updates(state)
        with self._lock:
            self.cameras_configured.set(self._camera_series.add(camera_id, *updates))

    def camera_removed(self, camera_id: str) -> None:
        """Drop every series of a camera removed by a reload (no stale 'down' alerts)."""
        with self._lock:
            self.cameras_configured.set(self._camera_series.remove(camera_id))

    def cameras(self) -> frozenset[str]:
        """Camera ids that currently have series."""
        return self._camera_series.camera_ids()

    def set_state(self, camera_id: str, state: str) -> None:
        """Mark ``state`` as the camera's current one (1) and every other state 0.

        ``camwatch_camera_drifted`` follows: 1 exactly when the state is drifted.
        """
        self._camera_series.update(camera_id, *_state_updates(state))

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
        """Count one alert; drift kinds from decision.py, 'unavailable' for camera_down."""
        kind = kind if kind in ALERT_KINDS else "unknown"
        self._camera_series.update(camera_id, count=("alerts", kind))

    def set_references(self, camera_id: str, count: int, newest_created_at: float | None) -> None:
        """How many references a camera has and when the newest was enrolled."""
        self._camera_series.update(camera_id, ("references", "", count),
                                ("reference_time", "", newest_created_at or 0))

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
        at 1,000 cameras. Anything else (OPTIONS, other methods, favicon, ``name[]``
        filters) goes to prometheus_client's own application.
        """
        fallback = make_wsgi_app(self.registry)

        def app(environ: dict, start_response: Callable) -> list[bytes]:
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
        """Serve /metrics on ``address:port`` from a daemon thread.

        Loopback by default: metrics name cameras, which is not for everyone.
        A port in use (or an address not on this host) raises ConfigError
        naming ``settings.metrics`` and ``address:port``.
        """
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            server_class = type("_Server", (_ThreadingServer,), {"address_family": family})
            httpd = make_server(sockaddr[0], port, self.wsgi_app(), server_class, handler_class=_QuietHandler)
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
