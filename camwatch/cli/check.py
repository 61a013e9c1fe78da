"""``camwatch check [CAMERA...] [--json]``: every camera once, now; the exit code says how it went.

0: every camera checked is as enrolled; 1: one or more drifted; 2: any error
(unreachable, no reference, unknown id). Cron jobs and scripts read the code;
people read the rows. The checking itself is service.checks.run_checks, the
daemon's own code.
"""

from __future__ import annotations

import argparse
import json

from camwatch.config import CameraConfig, Config, load_config
from camwatch.core.cluster import Cluster
from camwatch.core.errors import ConfigError
from camwatch.core.secrets import scrub
from camwatch.service.checks import CheckRow, run_checks
from camwatch.store.references import ReferenceStore
from camwatch.vision.embedder import load_embedder


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _row_line(r: CheckRow) -> str:
    if r.error:
        return f"{r.id}  {r.state}  {r.error}"
    return (f"{r.id}  {r.state}  similarity {_fmt(r.similarity)}  threshold {_fmt(r.threshold)}"
            + (f"  kind {r.kind}" if r.kind else "") + (f"  ({r.why})" if r.why else ""))


def _members(config: Config) -> dict[str, list[int]]:
    """In a fleet, the members whose daemons check each camera (none outside a fleet)."""
    c = config.settings.cluster
    if c.members == 1:
        return {}
    fleet = Cluster(c.members, 0, c.replication)
    return {cid: sorted(owned) for cid, owned in fleet.assignment(cam.id for cam in config.cameras).items()}


def cli_check(args: argparse.Namespace) -> int:
    """Check the named (default: every enabled) camera; print one row each, or one JSON document."""
    config = load_config(args.config)
    rows: list[CheckRow] = []
    cameras: list[CameraConfig] = []
    if args.cameras:
        for cid in dict.fromkeys(args.cameras):
            try:
                cam = config.camera(cid)
            except ConfigError as exc:
                rows.append(CheckRow(cid, "unknown", error=scrub(" ".join(exc.problems))))
                continue
            if cam.enabled:
                cameras.append(cam)
            else:
                rows.append(CheckRow(cid, "disabled", url=scrub(cam.redacted_url), error="disabled in the config"))
    else:
        cameras = [c for c in config.cameras if c.enabled]
        if not cameras:
            raise ConfigError(f"{config.path}: no enabled camera to check")
    if cameras:
        s = config.settings
        store = ReferenceStore(s.state_dir, url=s.store)
        try:
            embedder = load_embedder(str(s.model) if s.model else None, device=s.device, require_gpu=s.require_gpu)
            rows = run_checks(config, cameras, embedder, store) + rows
        finally:
            store.close()
    # disabled cameras named explicitly are reported but do not fail the check
    code = max((r.exit_code for r in rows if r.state != "disabled"), default=0)
    members = _members(config)
    if args.json:
        docs = [dict(r.__dict__) | ({"members": members[r.id]} if r.id in members else {}) for r in rows]
        doc = {"config": str(config.path), "exit_code": code, "cameras": docs}
        print(scrub(json.dumps(doc, indent=2)))
    else:
        for r in rows:
            owned = f"  members {','.join(map(str, members[r.id]))}" if r.id in members else ""
            print(scrub(_row_line(r) + owned))
    return code
