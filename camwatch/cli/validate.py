"""``camwatch validate``: the config file, then what the daemon will need from the machine.

Settings that work but may surprise (``config_warnings``) are printed as
warnings on stderr; they do not fail the command.

Why here and not in camwatch/config/: loading the model and probing the state
folder reach into other layers (vision) and the file system; the config layer
only reads the file. Problems come out in the loader's form
(``file:line: key.path: message``) so a user fixes them the same way.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from camwatch.config import Config, load_config
from camwatch.config.reader import path_str
from camwatch.core.cluster import Cluster, member_from_hostname
from camwatch.core.errors import ConfigError, ModelError
from camwatch.core.secrets import scrub
from camwatch.service.mqtt import MqttLink, MqttSink
from camwatch.service.sinks import build_sinks
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
    if config.settings.cluster.member is not None or member_from_hostname(socket.gethostname()) is not None:
        try:
            # A member out of range (a StatefulSet with more replicas than members) fails the daemon here.
            config.cluster(socket.gethostname())
        except ConfigError as exc:
            problems.extend(exc.problems)
    msg = state_dir_problem(s.state_dir)
    if msg:
        problems.append(f"{where('settings', 'state_dir')}: {msg}")
    try:
        # The daemon's own rule for sink names (two webhooks on one host need a name: each; none is mqtt's).
        build_sinks(s.webhooks, [MqttSink(MqttLink(s.mqtt))] if s.mqtt.enabled else [])
    except ConfigError as exc:
        problems.extend(f"{config.path}: {scrub(p)}" for p in exc.problems)
    return problems


def config_warnings(config: Config) -> list[str]:
    """What works but not as a user may expect, one line each in the loader's form.

    A camera whose timeout is longer than its interval: while it does not
    answer, each check runs past the next one's time, and those runs are
    skipped (counted, and logged once by the daemon). Not an error: a slow
    camera on a short interval is a choice, but it should be a known one.
    """
    out: list[str] = []
    try:
        config.cluster(socket.gethostname())
    except ConfigError as exc:   # not a pod of the fleet (an admin's machine): the plan can still be checked
        out += [f"{p}; a daemon on this host would not start" for p in exc.problems]
    for i, cam in enumerate(config.cameras):
        if not cam.enabled or cam.timeout <= cam.interval:
            continue
        key = next((k for k in (("cameras", i, "timeout"), ("cameras", i, "interval"), ("settings", "timeout"))
                    if k in config.lines), ("cameras", i))
        line = config.lines.get(key) or 1
        where = path_str(key)
        out.append(f"{config.path}:{line}: {where}: camera {cam.id}: timeout {cam.timeout:g} s is longer than "
                   f"its interval {cam.interval:g} s; while it does not answer, its next checks are skipped "
                   '(camwatch_checks_total{result="skipped"}): shorten the timeout or lengthen the interval')
    return out


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


def cluster_lines(config: Config, owners: bool = False) -> list[str]:
    """The fleet's shape as members will see it: cameras per member, and (``owners``) each camera's members.

    Printed from the file alone, on any machine, so a plan can be checked before a pod runs it.
    """
    c = config.settings.cluster
    if c.members == 1:
        return []
    fleet = Cluster(c.members, 0, c.replication)
    ids = [cam.id for cam in config.cameras]
    owned = fleet.assignment(ids)
    counts = fleet.counts(owned)
    lines = [f"cluster: {c.members} members, each camera on {c.replication}; cameras per member: "
             + ", ".join(f"{m}: {n}" for m, n in enumerate(counts))]
    if owners:
        width = max(len(i) for i in ids)
        lines += [f"{cid:<{width}}  members {', '.join(map(str, sorted(owned[cid])))}" for cid in ids]
    return lines


def cli_validate(args: argparse.Namespace) -> int:
    """``camwatch validate --config FILE``: OK with counts, or every problem and exit 2."""
    config = load_config(args.config)
    problems = machine_problems(config)
    if problems:
        raise ConfigError(problems)
    for warning in config_warnings(config):
        print(f"camwatch: warning: {scrub(warning)}", file=sys.stderr)
    enabled = len(config.enabled_cameras)
    n = len(config.cameras)
    print(f"{args.config}: OK ({n} camera{'s' if n != 1 else ''}, {enabled} enabled)")
    for line in cluster_lines(config, getattr(args, "owners", False)):
        print(line)
    return 0
