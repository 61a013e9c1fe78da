"""A fleet of three REAL camwatch processes (settings.cluster: members 3, replication 2) on the
same cameras file, each with its own state directory (the shared store is not part of this
test), scraped by a REAL Prometheus loaded with the alert rules.

What is checked, from each member's real /metrics endpoint only (never from the code that
decides ownership): every camera is checked by exactly two members and by none other; each
member exports the fleet's shape; /healthz and /readyz answer; after one member is killed
with SIGKILL (no chance to say goodbye), every camera it checked is still checked by its
other owner, and no survivor takes on cameras it does not own (ownership is static);
Prometheus then names the dead member (CamwatchMemberDown) and, with replication 2, finds no
camera that nobody checks (CamwatchCamerasUnwatched stays inactive) until a second member is
killed, when it counts exactly the cameras those two members shared.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import pytest
from daemon_helpers import Daemon, write_config
from media import scene_image, write_image
from modelkit import grid_model
from test_prometheus import PROMETHEUS, RULES, Prom

MEMBERS, REPLICATION, CAMERAS = 3, 2, 36
#: Long enough that three daemons on two shared cores stay idle between rounds, short enough to
#: see a survivor's next round within the test's seconds.
INTERVAL = 3
FLEET_RULES = RULES.with_name("camwatch-fleet.rules.yml")


def _ok_checks(d: Daemon) -> dict[str, float]:
    """Completed checks (result ok) per camera, as the member's /metrics tells them."""
    return {dict(labels)["camera"]: v for (name, labels), v in d.samples().items()
            if name == "camwatch_checks_total" and dict(labels).get("result") == "ok"}


def _get(d: Daemon, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{d.port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    model = grid_model(root / "grid.onnx")
    scenes = ("street", "shop", "lobby", "street")
    for n, scene in enumerate(scenes):
        write_image(root / f"view{n}.png", scene_image(width=160, height=120, seed=n + 1, scene=scene))
    cameras = [{"id": f"cam-{i:02d}", "url": str(root / f"view{i % len(scenes)}.png"), "auto_enroll": True}
               for i in range(CAMERAS)]
    daemons = []
    for m in range(MEMBERS):
        folder = root / f"member-{m}"
        folder.mkdir()
        cfg = write_config(folder / "cameras.yaml", cameras, model=str(model), device="cpu", interval=INTERVAL,
                           timeout=1, workers=2,
                           cluster={"members": MEMBERS, "member": f"camwatch-{m}", "replication": REPLICATION})
        daemons.append(Daemon(cfg, log_level="INFO"))
    prom = None
    try:
        if os.access(PROMETHEUS, os.X_OK):
            prom = Prom(root, [f"127.0.0.1:{d.port}" for d in daemons], rules=(RULES, FLEET_RULES))
        yield daemons, prom
    finally:
        if prom is not None:
            prom.close()
        for d in daemons:
            d.stop()


def _alerts(prom: Prom) -> set[tuple[str, str]]:
    """(alertname, member) of every pending or firing alert."""
    return {(a["labels"]["alertname"], a["labels"].get("member", ""))
            for a in prom.get("/api/v1/alerts")["data"]["alerts"]}


def _scalar(prom: Prom, expr: str) -> float | None:
    res = prom.query(expr)["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def test_every_camera_on_exactly_two_members_and_the_survivor_keeps_checking(fleet):
    fleet, prom = fleet
    ids = {f"cam-{i:02d}" for i in range(CAMERAS)}
    checked: dict[int, set[str]] = {}

    def all_checked() -> bool:
        for m, d in enumerate(fleet):
            checked[m] = {c for c, n in _ok_checks(d).items() if n >= 1}
        return sum(len(c) for c in checked.values()) == REPLICATION * CAMERAS and \
            set().union(*checked.values()) == ids
    fleet[0].wait("every camera checked by the fleet", all_checked, timeout=40)

    for m, d in enumerate(fleet):
        # A member has series for its own cameras only, and checked every one of them.
        assert d.cameras() == checked[m], m
        assert _get(d, "/readyz") == (200, "ready\n")
        assert _get(d, "/healthz")[0] == 200
        assert d.value("camwatch_cluster_member_info", member=str(m)) == 1
        assert d.value("camwatch_cluster_members") == MEMBERS
        assert d.value("camwatch_cluster_cameras") == CAMERAS
        # Every member exports every member's count, and they agree with what each one checks.
        for other in range(MEMBERS):
            assert d.value("camwatch_cluster_member_cameras", member=str(other)) == len(checked[other])
    for cid in ids:
        assert sum(cid in c for c in checked.values()) == REPLICATION, cid
    # Rendezvous spreads 72 camera-checks over 3 members: none idle, none with nearly all.
    assert all(12 <= len(c) <= 36 for c in checked.values()), {m: len(c) for m, c in checked.items()}

    unwatched = "max(camwatch_cluster_cameras) - count(group by (camera) (camwatch_camera_state))"
    if prom is not None:
        prom.wait(lambda: _scalar(prom, "count(camwatch_cluster_member_info)") == MEMBERS, 20,
                  "Prometheus scraping the three members")
        assert _scalar(prom, unwatched) == 0
        assert not {a for a in _alerts(prom) if a[0].startswith(("CamwatchMember", "CamwatchCameras"))}

    killed = fleet[0]
    killed.proc.send_signal(signal.SIGKILL)
    killed.proc.wait(10)
    orphans = checked[0]
    survivors = {m: fleet[m] for m in range(1, MEMBERS)}
    before = {m: _ok_checks(d) for m, d in survivors.items()}
    t0 = time.monotonic()

    def orphans_rechecked() -> bool:
        now = {m: _ok_checks(d) for m, d in survivors.items()}
        return all(any(now[m].get(cid, 0) > before[m].get(cid, 0) for m in survivors) for cid in orphans)
    fleet[1].wait("every camera of the killed member checked again by its other owner", orphans_rechecked,
                  timeout=4 * INTERVAL)
    took = time.monotonic() - t0
    for m, d in survivors.items():
        assert d.cameras() == checked[m], m   # static ownership: nothing taken over, nothing dropped
        assert d.proc.poll() is None
    assert took <= 4 * INTERVAL
    if prom is None:
        pytest.skip(f"{PROMETHEUS} not installed: the alert rules were not run on the fleet")
    prom.wait(lambda: ("CamwatchMemberDown", "0") in _alerts(prom), 20, "CamwatchMemberDown for member 0")
    # Every camera still has a running owner: the rule's two sides agree, nothing is unwatched.
    assert _scalar(prom, "max(camwatch_cluster_cameras)") == CAMERAS
    assert _scalar(prom, unwatched) == 0
    assert {a for a in _alerts(prom) if a[0] in ("CamwatchMemberDown", "CamwatchCamerasUnwatched")} == \
        {("CamwatchMemberDown", "0")}

    # A second member down: the cameras whose two owners were 0 and 1 are checked by nobody now.
    fleet[1].proc.send_signal(signal.SIGKILL)
    fleet[1].proc.wait(10)
    both = len(checked[0] & checked[1])
    assert both > 0
    prom.wait(lambda: ("CamwatchCamerasUnwatched", "") in _alerts(prom), 20, "CamwatchCamerasUnwatched")
    assert _scalar(prom, unwatched) == both
    assert ("CamwatchMemberDown", "1") in _alerts(prom)
