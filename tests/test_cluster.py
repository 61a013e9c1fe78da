"""Rendezvous hashing (core/cluster.py), settings.cluster and how the CLI shows a fleet.

Pure functions and real config files; the three-process fleet is tests/test_fleet.py.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import REPO, write_config

from camwatch.cli.main import main
from camwatch.config import load_config
from camwatch.core.cluster import Cluster, camera_hash, member_from_hostname, owners, owners_of, weight
from camwatch.core.errors import ConfigError

IDS = [f"cam-{i:05d}" for i in range(6000)]


def test_owners_are_distinct_ranked_and_stable_across_processes():
    got = owners("front-door", 5, 3)
    assert len(set(got)) == 3 and all(0 <= m < 5 for m in got)
    ranked = sorted(range(5), key=lambda m: weight("front-door", m), reverse=True)
    assert got == tuple(ranked[:3])
    # The weight starts from BLAKE2b of the id, never Python's salted hash(): another
    # interpreter with another hash seed computes the same owners.
    assert camera_hash("front-door") == int.from_bytes(hashlib.blake2b(b"front-door", digest_size=8).digest(), "big")
    code = "from camwatch.core.cluster import owners; print(owners('front-door', 5, 3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                         env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == str(got)


@pytest.mark.parametrize("members,replication", [(3, 1), (3, 2), (5, 2), (8, 3)])
def test_balance(members, replication):
    fleet = Cluster(members, 0, replication)
    counts = fleet.counts(fleet.assignment(IDS))
    assert sum(counts) == len(IDS) * replication
    mean = len(IDS) * replication / members
    # Binomial spread: ~sqrt(mean) ~ 40-90 here; 10% of the mean is several standard deviations.
    assert max(abs(c - mean) for c in counts) < 0.1 * mean, counts


@pytest.mark.parametrize("members,replication", [(3, 1), (3, 2), (4, 2), (9, 3)])
def test_adding_a_member_moves_about_r_over_n_plus_one(members, replication):
    before = Cluster(members, 0, replication).assignment(IDS)
    after = Cluster(members + 1, 0, replication).assignment(IDS)
    moved = [cid for cid in IDS if set(before[cid]) != set(after[cid])]
    # Only cameras that the new member now owns change, and each loses exactly one old owner.
    for cid in moved:
        assert members in after[cid]
        assert len(set(before[cid]) - set(after[cid])) == 1
    assert all(set(before[c]) == set(after[c]) for c in IDS if members not in after[c])
    share = len(moved) / len(IDS)
    expected = replication / (members + 1)
    assert abs(share - expected) < 0.2 * expected, (share, expected)
    # Removing the new member again moves back exactly those.
    assert Cluster(members, 0, replication).assignment(IDS) == before


@pytest.mark.parametrize("members,replication", [(1, 1), (3, 2), (7, 7), (40, 3)])
def test_array_owners_equal_one_by_one_owners(members, replication):
    ids = IDS[:300] + ["", "x" * 64, "ÿ-unicode"]
    assert owners_of(ids, members, replication) == {c: owners(c, members, replication) for c in ids}
    assert list(owners_of(ids, members, replication)) == ids


def test_owns_matches_owners_and_single_member_owns_all():
    fleet = [Cluster(4, m, 2) for m in range(4)]
    for cid in IDS[:500]:
        assert sorted(m for m, c in enumerate(fleet) if c.owns(cid)) == sorted(owners(cid, 4, 2))
    assert all(Cluster().owns(cid) for cid in IDS[:50])
    with pytest.raises(ValueError):
        Cluster(3, 3, 1)
    with pytest.raises(ValueError):
        owners("a", 2, 3)


@pytest.mark.parametrize("hostname,member", [
    ("camwatch-3", 3), ("camwatch-0", 0), ("camwatch-12.camwatch.cams.svc.cluster.local", 12),
    ("cam-watch-7", 7), ("CAMWATCH-2", 2),
    ("camwatch", None), ("camwatch-", None), ("camwatch-03", None), ("-3", None), ("camwatch-x", None),
    ("", None), ("camwatch-1234567", None),
])
def test_member_from_hostname(hostname, member):
    assert member_from_hostname(hostname) == member


def _cfg(tmp_path: Path, cluster: str, cameras: int = 3) -> Path:
    cams = "\n".join(f"  - {{id: cam-{i}, url: 'demo:street?seed={i}'}}" for i in range(cameras))
    path = tmp_path / "cameras.yaml"
    path.write_text(f"settings:\n  state_dir: {tmp_path / 'state'}\n  cluster: {cluster}\ncameras:\n{cams}\n")
    return path


@pytest.mark.parametrize("cluster,message", [
    ("{members: 3, replication: 4}", "settings.cluster.replication: 4: more than members (3)"),
    ("{members: 3, member: 3}", "settings.cluster.member: 3: not below members (3); members are numbered 0..2"),
    ("{members: 0}", "settings.cluster.members: 0: expected a whole number of members in 1..1000"),
    ("{members: 3, member: pod}", "settings.cluster.member: 'pod': expected a member number"),
    ("{members: 3, membr: 1}", "settings.cluster.membr: unknown key 'membr'; did you mean 'member'?"),
    ("{members: 2, replication: -1}", "settings.cluster.replication: -1: expected a whole number, 1 or more"),
])
def test_bad_cluster_config_is_one_line_naming_the_key(tmp_path, cluster, message):
    with pytest.raises(ConfigError) as err:
        load_config(_cfg(tmp_path, cluster))
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{tmp_path / 'cameras.yaml'}:3: {message}"), err.value.problems


def test_member_from_the_file_the_pod_name_or_the_host_name(tmp_path, monkeypatch):
    assert load_config(_cfg(tmp_path, "{members: 3, member: 1, replication: 2}")).cluster("anything") == \
        Cluster(3, 1, 2)
    monkeypatch.setenv("POD_NAME", "camwatch-2")
    assert load_config(_cfg(tmp_path, "{members: 3, member: '${POD_NAME}'}")).cluster("x") == Cluster(3, 2, 1)
    config = load_config(_cfg(tmp_path, "{members: 3, replication: 2}"))
    assert config.cluster("camwatch-0.camwatch.cams.svc") == Cluster(3, 0, 2)
    with pytest.raises(ConfigError, match=r"cameras.yaml:3: settings.cluster.member: not set, and the host name "
                                          r"'laptop' does not end in -N"):
        config.cluster("laptop")
    with pytest.raises(ConfigError, match=r"member: 5 \(from the host name 'camwatch-5'\) is not below members: 3"):
        config.cluster("camwatch-5")
    # No fleet: any host is member 0 of 1, and owns everything.
    assert load_config(_cfg(tmp_path, "{}")).cluster("laptop") == Cluster()


def test_validate_and_check_show_each_cameras_members(tmp_path, capsys):
    cfg = _cfg(tmp_path, "{members: 3, replication: 2, member: 0}", cameras=6)
    assert main(["--config", str(cfg), "validate", "--owners"]) == 0
    out = capsys.readouterr().out.splitlines()
    fleet = Cluster(3, 0, 2)
    ids = [f"cam-{i}" for i in range(6)]
    counts = fleet.counts(fleet.assignment(ids))
    assert out[1] == ("cluster: 3 members, each camera on 2; cameras per member: "
                      + ", ".join(f"{m}: {n}" for m, n in enumerate(counts)))
    for cid in ids:
        assert f"{cid}  members {', '.join(map(str, sorted(fleet.owners(cid))))}" in out
    assert main(["--config", str(cfg), "check", "cam-1", "--json"]) == 2   # no reference yet
    row = json.loads(capsys.readouterr().out)["cameras"][0]
    assert row["id"] == "cam-1" and row["members"] == sorted(fleet.owners("cam-1"))
    # A host that is not a pod of the fleet can still validate the plan: a warning, not an error.
    if member_from_hostname(socket.gethostname()) is None:
        cfg = _cfg(tmp_path, "{members: 3, replication: 2}", cameras=6)
        assert main(["--config", str(cfg), "validate"]) == 0
        assert "a daemon on this host would not start" in capsys.readouterr().err


def test_reload_moves_cameras_when_the_fleet_changes_shape(tmp_path):
    """A real daemon (in process, real file cameras and model) given a new settings.cluster by SIGHUP's reload."""
    from media import scene_image, write_image
    from modelkit import grid_model

    from camwatch.service.daemon import Daemon

    grid_model(tmp_path / "grid.onnx")
    write_image(tmp_path / "view.png", scene_image(width=160, height=120))
    ids = [f"cam-{i}" for i in range(12)]
    cameras = [{"id": c, "url": str(tmp_path / "view.png"), "auto_enroll": True, "interval": 3600} for c in ids]
    cfg = write_config(tmp_path / "cameras.yaml", cameras, model=str(tmp_path / "grid.onnx"), device="cpu",
                       cluster={"members": 3, "member": 1, "replication": 1})
    d = Daemon(str(cfg))
    try:
        d.start()
        mine = {c for c in ids if owners(c, 3, 1) == (1,)}
        assert set(d.runtimes) == mine == d.metrics.cameras() and mine
        assert d.metrics.registry.get_sample_value("camwatch_cluster_member_info", {"member": "1"}) == 1
        counts = [sum(owners(c, 3, 1) == (m,) for c in ids) for m in range(3)]
        assert [d.metrics.registry.get_sample_value("camwatch_cluster_member_cameras", {"member": str(m)})
                for m in range(3)] == counts

        write_config(cfg, cameras, model=str(tmp_path / "grid.onnx"), device="cpu",
                     cluster={"members": 2, "member": 1, "replication": 2})
        assert d.reload()
        assert set(d.runtimes) == set(ids) == d.metrics.cameras()    # 2 of 2 members: every camera
        assert d.metrics.registry.get_sample_value("camwatch_cluster_members") == 2

        write_config(cfg, cameras, model=str(tmp_path / "grid.onnx"), device="cpu",
                     cluster={"members": 1, "member": 1})
        assert not d.reload()                                        # member 1 of 1: refused, one line
        assert set(d.runtimes) == set(ids)
    finally:
        d.stop()
