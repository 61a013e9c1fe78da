"""The retained topics camwatch published that only it can take back: ``<state_dir>/mqtt-topics.json``.

Why a file: Home Assistant keeps an entity for as long as its discovery config
is retained on the broker, so a camera removed from the config must have its
configs cleared (an empty retained message), and after a restart nothing else
remembers which ones were published. Written whole to a temporary file and
renamed, so a crash leaves the old list or the new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_NAME = "mqtt-topics.json"


def read_topics(state_dir: str | os.PathLike[str]) -> set[str]:
    """The topics last written; none when the file is missing or unreadable (then nothing is cleared)."""
    try:
        doc = json.loads((Path(state_dir) / FILE_NAME).read_text())
    except (OSError, ValueError):
        return set()
    topics = doc.get("topics") if isinstance(doc, dict) else None
    return {t for t in topics if isinstance(t, str)} if isinstance(topics, list) else set()


def write_topics(state_dir: str | os.PathLike[str], topics: set[str]) -> None:
    """Replace the list, durably (fsync before the rename)."""
    path = Path(state_dir) / FILE_NAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"topics": sorted(topics)}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
