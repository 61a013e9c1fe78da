"""The config: one set of frozen pydantic models that both validate the file and are what every module reads.

Why one schema: each key, its type and its default are written here once. Adding
a key is one line (plus its documentation in configs/cameras.example.yaml);
``load.py`` finds the key's line and names it in errors by itself.

A camera's check settings (interval, timeout, threshold, confirm, recover) are
declared once, in ``CheckSettings``, which both ``Settings`` and ``CameraConfig``
extend: ``load_config`` fills a camera's unset ones from ``settings``, so every
consumer reads effective values and none re-implements the defaulting.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, model_validator

from camwatch.config.types import (
    ActiveHours,
    Address,
    AtLeastOne,
    Auth,
    CameraId,
    CameraUrl,
    Device,
    Duration,
    Flag,
    Headers,
    Member,
    Members,
    Mode,
    NonNegative,
    OptionalPath,
    OptionalText,
    Polygons,
    Port,
    QueryNames,
    StoreUrl,
    Threshold,
    TopicPrefix,
    WebhookFormat,
    WebhookUrl,
    Workers,
    choice,
    clip,
    int_in,
    optional_mqtt_url,
    parse_path,
    parse_text,
)
from camwatch.core.cluster import Cluster, member_from_hostname
from camwatch.core.errors import ConfigError

DEFAULT_STATE_DIR = "/var/lib/camwatch"
#: A key path in the file, list indexes as ints: ("cameras", 2, "interval").
LinePath = tuple[Any, ...]


def default_state_dir() -> Path:
    """systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several); else /var/lib/camwatch."""
    env = os.environ.get("STATE_DIRECTORY", "")
    return Path(env.split(":")[0] if env else DEFAULT_STATE_DIR)


def _state_dir(v: Any) -> Path:
    return default_state_dir() if v is None else parse_path(v)


def _none_to_empty(v: Any) -> Any:
    return () if v is None else v


class _Section(BaseModel):
    """A mapping in the file: unknown keys are errors, the object cannot change once loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Fields computed by load_config, not keys of the file.
    DERIVED: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _empty_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data  # "metrics:" with nothing under it

    @classmethod
    def file_keys(cls) -> tuple[str, ...]:
        """The keys the file may hold here (for did-you-mean): the section's own first, then inherited ones."""
        own = [k for k in vars(cls).get("__annotations__", {}) if k in cls.model_fields]
        ordered = own + [k for k in cls.model_fields if k not in own]
        return tuple(k for k in ordered if k not in cls.DERIVED)


class MetricsSettings(_Section):
    address: Address = "127.0.0.1"
    port: Port = 9808
    enabled: Flag = True


class ConsoleSettings(_Section):
    """The operator console (docs/console.md): its own listener, loopback by default like /metrics."""

    enabled: Flag = False
    address: Address = "127.0.0.1"
    port: Port = 9809
    #: Operators log in with it to act (accept a view as the reference); none = read-only. Best ${cred:NAME}.
    token: OptionalText = Field(default=None, repr=False)
    #: HTTPS: a PEM certificate (chain) and its private key; both or neither (relative to the config file).
    tls_cert: OptionalPath = None
    tls_key: OptionalPath = None


class CalibrationSettings(_Section):
    checks: NonNegative = 8


class EvidenceSettings(_Section):
    keep: NonNegative = 500
    enabled: Flag = True


class EventsSettings(_Section):
    #: Days a delivered event is kept (``camwatch events`` history); 0 = forever.
    keep_days: NonNegative = 90


class WebhookSettings(_Section):
    """One webhook sink. ``url`` and ``headers`` may hold tokens: never logged (repr hides them)."""

    url: WebhookUrl = Field(repr=False)
    headers: Headers = Field(default_factory=dict, repr=False)
    timeout: Duration = 10.0
    verify_tls: Flag = True
    format: WebhookFormat = "json"
    #: Its name in metrics, logs and ``camwatch events``; default: the URL's host[:port] (never path or query).
    name: Annotated[str | None, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")] = None

    @property
    def redacted_url(self) -> str:
        """Scheme and host only: a webhook's path is often its token (Slack's /services/...)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.hostname or "", "/***" if parts.path not in ("", "/") else parts.path,
                           "", ""))


class ClusterSettings(_Section):
    """Several camwatch processes sharing one cameras file, each camera checked by ``replication`` of them.

    Which members own a camera is core/cluster.py's rendezvous hashing of its id;
    ``member`` unset (or ``auto``) is the host name's -N ending, as a StatefulSet
    names its pods (docs/deploy.md, Kubernetes).
    """

    members: Members = 1
    member: Member = None
    replication: AtLeastOne = 1


class MqttSettings(_Section):
    """The MQTT sink and state topics (docs/integrations.md); off while ``url`` is unset.

    ``password`` (and a ``${ENV}`` username) are secrets: never logged, never in a payload.
    """

    #: mqtt://host[:1883] or mqtts://host[:8883] (TLS); no user:password here, use username/password.
    url: Annotated[str | None, PlainValidator(optional_mqtt_url)] = None
    username: OptionalText = None
    password: OptionalText = Field(default=None, repr=False)
    #: Unique per broker (two clients with one id throw each other off); default camwatch-<host name>.
    client_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None
    #: The first level of every topic camwatch publishes: <prefix>/<camera>/state, <prefix>/available.
    topic_prefix: TopicPrefix = "camwatch"
    qos: Annotated[int, PlainValidator(int_in(0, 2, "a QoS level: 0, 1 or 2"))] = 1
    #: Whether the per-camera state topics are retained (events never are: a retained event would be
    #: told again, as new, to every subscriber that connects).
    retain: Flag = True
    #: CA certificates (PEM) for mqtts:// when the broker's certificate is not signed by a system CA.
    ca_file: OptionalPath = None
    verify_tls: Flag = True
    keepalive: Duration = 30.0
    #: Bound on one event's publish (sent and acknowledged); past it, the outbox retries.
    timeout: Duration = 10.0
    #: Publish each drift's evidence JPEG on <prefix>/<camera>/evidence (retained).
    evidence: Flag = False
    #: Home Assistant MQTT discovery: each camera a device with its entities.
    discovery: Flag = False
    discovery_prefix: TopicPrefix = "homeassistant"
    #: Accept <prefix>/<camera>/set/silence and .../set/enroll (grant publish on them in the broker's ACL).
    commands: Flag = False

    @property
    def enabled(self) -> bool:
        return self.url is not None


class CheckSettings(_Section):
    """How each camera is checked: set once under ``settings``, overridable per camera."""

    interval: Duration = 60.0
    timeout: Duration = 10.0
    threshold: Threshold = None
    confirm: AtLeastOne = 3
    recover: AtLeastOne = 2
    #: The most pixels (width x height) a camera's image may declare in its header: larger ones are
    #: refused before anything is decoded. 8K, as vision.images.DEFAULT_MAX_PIXELS (config cannot import it).
    max_pixels: Annotated[int, PlainValidator(int_in(4096, 1 << 30, "a pixel count in 4096..1073741824"))] \
        = 7680 * 4320


#: The keys a camera takes from ``settings`` when it does not set them.
INHERITED = tuple(CheckSettings.model_fields)


class Settings(CheckSettings):
    model: OptionalPath = None
    device: Device = "auto"
    require_gpu: Flag = False
    state_dir: Annotated[Path, PlainValidator(_state_dir)] = Field(default_factory=default_state_dir)
    #: A shared PostgreSQL store (references, calibration, events, outbox); None = SQLite files in state_dir.
    store: StoreUrl = Field(default=None, repr=False)
    metrics: MetricsSettings = MetricsSettings()
    console: ConsoleSettings = ConsoleSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    workers: Workers = 8
    webhooks: Annotated[tuple[WebhookSettings, ...], BeforeValidator(_none_to_empty)] = ()
    evidence: EvidenceSettings = EvidenceSettings()
    events: EventsSettings = EventsSettings()
    cluster: ClusterSettings = ClusterSettings()
    mqtt: MqttSettings = MqttSettings()


class CameraConfig(CheckSettings):
    """One camera with effective values. ``url`` may hold a password or tokens: log ``redacted_url`` only.

    ``url`` is what is sent: a ``#fragment`` given in the file is already dropped.
    """

    DERIVED: ClassVar[frozenset[str]] = frozenset({"redacted_url"})

    id: CameraId
    name: Annotated[str, PlainValidator(parse_text)] = ""
    url: CameraUrl = Field(repr=False)
    mode: Mode = "snapshot"
    #: Where an http(s) snapshot may redirect: same-host (its own scheme and host), none, or any.
    redirects: Annotated[str, PlainValidator(choice(("same-host", "none", "any")))] = "same-host"
    #: A file camera may read a FIFO, device or socket (bounded by the byte cap); regular files only if false.
    allow_special_file: Flag = False
    roi: Polygons = ()
    mask: Polygons = ()
    active_hours: ActiveHours = None
    enabled: Flag = True
    username: OptionalText = None
    password: OptionalText = Field(default=None, repr=False)
    auth: Auth = None
    #: Query keys whose values are shown (``channel``, ``subtype``); every other query value is a secret.
    public_query: QueryNames = ()
    #: Enrol the first good frame only when the camera has no reference at all (the demo); never replaces one.
    auto_enroll: Flag = False
    #: The url with its password and every non-public query value as ***, no fragment: the only form to log.
    redacted_url: str = ""

    def active_at(self, t: datetime) -> bool:
        """Whether checks run at local time ``t``; a range may wrap midnight (22:00-06:00)."""
        if not self.active_hours:
            return True
        minute = t.hour * 60 + t.minute
        for start, end in self.active_hours:
            if start < end:
                if start <= minute < end:
                    return True
            elif minute >= start or minute < end:
                return True
        return False


class Config(BaseModel):
    """A loaded cameras file. Made by ``load_config``, which fills ``secrets`` and ``lines``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    settings: Settings
    cameras: tuple[CameraConfig, ...]
    #: Every secret value the file holds or pulls in (passwords, tokens), for scrubbing.
    secrets: frozenset[str] = Field(default_factory=frozenset, repr=False)
    #: The line of every key and list item, for later checks (validate) that want to name a line.
    lines: dict[LinePath, int] = Field(default_factory=dict, repr=False)

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera with this id, or a ConfigError naming it (with a did-you-mean)."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        ids = [c.id for c in self.cameras]
        close = difflib.get_close_matches(camera_id, ids, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(ids) if len(ids) <= 12 else ", ".join(ids[:12]) + ", ..."
        raise ConfigError(f"{self.path}: unknown camera '{clip(camera_id)}'{hint} (cameras: {known or 'none'})")

    @property
    def enabled_cameras(self) -> tuple[CameraConfig, ...]:
        return tuple(c for c in self.cameras if c.enabled)

    def cluster(self, hostname: str) -> Cluster:
        """This process's place in the fleet; ``hostname`` gives the member when the file does not.

        A ConfigError naming ``settings.cluster.member`` when neither tells it: a
        member guessed wrong would leave its cameras unchecked without a word.
        """
        c = self.settings.cluster
        if c.members == 1:
            return Cluster()
        member = c.member if c.member is not None else member_from_hostname(hostname)
        line = self.lines.get(("settings", "cluster", "member")) or self.lines.get(("settings", "cluster")) or 1
        where = f"{self.path}:{line}: settings.cluster.member"
        if member is None:
            raise ConfigError(f"{where}: not set, and the host name '{clip(hostname, 60)}' does not end in -N "
                              "(a StatefulSet pod's ordinal, as camwatch-2): set member: 0.."
                              f"{c.members - 1}, or member: ${{POD_NAME}}")
        if member >= c.members:
            source = "" if c.member is not None else f" (from the host name '{clip(hostname, 60)}')"
            raise ConfigError(f"{where}: {member}{source} is not below members: {c.members} "
                              "(members are numbered 0..members-1; raise members with the StatefulSet's replicas)")
        return Cluster(c.members, member, c.replication)


#: The model of each mapping in the file, by its key path (list items as ``int``).
SECTIONS: dict[LinePath, type[_Section]] = {
    ("settings",): Settings, ("settings", "metrics"): MetricsSettings, ("settings", "console"): ConsoleSettings,
    ("settings", "calibration"): CalibrationSettings, ("settings", "evidence"): EvidenceSettings,
    ("settings", "events"): EventsSettings, ("settings", "cluster"): ClusterSettings,
    ("settings", "mqtt"): MqttSettings,
    ("settings", "webhooks", int): WebhookSettings, ("cameras", int): CameraConfig,
}
TOP_KEYS = ("settings", "cameras")


def keys_at(path: Iterable[Any]) -> tuple[str, ...]:
    """The keys the file may hold at ``path`` (for did-you-mean); () where it is not a mapping we know."""
    shape = tuple(int if isinstance(p, int) else p for p in path)
    if not shape:
        return TOP_KEYS
    model = SECTIONS.get(shape)
    return model.file_keys() if model else ()
