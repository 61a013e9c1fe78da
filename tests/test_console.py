"""The operator console against a real daemon process on demo cameras (docs/console.md).

One daemon for the module (its console on a free port) serves every test here:
the pages and every /api/ endpoint, bad input (a clear JSON error and nothing
changed), caching of thumbnails, and that a password in a camera's URL never
appears in any answer. A second, short-lived process shows a console port
already in use stops the start with one line.
"""

from __future__ import annotations

import gzip
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from daemon_helpers import Daemon, camwatch, free_port, write_config

from camwatch.config.load import load_config
from camwatch.service.console.data import Sources, fleet
from camwatch.service.console.snapshot import BUCKET_S
from camwatch.service.console.views import fleet_page

SECRET = "Pa55-w0rd-console"
TOKEN = "console-token-4f9d2c7a1b"
CAMERAS = [
    {"id": "street", "name": "Street <demo>", "url": "demo:street?seed=1", "auto_enroll": True},
    {"id": "shop", "name": "Shop floor", "url": "demo:shop?seed=2", "auto_enroll": True},
    {"id": "lobby", "name": "Lobby", "url": "demo:lobby?seed=3&drift_after=600&drift=turn", "auto_enroll": True},
    # Nothing listens on port 1: unavailable, with a password in its URL that must never be shown.
    {"id": "gate", "name": "Gate", "url": f"http://admin:{SECRET}@127.0.0.1:1/snap.jpg", "timeout": 1},
    {"id": "attic", "name": "Attic (off)", "url": "demo:shop?seed=9", "enabled": False},
    # Turned a few seconds in: its drift_started event has an evidence picture.
    {"id": "hall", "name": "Hall", "url": "demo:lobby?seed=4&drift_after=6&drift=turn", "auto_enroll": True},
    # Silenced before the daemon starts, then covered (test_console_actions.py): recorded, not sent.
    {"id": "porch", "name": "Porch", "url": "demo:street?seed=5&drift_after=6&drift=cover", "auto_enroll": True},
    # Operators' actions on it (test_console_actions.py).
    {"id": "yard", "name": "Yard", "url": "demo:shop?seed=6", "auto_enroll": True},
]


def get(base: str, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(base + path, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(base: str, path: str) -> tuple[int, dict]:
    status, _, body = get(base, path)
    return status, json.loads(body)


def refs(base: str, cid: str) -> list[tuple]:
    """The camera's references as the API tells them (id, label, made), ages left out."""
    return [(r["id"], r["label"], r["created_at"]) for r in get_json(base, f"/api/cameras/{cid}")[1]["references"]]


def start_daemon(folder: Path, cameras: list[dict], token: str | None = None,
                 before: Callable[[Path, dict | None], object] | None = None) -> tuple[Daemon, str]:
    """A real daemon on ``cameras`` with its console on a free loopback port: (daemon, console's base URL).

    ``token``: operators may log in with it, given as a systemd credential (${cred:console-token});
    ``before(config, env)``: run once the config is written, before the daemon starts."""
    port = free_port()
    console = {"enabled": True, "address": "127.0.0.1", "port": port}
    env = None
    if token is not None:
        creds = folder / "credentials"
        creds.mkdir()
        (creds / "console-token").write_text(token)
        console["token"] = "${cred:console-token}"
        env = {"CREDENTIALS_DIRECTORY": str(creds)}
    cfg = write_config(folder / "cameras.yaml", cameras, calibration={"checks": 2}, console=console)
    if before is not None:
        before(cfg, env)
    return Daemon(cfg, env=env), f"http://127.0.0.1:{port}"


def console_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """The daemon conftest's ``console`` fixture shares between this module and test_console_actions.py
    (one start for both): CAMERAS, actions on with TOKEN; before it starts, an operator silences porch
    with the CLI (test_console_actions.py reads what followed)."""
    def silence_porch(cfg: Path, env: dict | None) -> None:
        r = camwatch("camera", "silence", "porch", "1h", "--by", "night shift", "--config", str(cfg), env=env)
        assert r.returncode == 0 and "night shift silenced its alerts until" in r.stdout, r.stderr

    d, base = start_daemon(tmp_path_factory.mktemp("console"), CAMERAS, token=TOKEN, before=silence_porch)
    try:
        d.wait("every enabled camera checked or failed", lambda: _settled(base), timeout=90)
        yield d, base
    finally:
        d.stop()


def _settled(base: str) -> bool:
    status, f = get_json(base, "/api/cameras")
    states = {c["id"]: c for c in f["cameras"]}
    return (status == 200 and all(states[c]["checked_at"] for c in ("street", "shop", "lobby"))
            and states["gate"]["state"] == "unavailable")


def test_api_cameras_lists_every_configured_camera_with_its_state_and_counts(console):
    _, base = console
    status, f = get_json(base, "/api/cameras")
    assert status == 200
    by_id = {c["id"]: c for c in f["cameras"]}
    assert set(by_id) == {c["id"] for c in CAMERAS}
    assert f["total"] == len(CAMERAS)
    for cid in ("street", "shop", "lobby"):
        c = by_id[cid]
        assert c["state"] == "ok" and c["kind"] is None and c["silenced"] is False
        assert 0 < c["threshold"] < c["similarity"] <= 1.0
        assert 0 <= c["last_check_age"] < 30
    assert by_id["gate"]["state"] == "unavailable" and by_id["gate"]["similarity"] is None
    assert by_id["attic"]["state"] == "disabled"
    for state, n in f["counts"].items():   # each state, and "silenced" (porch, silenced before the start)
        assert n == sum(1 for c in f["cameras"] if (c["silenced"] if state == "silenced" else c["state"] == state)), \
            state
    assert f["counts"]["silenced"] == 1 and by_id["porch"]["silenced"]
    assert f["counts"]["unavailable"] == 1 and f["counts"]["disabled"] == 1 and f["counts"]["ok"] >= 3
    # What needs a person comes first: unavailable before ok, disabled last.
    order = [c["id"] for c in f["cameras"]]
    assert order.index("gate") < order.index("street") and order[-1] == "attic"


def test_api_camera_has_its_references_and_events_and_a_redacted_url(console):
    _, base = console
    status, c = get_json(base, "/api/cameras/lobby")
    assert status == 200
    assert c["id"] == "lobby" and c["state"] == "ok" and c["url"].startswith("demo:lobby")
    assert len(c["references"]) == 1 and c["references"][0]["label"] == "default"
    assert isinstance(c["events"], list)
    status, g = get_json(base, "/api/cameras/gate")
    assert status == 200 and SECRET not in g["url"] and "***" in g["url"] and g["references"] == []


def test_thumbnails_are_jpegs_of_configured_cameras_and_cached_by_tag(console):
    _, base = console
    for kind in ("current", "reference", "difference"):
        status, headers, body = get(base, f"/api/cameras/street/{kind}.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert len(body) < 60_000   # a thumbnail, not the frame
        etag = headers["etag"]
        status, _, body = get(base, f"/api/cameras/street/{kind}.jpg", {"If-None-Match": etag})
        assert status in (200, 304)
        if kind == "reference":   # the reference does not change between the two requests (the others may)
            assert status == 304 and body == b""
    # A camera with no check and no reference yet: a clear 404, in JSON.
    for kind in ("current", "reference", "difference"):
        status, headers, body = get(base, f"/api/cameras/gate/{kind}.jpg")
        assert status == 404 and "gate" in json.loads(body)["error"]


@pytest.mark.parametrize("path", ["/api/cameras/nope", "/api/cameras/nope/current.jpg",
                                  "/api/cameras/nope/reference.jpg", "/api/cameras/..%2F..%2Fetc",
                                  "/api/cameras/STREET", "/api/nothing"])
def test_bad_api_input_is_a_json_404_and_changes_nothing(console, path):
    d, base = console
    before = refs(base, "street")
    status, headers, body = get(base, path)
    assert status == 404 and headers["content-type"] == "application/json"
    err = json.loads(body)["error"]
    assert "\n" not in err and len(err) < 200
    assert refs(base, "street") == before
    assert "nope" not in {c["id"] for c in get_json(base, "/api/cameras")[1]["cameras"]}


def test_writes_are_refused_and_change_nothing(console):
    _, base = console
    before = refs(base, "street")
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = get(base, "/api/cameras/street", method=method)
        assert status == 405 and "error" in json.loads(body)
    assert refs(base, "street") == before


def test_fleet_page_works_without_javascript(console):
    _, base = console
    status, headers, body = get(base, "/")
    html = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    for c in CAMERAS:
        assert f'id="cam-{c["id"]}"' in html
    assert "Street &lt;demo&gt;" in html and "<demo>" not in html    # names are escaped
    assert 'class="tile state-unavailable"' in html and 'id="count-unavailable">1<' in html
    assert "src=\"/api/cameras/street/current.jpg\"" in html
    assert "http://" not in html and "https://" not in html           # no CDN, no external asset
    # Filtered to one state, and a state that does not exist.
    html = get(base, "/?state=disabled")[2].decode()
    assert 'id="cam-attic"' in html and 'id="cam-street"' not in html
    assert get(base, "/?state=bogus")[0] == 404
    assert get(base, "/?page=x")[0] == 200


def test_camera_page_shows_reference_and_current_side_by_side(console):
    _, base = console
    status, _, body = get(base, "/cameras/street")
    html = body.decode()
    assert status == 200
    assert "/api/cameras/street/reference.jpg" in html and "/api/cameras/street/current.jpg" in html
    assert "/api/cameras/street/difference.jpg" in html
    assert "References" in html and "default" in html and "Recent events" in html
    assert get(base, "/cameras/nope")[0] == 404


def test_assets_ship_in_the_package(console):
    _, base = console
    for name, kind in (("console.css", "text/css"), ("console.js", "javascript")):
        status, headers, body = get(base, f"/static/{name}")
        assert status == 200 and kind in headers["content-type"] and len(body) < 20_000
    assert get(base, "/static/../app.py")[0] == 404


def test_no_secret_in_any_answer_page_or_log(console):
    d, base = console
    paths = ["/", "/?state=unavailable", "/api/cameras", "/static/console.js"]
    for c in CAMERAS:
        cid = c["id"]
        paths += [f"/cameras/{cid}", f"/api/cameras/{cid}", f"/api/cameras/{cid}/current.jpg",
                  f"/api/cameras/{cid}/reference.jpg"]
    for p in paths:
        _, headers, body = get(base, p)
        for secret in (SECRET, TOKEN):
            assert secret.encode() not in body, p
            assert secret not in json.dumps(headers), p
    assert SECRET not in d.log() and TOKEN not in d.log()


def test_a_console_port_in_use_stops_the_start_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path / "cameras.yaml", CAMERAS[:1],
                           console={"enabled": True, "address": "127.0.0.1", "port": port})
        r = camwatch("--config", str(cfg), timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if "console" in ln]
    assert lines and f"127.0.0.1:{port}" in lines[-1] and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_console_is_off_by_default_and_a_change_needs_a_restart(tmp_path):
    cfg = write_config(tmp_path / "cameras.yaml", CAMERAS[:1])
    assert load_config(str(cfg)).settings.console.enabled is False
    data = yaml.safe_load(cfg.read_text())
    data["settings"]["console"] = {"enabled": True, "port": 70000}
    cfg.write_text(yaml.safe_dump(data))
    r = camwatch("validate", "--config", str(cfg))
    assert r.returncode != 0 and "settings.console.port" in (r.stdout + r.stderr)


def test_a_thousand_cameras_page_is_light(tmp_path):
    """The fleet page at 1,000 cameras (no daemon: the view functions on a loaded config)."""
    cams = [{"id": f"cam{i:04d}", "url": f"demo:shop?seed={i}"} for i in range(1000)]
    cfg = load_config(str(write_config(tmp_path / "cameras.yaml", cams)))
    src = Sources(lambda: cfg, dict, lambda: None, lambda: None)
    html = fleet_page(fleet(src), None, 1)
    assert html.count('class="tile ') == 200 and len(html.encode()) < 1_000_000
    assert 'href="/?page=5"' in html


def test_the_fleet_json_is_gzipped_for_a_client_that_accepts_it(console):
    _, base = console
    status, headers, body = get(base, "/api/cameras", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(body))["total"] == len(CAMERAS)


def test_a_reload_that_moves_the_console_is_refused_and_it_keeps_serving(console):
    d, base = console
    text = d.config.read_text()
    data = yaml.safe_load(text)
    data["settings"]["console"]["port"] = free_port()
    d.config.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        d.signal(signal.SIGHUP)
        d.wait("the reload refused", lambda: "settings.console" in d.log() and "reload rejected" in d.log(), 30)
    finally:
        d.config.write_text(text)
    assert get_json(base, "/api/cameras")[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "10.0.0.5:9809", "127.0.0.1.evil.example"])
def test_a_loopback_console_refuses_a_foreign_host_dns_rebinding(console, host):
    _, base = console
    for path in ("/", "/api/cameras", "/api/cameras/street/current.jpg"):
        status, headers, body = get(base, path, {"Host": host})
        assert status == 421 and b"street" not in body and b"\xff\xd8" not in body
    for ok in ("localhost", "127.0.0.1:1234", "[::1]:9809", "localhost:9809"):
        assert get(base, "/api/cameras", {"Host": ok})[0] == 200


def test_only_the_two_thumbnails_exist(console):
    _, base = console
    for name in ("evidence.jpg", "current.png", "..", "reference.jpg.bak"):
        status, headers, _ = get(base, f"/api/cameras/street/{name}")
        assert status == 404 and headers["content-type"] == "application/json", name


def test_a_drift_events_evidence_picture_is_served_and_linked(console):
    d, base = console

    def drift_event() -> dict | None:
        events = get_json(base, "/api/cameras/hall")[1]["events"]
        return next((e for e in events if e["type"] == "drift_started" and e["evidence"]), None)

    e = d.wait("the hall camera's drift_started with evidence", drift_event, timeout=90)
    assert "/" not in e["evidence"] and e["evidence"].startswith("hall_")    # a file name, never a path
    status, headers, body = get(base, f"/api/cameras/hall/events/{e['id']}/evidence.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert f"/api/cameras/hall/events/{e['id']}/evidence.jpg" in get(base, "/cameras/hall")[2].decode()
    assert get_json(base, "/api/cameras")[1]["cameras"][0]["id"] == "hall"       # drifted first
    # Another camera's event, an unknown event, a path: a JSON 404 each.
    for path in (f"/api/cameras/street/events/{e['id']}/evidence.jpg", "/api/cameras/hall/events/nope/evidence.jpg",
                 "/api/cameras/hall/events/..%2F..%2Fcamwatch.db/evidence.jpg"):
        status, headers, body = get(base, path)
        assert status == 404 and headers["content-type"] == "application/json", path


def test_a_drift_shows_in_the_24_hour_history_and_its_chart(console):
    d, base = console
    h = d.wait("a drifted point in hall's history",
               lambda: (lambda h: h if any(p["drifted"] for p in h["points"]) else None)(
                   get_json(base, "/api/cameras/hall/history")[1]), timeout=90)
    assert h["bucket_s"] == BUCKET_S and 1 <= len(h["points"]) <= 2
    p = h["points"][-1]
    assert p["checks"] >= p["drifted"] >= 1 and p["similarity_min"] < p["threshold"]
    html = get(base, "/cameras/hall")[2].decode()
    assert '<svg class="chart"' in html and 'class="drift"' in html and "<script" not in html.split("</head>")[1]
    assert get(base, "/api/cameras/nope/history")[0] == 404



# -- operators: log in, accept the current view (these run last: a failed login counts against 127.0.0.1) ----

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def post(base: str, path: str, fields: dict, cookies: dict | None = None) -> tuple[int, dict, str]:
    """A form POST as a browser sends it, redirects not followed: (status, headers, body)."""
    data = urllib.parse.urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    req = urllib.request.Request(base + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def cookie(headers: dict, name: str) -> tuple[str, str] | None:
    """(value, attributes) of the cookie ``name`` that an answer sets."""
    for raw in [v for k, v in headers.items() if k.lower() == "set-cookie"]:
        m = re.match(rf"{name}=([^;]*);?(.*)", raw)
        if m:
            return m.group(1), m.group(2)
    return None


def login_form(base: str) -> tuple[str, str]:
    """(csrf field, login cookie) from GET /login."""
    status, headers, body = get(base, "/login")
    assert status == 200
    field = re.search(r'name="csrf" value="([^"]+)"', body.decode()).group(1)
    got = cookie(headers, "camwatch_login")
    assert got is not None and "httponly" in got[1].lower() and "samesite=strict" in got[1].lower()
    return field, got[0]


def log_in(base: str, name: str = "alice") -> tuple[str, str]:
    """(session cookie, the session's CSRF token) of a logged-in operator."""
    field, login_cookie = login_form(base)
    status, headers, _ = post(base, "/login", {"csrf": field, "name": name, "token": TOKEN},
                              {"camwatch_login": login_cookie})
    assert status == 303
    sid, attrs = cookie(headers, "camwatch_session")
    assert "httponly" in attrs.lower() and "samesite=strict" in attrs.lower()
    page = get(base, "/cameras/street", {"Cookie": f"camwatch_session={sid}"})[2].decode()
    assert f'<span id="who">{name}</span>' in page and 'action="/cameras/street/accept"' in page
    return sid, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_a_login_needs_the_forms_csrf_token_and_the_right_token(console):
    _, base = console
    assert 'href="/login"' in get(base, "/")[2].decode() and 'action="/cameras/street/accept"' not in \
        get(base, "/cameras/street")[2].decode()           # read-only until logged in
    field, login_cookie = login_form(base)
    for fields, cookies in (({"name": "alice", "token": TOKEN}, {"camwatch_login": login_cookie}),      # no csrf
                            ({"csrf": field, "name": "alice", "token": TOKEN}, {}),                     # no cookie
                            ({"csrf": "forged", "name": "alice", "token": TOKEN}, {"camwatch_login": login_cookie})):
        status, headers, _ = post(base, "/login", fields, cookies)
        assert status == 403 and cookie(headers, "camwatch_session") is None
    status, headers, body = post(base, "/login", {"csrf": field, "name": "mallory", "token": "not-the-token-at-all"},
                                 {"camwatch_login": login_cookie})
    assert status == 401 and "wrong token" in body and cookie(headers, "camwatch_session") is None
    status, _, body = post(base, "/login", {"csrf": field, "name": "<script>", "token": TOKEN},
                           {"camwatch_login": login_cookie})
    assert status == 400 and "<script>" not in body
    log_in(base)


def test_an_accept_without_a_session_or_its_csrf_token_changes_nothing(console):
    d, base = console
    before = refs(base, "street")
    sid, csrf = log_in(base)
    for fields, cookies, status in (({"csrf": csrf, "label": "default"}, {}, 401),
                                    ({"label": "default"}, {"camwatch_session": sid}, 403),
                                    ({"csrf": "forged", "label": "default"}, {"camwatch_session": sid}, 403),
                                    ({"csrf": csrf, "label": " bad"}, {"camwatch_session": sid}, 400)):
        got = post(base, "/cameras/street/accept", fields, cookies)
        assert got[0] == status, got
    assert post(base, "/cameras/nope/accept", {"csrf": csrf}, {"camwatch_session": sid})[0] == 404
    assert post(base, "/cameras/attic/accept", {"csrf": csrf}, {"camwatch_session": sid})[0] == 409
    time.sleep(3)   # three checks' time: an accept wrongly queued would have been carried out
    assert refs(base, "street") == before
    assert not [e for e in get_json(base, "/api/cameras/street")[1]["events"] if e["type"] == "reference_accepted"]


def test_accepting_the_current_view_makes_it_the_reference_and_records_who(console):
    d, base = console
    d.wait("hall drifted", lambda: get_json(base, "/api/cameras/hall")[1]["state"] == "drifted", timeout=90)
    before = refs(base, "hall")
    sid, csrf = log_in(base, "bob")
    status, headers, _ = post(base, "/cameras/hall/accept", {"csrf": csrf, "label": "default"},
                              {"camwatch_session": sid})
    assert status == 303 and headers["location"].startswith("/cameras/hall")
    d.wait("hall's new reference", lambda: refs(base, "hall") != before, timeout=30)
    after = refs(base, "hall")
    assert len(after) == 1 and after[0][0] != before[0][0] and after[0][1] == "default"
    d.wait("hall back to ok", lambda: get_json(base, "/api/cameras/hall")[1]["state"] == "ok", timeout=60)
    events = get_json(base, "/api/cameras/hall")[1]["events"]
    accepted = [e for e in events if e["type"] == "reference_accepted"]
    assert len(accepted) == 1 and "bob accepted the current view" in accepted[0]["message"]
    assert any(e["type"] == "drift_cleared" for e in events)
    assert "bob accepted the current view as reference" in d.log()


def test_logging_out_ends_the_session(console):
    _, base = console
    sid, csrf = log_in(base, "carol")
    assert post(base, "/logout", {}, {"camwatch_session": sid})[0] == 403            # no csrf: still in
    assert post(base, "/logout", {"csrf": csrf}, {"camwatch_session": sid})[0] == 303
    assert post(base, "/cameras/street/accept", {"csrf": csrf}, {"camwatch_session": sid})[0] == 401


def test_failed_logins_are_rate_limited(console):
    _, base = console
    field, login_cookie = login_form(base)
    statuses = [post(base, "/login", {"csrf": field, "name": "eve", "token": f"guess-{i}"},
                     {"camwatch_login": login_cookie})[:2] for i in range(6)]
    assert [s for s, _ in statuses].count(401) <= 5 and statuses[-1][0] == 429
    assert int(statuses[-1][1]["retry-after"]) > 0
    # Even the right token waits now.
    assert post(base, "/login", {"csrf": field, "name": "alice", "token": TOKEN}, {"camwatch_login": login_cookie})[0] \
        == 429
