"""The config layer: the cameras file read into frozen objects every other layer consumes.

- ``schema.py``: the pydantic models that ARE the config (each key and default written once)
- ``types.py``: the value types (durations, hours, polygons, ids...), each with its own parser
- ``reader.py``: YAML with the line of every key, ``${ENV}`` / ``${cred:NAME}`` substitution
- ``load.py``: ``load_config``, every problem at once as ``file:line: key.path: value: message``

It imports only camwatch.core: checks that need the model or the state folder
belong to ``camwatch validate`` (camwatch/cli/validate.py).
"""

from camwatch.config.load import load_config
from camwatch.config.schema import (
    DEFAULT_STATE_DIR,
    CalibrationSettings,
    CameraConfig,
    CheckSettings,
    ClusterSettings,
    Config,
    EventsSettings,
    EvidenceSettings,
    MetricsSettings,
    MqttSettings,
    Settings,
    WebhookSettings,
)
from camwatch.config.types import parse_active_hours, parse_duration, parse_polygons
from camwatch.core.secrets import redact_url

__all__ = [
    "DEFAULT_STATE_DIR", "CalibrationSettings", "CameraConfig", "CheckSettings", "ClusterSettings", "Config",
    "EventsSettings", "EvidenceSettings", "MetricsSettings", "MqttSettings", "Settings", "WebhookSettings",
    "load_config",
    "parse_active_hours", "parse_duration", "parse_polygons", "redact_url",
]
