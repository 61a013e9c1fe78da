"""Home Assistant MQTT discovery: each camera a device, with entities on camwatch's retained topics.

Each camera appears as a device with a ``binary_sensor`` (problem: on while the
view has drifted), sensors for its state, similarity, drift kind and last
check, and (with ``evidence: true``) a ``camera`` entity showing the latest
evidence picture; every entity is tied to ``<prefix>/available``, so a dead
daemon shows its entities unavailable. Configs are retained under
``<discovery_prefix>/<component>/<node>/<camera>_<object>/config`` (node: the
topic prefix, so two camwatch instances on one broker do not collide).

Everything published here, and each camera's retained state topics, is listed
in ``<state_dir>/mqtt-topics.json`` (store/topics.py): a camera removed from the
config, even while camwatch was stopped, has its topics cleared (an empty
retained message, which Home Assistant reads as "remove this entity"), and
turning discovery off takes every entity away.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from camwatch import __version__
from camwatch.config import CameraConfig
from camwatch.core.secrets import scrub
from camwatch.core.types import KINDS, STATES
from camwatch.service.mqtt import CAMERA_LEAVES, NO_KIND, OFFLINE, ONLINE, MqttLink
from camwatch.store.topics import read_topics, write_topics

log = logging.getLogger(__name__)


def node_id(prefix: str) -> str:
    """The topic prefix as a discovery node id and unique_id stem ([a-zA-Z0-9_-] only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", prefix)


def camera_configs(cam: CameraConfig, prefix: str, discovery_prefix: str,
                   evidence: bool) -> dict[str, dict[str, Any]]:
    """Discovery config topic -> payload for each of ``cam``'s entities."""
    node = node_id(prefix)
    base = f"{prefix}/{cam.id}"
    device = {"identifiers": [f"{node}_{cam.id}"], "name": cam.name or cam.id, "manufacturer": "camwatch",
              "model": "camera integrity watch", "sw_version": __version__}
    common = {"device": device, "origin": {"name": "camwatch", "sw_version": __version__},
              "availability": [{"topic": f"{prefix}/available", "payload_available": ONLINE.decode(),
                                "payload_not_available": OFFLINE.decode()}],
              "qos": 1}
    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("binary_sensor", "drift", {"name": "Drift", "device_class": "problem", "state_topic": f"{base}/state",
                                    "value_template": "{{ 'ON' if value == 'drifted' else 'OFF' }}"}),
        ("sensor", "state", {"name": "State", "device_class": "enum", "options": list(STATES),
                             "state_topic": f"{base}/state"}),
        ("sensor", "similarity", {"name": "Similarity", "state_topic": f"{base}/similarity",
                                  "state_class": "measurement", "suggested_display_precision": 3}),
        ("sensor", "kind", {"name": "Drift kind", "device_class": "enum",
                            "options": [NO_KIND, *KINDS, "unknown"], "state_topic": f"{base}/kind"}),
        ("sensor", "last_check", {"name": "Last check", "device_class": "timestamp",
                                  "state_topic": f"{base}/last_check", "entity_category": "diagnostic"}),
    ]
    if evidence:
        entities.append(("camera", "evidence", {"name": "Evidence", "topic": f"{base}/evidence"}))
    out = {}
    for component, obj, fields in entities:
        uid = f"{node}_{cam.id}_{obj}"
        out[f"{discovery_prefix}/{component}/{node}/{cam.id}_{obj}/config"] = {**fields, "unique_id": uid,
                                                                              **common}
    return out


class Discovery:
    """Keeps the broker's retained discovery configs and camera topics in step with the config."""

    def __init__(self, link: MqttLink, state_dir: Path):
        self.link = link
        self.state_dir = state_dir

    def sync(self, cameras: Iterable[CameraConfig]) -> None:
        """Publish every camera's configs (when discovery is on) and clear what no camera owns any more."""
        s = self.link.settings
        cams = list(cameras)
        wanted: dict[str, bytes] = {}
        if s.discovery:
            for cam in cams:
                for topic, doc in camera_configs(cam, s.topic_prefix, s.discovery_prefix, s.evidence).items():
                    wanted[topic] = json.dumps(doc).encode()
        owned = set(wanted) | {self.link.topic(c.id, leaf) for c in cams for leaf in CAMERA_LEAVES}
        old = read_topics(self.state_dir)
        for topic in sorted(old - owned):
            self.link.retain(topic, b"")
        for topic, payload in wanted.items():
            self.link.retain(topic, payload)
        if owned != old:
            try:
                write_topics(self.state_dir, owned)
            except OSError as exc:
                log.warning("MQTT: could not record the published topics in %s: %s", self.state_dir,
                            scrub(str(exc)))
        gone = {t.split("/")[-2] for t in old - owned if t.endswith("/config")}
        if gone:
            log.info("MQTT discovery: removed %d entit%s of cameras no longer configured", len(gone),
                     "y" if len(gone) == 1 else "ies")
