"""Operators' actions (service/actions.py) through every door against the real daemon conftest's
``console`` fixture shares with test_console.py: the JSON API (token), the console's forms (session +
CSRF) and the CLI (``camwatch camera ...`` beside the running daemon).

Requests here come from 127.0.0.2 (also loopback): test_console.py's rate-limit test leaves 127.0.0.1
waiting. porch was silenced with the CLI before the daemon started, then covered: its drift is
recorded, marked silenced (held back from every sink but the log), and its metric says until when.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import pytest
from daemon_helpers import camwatch
from test_console import TOKEN, get, get_json, refs

from camwatch.store.events import EventStore

SOURCE = ("127.0.0.2", 0)


def request(base: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict, str]:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30, source_address=SOURCE)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        headers: dict[str, str] = {}
        for k, v in r.getheaders():   # several Set-Cookie lines kept, joined
            headers[k.lower()] = f"{headers[k.lower()]}, {v}" if k.lower() in headers else v
        return r.status, headers, r.read().decode()
    finally:
        conn.close()


def api(base: str, cid: str, action: str, body: dict | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, _, text = request(base, "POST", f"/api/cameras/{cid}/{action}", json.dumps(body or {}).encode(), headers)
    return status, json.loads(text)


def form(base: str, path: str, fields: dict, sid: str | None = None) -> tuple[int, dict, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sid:
        headers["Cookie"] = f"camwatch_session={sid}"
    return request(base, "POST", path, urllib.parse.urlencode(fields).encode(), headers)


def log_in(base: str, name: str) -> tuple[str, str]:
    """(session id, CSRF token) of an operator logged in from 127.0.0.2."""
    status, headers, page = request(base, "GET", "/login")
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    login_cookie = headers["set-cookie"].split("camwatch_login=")[1].split(";")[0]
    status, headers, _ = request(base, "POST", "/login", urllib.parse.urlencode(
        {"csrf": csrf, "name": name, "token": TOKEN}).encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                                                "Cookie": f"camwatch_login={login_cookie}"})
    assert status == 303, status
    sid = headers["set-cookie"].split("camwatch_session=")[1].split(";")[0]
    page = request(base, "GET", "/cameras/yard", headers={"Cookie": f"camwatch_session={sid}"})[2]
    return sid, page.split('name="csrf" value="')[1].split('"')[0]


def camera(base: str, cid: str) -> dict:
    return get_json(base, f"/api/cameras/{cid}")[1]


def test_bad_api_actions_are_clear_json_errors_and_change_nothing(console):
    d, base = console
    d.wait("yard enrolled", lambda: refs(base, "yard"), timeout=30)
    before, before_refs = camera(base, "yard"), refs(base, "yard")
    assert api(base, "yard", "silence", {"for": "2h"}, token=None)[0] == 401
    assert api(base, "yard", "silence", {"for": "2h"}, token="not-the-token-at-all")[0] == 401
    for cid, action, body, status, words in (
            ("yard", "silence", {"for": "soon"}, 400, "period 'soon'"),
            ("yard", "silence", {"for": "90d"}, 400, "at most 30 days"),
            ("yard", "silence", {"for": "2h", "by": "<script>"}, 400, "who:"),
            ("nope", "silence", {"for": "2h"}, 404, "unknown camera 'nope'"),
            ("yard", "explode", {}, 404, "unknown action"),
            ("yard", "unsilence", {}, 409, "is not silenced"),
            ("yard", "enable", {}, 409, "already enabled"),
            ("attic", "disable", {}, 409, "disabled in the config"),
            ("yard", "remove-reference", {"reference": "1"}, 400, "confirm=yes"),
            ("yard", "remove-reference", {"reference": "999999", "confirm": "yes"}, 404, "no reference 999999"),
            ("yard", "add-reference", {"label": "default"}, 409, "already has a reference labelled 'default'")):
        got, answer = api(base, cid, action, body)
        assert got == status and words in answer["error"] and "nothing was done" in answer["error"], (action, answer)
    status, _, text = request(base, "POST", "/api/cameras/yard/silence", b"[1, 2]",
                              {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and "JSON object" in json.loads(text)["error"]
    after = camera(base, "yard")
    assert (after["silenced"], after["enabled"], refs(base, "yard")) == (before["silenced"], before["enabled"],
                                                                         before_refs)
    assert not after["audit"]


def test_a_camera_silenced_before_the_start_is_checked_but_its_drift_is_not_sent(console):
    d, base = console
    d.wait("porch drifted", lambda: camera(base, "porch")["state"] == "drifted", timeout=60)
    c = camera(base, "porch")
    assert c["silenced"] and c["silenced_by"] == "night shift" and c["silenced_until"] > time.time() + 3000
    started = [e for e in c["events"] if e["type"] == "drift_started"]
    assert started and all(e["silenced"] for e in started)
    assert [a["by"] for a in c["audit"]] == ["night shift"] and c["audit"][0]["type"] == "camera_silenced"
    events = EventStore(d.config.parent / "state")
    try:
        stored = {e.id: e for e in events.list("porch")}
        for e in started:   # held back from every sink but the log (tests/test_mqtt.py: a real MQTT sink)
            assert stored[e["id"]].details["silenced_until"] == pytest.approx(c["silenced_until"], abs=0.01)
    finally:
        events.close()
    assert abs(d.value("camwatch_camera_silenced_until_timestamp_seconds", camera="porch") - c["silenced_until"]) < 0.01
    assert d.value("camwatch_alerts_total", camera="porch", kind="covered") in (0, None)
    assert "state-drifted silenced" in get(base, "/")[2].decode()
    # Lifted from the API: alerts flow again, and the trail says who.
    status, done = api(base, "porch", "unsilence", {"by": "ops-script"})
    assert status == 200 and done["done"] and "ops-script lifted" in done["message"]
    c = camera(base, "porch")
    assert not c["silenced"] and c["audit"][0]["by"] == "ops-script"
    assert d.value("camwatch_camera_silenced_until_timestamp_seconds", camera="porch") == 0


def test_disable_with_the_cli_beside_the_daemon_then_enable_from_the_console(console):
    d, base = console
    env = {"CREDENTIALS_DIRECTORY": str(d.config.parent / "credentials")}
    bad = camwatch("camera", "silence", "yard", "a while", "--config", str(d.config), env=env)
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("camwatch: ")]   # (the config's warning aside)
    assert bad.returncode == 2 and len(errors) == 1 and errors[0].startswith("camwatch: period 'a while'") and \
        "Traceback" not in bad.stderr, bad.stderr
    r = camwatch("camera", "disable", "yard", "--by", "maint", "--config", str(d.config), env=env)
    assert r.returncode == 0 and "maint disabled its checks" in r.stdout, r.stderr
    # The console reads the store at once; the daemon takes the CLI's change up within 10 s.
    d.wait("yard disabled (within 10 s)", lambda: camera(base, "yard")["state"] == "disabled"
           and d.state("yard") == "disabled", timeout=25)
    c = camera(base, "yard")
    assert c["disabled_by"] == "maint" and not c["enabled"] and c["enabled_in_config"]
    checked = c["checked_at"]
    time.sleep(2.5)                                          # about two intervals: not checked
    assert camera(base, "yard")["checked_at"] == checked and d.state("yard") == "disabled"
    sid, csrf = log_in(base, "erin")
    page = request(base, "GET", "/cameras/yard", headers={"Cookie": f"camwatch_session={sid}"})[2]
    assert 'action="/cameras/yard/enable"' in page and "disabled by maint" in page
    assert form(base, "/cameras/yard/enable", {}, sid)[0] == 403                        # no CSRF token
    status, headers, _ = form(base, "/cameras/yard/enable", {"csrf": csrf}, sid)
    assert status == 303 and headers["location"] == "/cameras/yard?done=enable"
    d.wait("yard checked again", lambda: (camera(base, "yard")["checked_at"] or 0) > checked, timeout=15)
    assert camera(base, "yard")["state"] == "ok"
    assert [a["type"] for a in camera(base, "yard")["audit"][:2]] == ["camera_enabled", "camera_disabled"]


def test_add_a_night_reference_from_the_api_then_remove_it_but_never_the_last(console):
    d, base = console
    status, asked = api(base, "yard", "add-reference", {"label": "night", "by": "ops-script"})
    assert status == 202 and asked["label"] == "night" and not asked["done"]
    d.wait("yard's night reference", lambda: "night" in [r[1] for r in refs(base, "yard")], timeout=20)
    c = camera(base, "yard")
    night = next(r for r in c["references"] if r["label"] == "night")
    assert c["audit"][0]["type"] == "reference_added" and c["audit"][0]["by"] == "ops-script"
    sid, csrf = log_in(base, "frank")
    page = request(base, "GET", "/cameras/yard", headers={"Cookie": f"camwatch_session={sid}"})[2]
    assert page.count('action="/cameras/yard/remove-reference"') == 2
    assert form(base, "/cameras/yard/remove-reference", {"csrf": csrf, "reference": night["id"]}, sid)[0] == 400
    status, _, _ = form(base, "/cameras/yard/remove-reference",
                        {"csrf": csrf, "reference": night["id"], "confirm": "yes"}, sid)
    assert status == 303 and [r[1] for r in refs(base, "yard")] == ["default"]
    last = refs(base, "yard")[0][0]
    status, _, body = form(base, "/cameras/yard/remove-reference", {"csrf": csrf, "reference": last, "confirm": "yes"},
                           sid)
    assert status == 409 and "last" in body and refs(base, "yard")[0][0] == last
    c = camera(base, "yard")
    assert c["audit"][0]["type"] == "reference_removed" and c["audit"][0]["by"] == "frank"
    assert 'action="/cameras/yard/remove-reference"' not in \
        request(base, "GET", "/cameras/yard", headers={"Cookie": f"camwatch_session={sid}"})[2]


def test_the_reference_shows_its_learned_stable_and_busy_cells(console):
    d, base = console
    scene = d.wait("street's learned scene", lambda: (lambda s: s if s["cells"] else None)(
        get_json(base, "/api/cameras/street/scene")[1]), timeout=30)
    assert scene["reference"] == max(r[0] for r in refs(base, "street")) and scene["views"] >= 1
    assert len(scene["cells"]) == scene["rows"] >= 3 and {len(r) for r in scene["cells"]} == {scene["columns"]} == {16}
    assert set("".join(scene["cells"])) <= set("sb.") and "s" in "".join(scene["cells"])
    page = get(base, "/cameras/street")[2].decode()
    stable = "".join(scene["cells"]).count("s")
    assert page.count('<rect class="stable"') == stable and f"stable</span> {stable} cells" in page
    assert "<h2>Operators' actions</h2>" in page
    assert get_json(base, "/api/cameras/nope/scene")[0] == 404
