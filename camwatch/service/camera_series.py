"""Every camera's Prometheus series, kept as ready exposition lines.

The per-camera series (58 per camera) are not prometheus_client metric objects:
at 1,000 cameras prometheus_client spent 0.7-0.8 s of CPU per render building,
validating and formatting 58,000 samples, 1.3 s per answer to Prometheus
(OpenMetrics, gzip 9); now 0.02 s and 0.05 s (benchmarks/bench_metrics.py).
``_CameraSeries`` keeps each camera's values with their exposition lines,
updated on write; a scrape joins those lines. The same values reach
prometheus_client through a custom collector (``CameraCollector``), so
``registry.collect()``, ``get_sample_value`` and ``generate_latest`` still see
every series exactly as Gauge and Counter objects exposed them.

Series are created when a camera is added, with every label value the daemon
can produce (core.types' STATES, RESULTS, ALERT_KINDS), so ``rate()`` and
``absent()`` work from the first scrape. ``Metrics`` (metrics.py) is the only user.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import prometheus_client.metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from camwatch.core.types import ALERT_KINDS, RESULTS, STATES

#: SourceError.reason values (camwatch/core/errors.py), the ``reason`` label of frame errors.
FRAME_ERROR_REASONS = ("connect", "timeout", "stalled", "ended", "http_status", "not_image",
                       "too_large", "decode", "auth", "unsupported", "other")


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
            "The camera's similarity threshold (configured, calibrated or the model's); the structure cue "
            "moves the one each view is held to, shown in DEBUG lines and event details",
            initial=math.nan),
    _Family("drifted", "camwatch_camera_drifted", "gauge",
            "1 while a drift alert of the camera is open (confirmed drifted, not yet cleared by good checks), "
            "also while the camera is unavailable; else 0"),
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
    _Family("silenced_until", "camwatch_camera_silenced_until_timestamp_seconds", "gauge",
            "Unix time an operator silenced the camera's alerts until (still checked; events recorded, "
            "not delivered); 0 when not silenced"),
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
    ``CameraCollector`` serialises every access.
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


class CameraCollector(Collector):
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
                    if isinstance(family, CounterMetricFamily):
                        family.add_metric(labels, value, created=at if created else None)
                    else:
                        family.add_metric(labels, value)
            yield family


def state_updates(state: str, drifted: bool | None = None) -> list[tuple[str, str, float]]:
    """The series that say a camera is in ``state``: its state gauges, and drifted.

    ``drifted`` is whether a drift alert is open (core.monitor's ``drift_open``),
    which a camera that went unavailable or lost its references still owes: it
    is not the state. When it is not given, only the states that settle it set
    it (drifted: 1; ok and disabled: 0); unavailable and no_reference leave it.
    """
    if state not in STATES:
        raise ValueError(f"unknown camera state {state!r}; expected one of {', '.join(STATES)}")
    if drifted is None and state in ("drifted", "ok", "disabled"):
        drifted = state == "drifted"
    flag = [] if drifted is None else [("drifted", "", float(drifted))]
    return flag + [("state", s, float(s == state)) for s in STATES]


def _metric_family(f: _Family) -> GaugeMetricFamily | CounterMetricFamily:
    labels = ["camera", f.label] if f.label else ["camera"]
    if f.kind == "counter":
        return CounterMetricFamily(f.name, f.doc, labels=labels)
    return GaugeMetricFamily(f.name, f.doc, labels=labels)
