"""``camwatch validate``: the config file, then what the daemon will need from the machine.

Why here and not in camwatch/config/: loading the model and probing the state
folder reach into other layers (vision) and the file system; the config layer
only reads the file. Problems come out in the loader's form
(``file:line: key.path: message``) so a user fixes them the same way.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from camwatch.config import Config, load_config
from camwatch.core.errors import ConfigError, ModelError
from camwatch.core.secrets import scrub
from camwatch.vision.embedder import load_embedder


def machine_problems(config: Config) -> list[str]:
    """Checks beyond the file itself: the model loads, the state folder can be written."""
    problems: list[str] = []
    s = config.settings

    def where(*key: str) -> str:
        line = config.lines.get(tuple(key)) or config.lines.get((key[0],)) or 1
        return f"{config.path}:{line}: {'.'.join(key)}"

    try:
        load_embedder(str(s.model) if s.model else None, device=s.device, require_gpu=s.require_gpu)
    except ModelError as exc:
        problems.append(f"{where('settings', 'model')}: {scrub(str(exc))}")
    msg = state_dir_problem(s.state_dir)
    if msg:
        problems.append(f"{where('settings', 'state_dir')}: {msg}")
    return problems


def state_dir_problem(state_dir: Path) -> str | None:
    """Why the state folder could not be created or written, without creating anything."""
    probe = state_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{state_dir}: {probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == state_dir else f"cannot be created ({probe} is not writable)"
        return f"{state_dir}: {what} by this user (systemd: StateDirectory=camwatch)"
    return None


def cli_validate(args: argparse.Namespace) -> int:
    """``camwatch validate --config FILE``: OK with counts, or every problem and exit 2."""
    config = load_config(args.config)
    problems = machine_problems(config)
    if problems:
        raise ConfigError(problems)
    enabled = len(config.enabled_cameras)
    n = len(config.cameras)
    print(f"{args.config}: OK ({n} camera{'s' if n != 1 else ''}, {enabled} enabled)")
    return 0
