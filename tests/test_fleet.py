"""A fleet of three REAL camwatch processes (settings.cluster: members 3, replication 2) on one
cameras file and ONE shared REAL PostgreSQL store (tests/pg_server.py), each member with its own
state directory, delivering to a REAL webhook receiver, scraped by a REAL Prometheus loaded with
the alert rules.

What is checked, from each member's real /metrics, the receiver and the shared database only (never
from the code that decides ownership):

* enrolment once, from a fourth host (``camwatch enroll --all`` against the store, no auto_enroll),
  is seen by every member: each camera's checks find its reference (result ok) on exactly two
  members and on no other; the store holds one reference per camera;
* after one member is killed with SIGKILL (no chance to say goodbye) every camera it checked is
  still checked, by its other owner, and no survivor takes on cameras it does not own (ownership is
  static); Prometheus names the dead member (CamwatchMemberDown) and finds no unwatched camera, until
  a second member is killed, when it counts exactly the cameras those two shared;
* the killed members restarted on their state directories: every camera is checked by two again;
* events: a quarter of the cameras is turned while member 0 is down, and turned back after the
  restarts. Every event the members recorded in the shared outbox reaches the receiver exactly once
  (each id counted once); each owner alive when its camera turned told drift_started, a restarted
  member told none again (it took the drift its camera's other owner had told, from the shared
  store's events, as open), and both owners, the restarted ones included, told drift_cleared.
  Members are killed only when the outbox is drained: a member killed while a request is in flight
  may send that one again, with the same Idempotency-Key (tests/test_event_delivery.py covers it).
* the store's password, given by ${ENV}, is in no member's log nor in ``camwatch enroll``'s output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest
from daemon_helpers import REPO, Daemon, http_get, write_config
from media import scene_image, write_image
from modelkit import grid_model
from test_events import Receiver
from test_prometheus import PROMETHEUS, RULES, Prom

from camwatch.store.events import EventStore

#: 150 cameras, half the issue's 300: the whole test takes ~37 s on two busy cores with 150 and
#: ~136 s with 300 (600 checks a round for three members sharing two cores, and a restart's first
#: round); benchmarks/bench_cluster.py --members runs the fleet at any size.
MEMBERS, REPLICATION, CAMERAS = 3, 2, 150
#: Long enough that three daemons on two shared cores finish a round between two, short enough to
#: see a survivor's next round within the test's seconds.
INTERVAL = 3
SCENES = ("street", "shop", "lobby", "street")
FLEET_RULES = RULES.with_name("camwatch-fleet.rules.yml")
PASSWORD_ENV = "CAMWATCH_PG_PASSWORD"
CHECKED = ("ok", "drifted")


def _checks(d: Daemon, results: tuple[str, ...] = CHECKED) -> dict[str, float]:
    """Completed checks per camera (results ok or drifted), as the member's /metrics tells them."""
    out: Counter[str] = Counter()
    for (name, labels), v in d.samples().items():
        lab = dict(labels)
        if name == "camwatch_checks_total" and lab.get("result") in results:
            out[lab["camera"]] += v
    return dict(out)


def _states(d: Daemon) -> dict[str, str]:
    """Each camera's state, from one read of the member's /metrics (the state label whose value is 1)."""
    return {dict(labels)["camera"]: dict(labels)["state"] for (name, labels), v in d.samples().items()
            if name == "camwatch_camera_state" and v == 1}


class Fleet:
    """The members, their configs and environment, the store's URL, the receiver and Prometheus."""

    def __init__(self, root, pg_server):
        self.root = root
        self.url = pg_server.url(pg_server.new_schema())
        self.env = {PASSWORD_ENV: pg_server.password}
        in_config = self.url.replace(pg_server.password, "${" + PASSWORD_ENV + "}")
        model = grid_model(root / "grid.onnx")
        for n, scene in enumerate(SCENES):
            write_image(root / f"view{n}.png", scene_image(width=160, height=120, seed=n + 1, scene=scene))
        self.ids = [f"cam-{i:03d}" for i in range(CAMERAS)]
        cameras = [{"id": cid, "url": str(root / f"view{i % len(SCENES)}.png")} for i, cid in enumerate(self.ids)]
        self.rx = Receiver()
        common = dict(model=str(model), device="cpu", interval=INTERVAL, timeout=1, workers=2, confirm=1,
                      store=in_config, webhooks=[{"url": self.rx.url, "name": "receiver"}])
        self.configs = []
        for m in range(MEMBERS):
            folder = root / f"member-{m}"
            folder.mkdir()
            self.configs.append(write_config(folder / "cameras.yaml", cameras, **common, cluster={
                "members": MEMBERS, "member": f"camwatch-{m}", "replication": REPLICATION}))
        laptop = root / "laptop"
        laptop.mkdir()
        self.enroller = write_config(laptop / "cameras.yaml", cameras, **common)
        for cfg in (*self.configs, self.enroller):
            os.chmod(cfg, 0o600)
        self.daemons = [self.start(m) for m in range(MEMBERS)]
        self.prom = None
        self.outbox: EventStore | None = None
        self.enrolled = ""
        self.password = pg_server.password

    def start(self, m: int) -> Daemon:
        return Daemon(self.configs[m], env=self.env, log_level="INFO")

    def enroll(self) -> subprocess.CompletedProcess:
        """``camwatch enroll --all`` from a host that is no member: once, into the shared store."""
        return subprocess.run([sys.executable, "-m", "camwatch", "enroll", "--config", str(self.enroller), "--all"],
                              capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, **self.env})

    def close(self) -> None:
        if self.prom is not None:
            self.prom.close()
        if self.outbox is not None:
            self.outbox.close()
        for d in self.daemons:
            d.stop()
        self.rx.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pg_server):
    f = Fleet(tmp_path_factory.mktemp("fleet"), pg_server)
    try:
        done = f.enroll()     # while the members start: they must see it whenever it lands
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        f.enrolled = done.stdout + done.stderr
        f.outbox = EventStore(f.root / "reader", url=f.url)   # the shared outbox, as `camwatch events` reads it
        if os.access(PROMETHEUS, os.X_OK):
            f.prom = Prom(f.root, [f"127.0.0.1:{d.port}" for d in f.daemons], rules=(RULES, FLEET_RULES))
        yield f
    finally:
        f.close()


def _alerts(prom: Prom) -> set[tuple[str, str]]:
    """(alertname, member) of every pending or firing alert."""
    return {(a["labels"]["alertname"], a["labels"].get("member", ""))
            for a in prom.get("/api/v1/alerts")["data"]["alerts"]}


def _scalar(prom: Prom, expr: str) -> float | None:
    res = prom.query(expr)["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def _drained(f: Fleet) -> bool:
    """Every event in the shared outbox delivered (the store says so) and received."""
    assert f.outbox is not None
    return f.outbox.pending_count() == 0 and set(f.rx.accepted_ids()) == {e.id for e in f.outbox.list(limit=100_000)}


def _kill(d: Daemon) -> None:
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)


def test_every_camera_on_two_members_of_one_store_through_kills_and_restarts(fleet):
    f, fleet = fleet, fleet.daemons
    ids = set(f.ids)
    checked: dict[int, set[str]] = {}

    def all_checked() -> bool:
        for m, d in enumerate(fleet):
            checked[m] = {c for c, n in _checks(d, ("ok",)).items() if n >= 1}
        return sum(len(c) for c in checked.values()) == REPLICATION * CAMERAS and \
            set().union(*checked.values()) == ids
    fleet[0].wait("every camera checked against its enrolled reference", all_checked, timeout=60)

    with psycopg.connect(f.url) as conn:   # enrolled once, in the one store every member reads
        per_camera = conn.execute("SELECT camera_id, count(*) FROM camera_references GROUP BY camera_id").fetchall()
    assert dict(per_camera) == dict.fromkeys(ids, 1)
    for m, d in enumerate(fleet):
        # A member has series for its own cameras only, and checked every one of them.
        assert d.cameras() == checked[m], m
        assert http_get(d.port, "/readyz") == (200, "ready\n")
        assert http_get(d.port, "/healthz")[0] == 200
        assert d.value("camwatch_cluster_member_info", member=str(m)) == 1
        assert d.value("camwatch_cluster_members") == MEMBERS
        assert d.value("camwatch_cluster_cameras") == CAMERAS
        # Every member exports every member's count, and they agree with what each one checks.
        for other in range(MEMBERS):
            assert d.value("camwatch_cluster_member_cameras", member=str(other)) == len(checked[other])
    for cid in ids:
        assert sum(cid in c for c in checked.values()) == REPLICATION, cid
    # Rendezvous spreads 2 x CAMERAS camera-checks over 3 members: none idle, none with nearly all.
    share = REPLICATION * CAMERAS / MEMBERS
    assert all(share / 2 <= len(c) <= 1.5 * share for c in checked.values()), {m: len(c) for m, c in checked.items()}

    unwatched = "max(camwatch_cluster_cameras) - count(group by (camera) (camwatch_camera_state))"
    prom = f.prom
    if prom is not None:
        prom.wait(lambda: _scalar(prom, "count(camwatch_cluster_member_info)") == MEMBERS, 20,
                  "Prometheus scraping the three members")
        assert _scalar(prom, unwatched) == 0
        # A rule evaluated before the last member's first scrape may still be pending: gone at the next one.
        prom.wait(lambda: not {a for a in _alerts(prom) if a[0].startswith(("CamwatchMember", "CamwatchCameras"))},
                  10, "no fleet alert while every member is up")

    # -- one member killed: its cameras' other owners go on; a quarter of the cameras is turned -----
    assert _drained(f)            # nothing in flight: a kill now cannot repeat a delivery
    _kill(fleet[0])
    turned = {cid for i, cid in enumerate(f.ids) if i % len(SCENES) == 0}
    write_image(f.root / "view0.png", scene_image(width=160, height=120, seed=9, scene="shop"))
    orphans = checked[0]
    survivors = {m: fleet[m] for m in range(1, MEMBERS)}
    before = {m: _checks(d) for m, d in survivors.items()}
    t0 = time.monotonic()

    def orphans_rechecked() -> bool:
        now = {m: _checks(d) for m, d in survivors.items()}
        return all(any(now[m].get(cid, 0) > before[m].get(cid, 0) for m in survivors) for cid in orphans)
    fleet[1].wait("every camera of the killed member checked again by its other owner", orphans_rechecked,
                  timeout=4 * INTERVAL)
    assert time.monotonic() - t0 <= 4 * INTERVAL
    for m, d in survivors.items():
        assert d.cameras() == checked[m], m   # static ownership: nothing taken over, nothing dropped
        assert d.proc.poll() is None

    def survivors_reported() -> bool:
        states = {m: _states(d) for m, d in survivors.items()}
        return all(states[m].get(cid) == "drifted" for m in survivors for cid in turned & checked[m]) and _drained(f)
    fleet[1].wait("the survivors' turned cameras drifted and their events delivered", survivors_reported,
                  timeout=6 * INTERVAL)

    if prom is not None:
        prom.wait(lambda: ("CamwatchMemberDown", "0") in _alerts(prom), 20, "CamwatchMemberDown for member 0")
        # Every camera still has a running owner: the rule's two sides agree, nothing is unwatched.
        assert _scalar(prom, "max(camwatch_cluster_cameras)") == CAMERAS
        # Waited for, not read once: under load one scrape of a live member can time out, and for
        # that second its series are stale (a pending alert, a camera counted unwatched).
        prom.wait(lambda: _scalar(prom, unwatched) == 0 and
                  {a for a in _alerts(prom) if a[0] in ("CamwatchMemberDown", "CamwatchCamerasUnwatched")} ==
                  {("CamwatchMemberDown", "0")}, 20, "only member 0 down, nothing unwatched")

    # -- a second member down: the cameras whose two owners were 0 and 1 are checked by nobody now --
    assert _drained(f)
    _kill(fleet[1])
    both = checked[0] & checked[1]
    assert both
    if prom is not None:
        prom.wait(lambda: ("CamwatchCamerasUnwatched", "") in _alerts(prom), 20, "CamwatchCamerasUnwatched")
        prom.wait(lambda: _scalar(prom, unwatched) == len(both) and ("CamwatchMemberDown", "1") in _alerts(prom),
                  20, "the cameras of members 0 and 1 unwatched, member 1 down")

    # -- both restarted on their state directories: every camera checked by two again --------------
    for m in (0, 1):
        fleet[m].stop()
        fleet[m] = f.start(m)
    base = _checks(fleet[2])

    def two_again() -> bool:
        now = [_checks(d) for d in fleet]
        now[2] = {c: n - base.get(c, 0) for c, n in now[2].items()}
        return all({c for c, n in now[m].items() if n >= 1} == checked[m] for m in range(MEMBERS))
    fleet[0].wait("every camera checked by its two owners again", two_again, timeout=60)
    for m, d in enumerate(fleet):
        assert d.cameras() == checked[m], m

    # -- events: the turned view turned back. Every event the members recorded is received exactly
    # once; a restarted member took the drift its cameras' other owners had told as open (the shared
    # store's events), so it told no second drift_started, and now tells its drift_cleared ---------
    write_image(f.root / "view0.png", scene_image(width=160, height=120, seed=1, scene=SCENES[0]))

    def cleared() -> bool:
        states = [_states(d) for d in fleet]
        return all(states[m].get(cid) == "ok" for m in range(MEMBERS) for cid in turned & checked[m]) and _drained(f)
    fleet[0].wait("every owner's turned cameras back to ok and their events delivered", cleared,
                  timeout=6 * INTERVAL)
    assert f.outbox is not None
    events = f.outbox.list(limit=100_000)
    got = f.rx.accepted_ids()
    assert set(got) == {e.id for e in events}
    assert all(n == 1 for n in got.values()), {k: n for k, n in got.items() if n > 1}
    told = Counter((e.camera_id, e.type) for e in events)
    assert set(told) == {(c, t) for c in turned for t in ("drift_started", "drift_cleared")}, set(told)
    for cid in turned:
        owners = {m for m in range(MEMBERS) if cid in checked[m]}
        assert told[cid, "drift_started"] == len(owners - {0}), cid   # member 0 was down when it turned
        assert told[cid, "drift_cleared"] == REPLICATION, cid
    # The store's password came from the environment and went nowhere else.
    for text in (f.enrolled, *(d.log() for d in fleet)):
        assert f.password not in text
