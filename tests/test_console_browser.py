"""The console in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) against a real daemon on demo cameras.

The fleet page lists every camera; when the demo lobby camera is turned, its
tile turns drifted while the page stays loaded (console.js polls /api/cameras),
with no reload: a marker set on the page's window before the drift must still be
there after it. Then an operator logs in, accepts the turned view from the
camera's page, and sees the camera return to ok while the reference changes in
the store; then silences it from the same page and sees the fleet say so.
"""

from __future__ import annotations

import shutil
import time
import urllib.request

import pytest
from daemon_helpers import Daemon
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from test_console import TOKEN, get_json, refs, start_daemon

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Debian's chromium and chromium-driver are not installed "
                                       "(apt-get install chromium chromium-driver)")

#: Seconds after start the lobby camera is turned: long enough to enrol and see it ok first.
DRIFT_AFTER = 15
CAMERAS = [
    {"id": "street", "name": "Street", "url": "demo:street?seed=1", "auto_enroll": True},
    {"id": "shop", "name": "Shop floor", "url": "demo:shop?seed=2", "auto_enroll": True},
    {"id": "lobby", "name": "Lobby", "url": f"demo:lobby?seed=3&drift_after={DRIFT_AFTER}&drift=turn",
     "auto_enroll": True},
]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    d, base = start_daemon(tmp_path_factory.mktemp("console-browser"), CAMERAS, token=TOKEN)
    try:
        yield d, base
    finally:
        d.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def _follow(browser, css: str) -> None:
    """Click what ``css`` names and wait until the page it leads to has replaced this one: a click
    returns before the browser navigates, and a busy machine showed the old page to the next find."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(old))


def _wait(what: str, cond, timeout: float, d: Daemon):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{d.log()[-2000:]}")


def test_fleet_page_lists_every_camera_and_a_turned_camera_turns_drifted_without_reload(console, browser):
    d, base = console
    d.wait("the console to answer", lambda: d.proc.poll() is None and _answers(base), timeout=60)
    browser.get(base + "/")
    tiles = browser.find_elements(By.CSS_SELECTOR, "#fleet .tile")
    assert {t.get_attribute("data-id") for t in tiles} == {"street", "shop", "lobby"}
    browser.execute_script("window.cwMarker = 'no reload';")

    def lobby_state() -> str:
        return browser.find_element(By.ID, "cam-lobby").get_attribute("data-state")

    _wait("the lobby tile to be ok", lambda: lobby_state() == "ok", 60, d)
    _wait("the lobby tile to turn drifted", lambda: lobby_state() == "drifted", 90, d)
    tile = browser.find_element(By.ID, "cam-lobby")
    assert "state-drifted" in tile.get_attribute("class")
    assert tile.find_element(By.CLASS_NAME, "state").text.startswith("drifted")
    assert browser.execute_script("return window.cwMarker") == "no reload"    # the same page all along
    # Drifted first, and the count follows.
    first = browser.find_element(By.CSS_SELECTOR, "#fleet .tile")
    assert first.get_attribute("data-id") == "lobby"
    assert browser.find_element(By.ID, "count-drifted").text == "1"
    # Its thumbnail is a real image the browser decoded.
    img = tile.find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/cameras", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def test_an_operator_logs_in_and_accepts_the_turned_view(console, browser):
    d, base = console
    d.wait("lobby drifted", lambda: get_json(base, "/api/cameras/lobby")[1]["state"] == "drifted", timeout=120)
    before = refs(base, "lobby")
    browser.get(base + "/cameras/lobby")
    assert not browser.find_elements(By.ID, "accept")            # read-only until logged in
    _follow(browser, "a.user")
    browser.find_element(By.NAME, "name").send_keys("dana")
    browser.find_element(By.NAME, "token").send_keys("a wrong token")
    _follow(browser, "form.login button")
    assert "wrong token" in browser.page_source and not browser.find_elements(By.ID, "who")
    browser.find_element(By.NAME, "name").send_keys("dana")
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    _follow(browser, "form.login button")
    assert browser.find_element(By.ID, "who").text == "dana"
    browser.get(base + "/cameras/lobby")
    _follow(browser, "#accept button")
    assert "next checked view becomes reference 'default'" in browser.find_element(By.ID, "notice").text
    page = browser.find_element(By.ID, "camera")
    _wait("the lobby page to show ok (polled, no reload)", lambda: page.get_attribute("data-state") == "ok", 60, d)
    after = refs(base, "lobby")
    assert after != before and after[0][0] != before[0][0]
    shown = browser.find_element(By.ID, "reference")
    _wait("the page to show the new reference", lambda: shown.get_attribute("src").endswith(f"?r={after[0][0]}"), 10, d)
    events = get_json(base, "/api/cameras/lobby")[1]["events"]
    assert any(e["type"] == "reference_accepted" and "dana" in e["message"] for e in events)


def test_the_operator_silences_the_camera_from_its_page_and_the_fleet_shows_it(console, browser):
    d, base = console
    browser.get(base + "/cameras/lobby")                       # still logged in as dana
    field = browser.find_element(By.CSS_SELECTOR, "#silence input[name=for]")
    field.clear()
    field.send_keys("30m")
    _follow(browser, "#silence button")
    assert "Alerts silenced" in browser.find_element(By.ID, "notice").text
    assert browser.find_element(By.CSS_SELECTOR, "#camera .state").text.endswith("· silenced")
    row = browser.find_element(By.CSS_SELECTOR, "#audit tbody tr")
    assert "dana" in row.text and "camera silenced" in row.text
    assert browser.find_elements(By.ID, "unsilence") and not browser.find_elements(By.ID, "silence")
    browser.get(base + "/")
    tile = browser.find_element(By.ID, "cam-lobby")
    assert "silenced" in tile.get_attribute("class").split()
    _wait("the poll to keep it silenced", lambda: tile.find_element(By.CLASS_NAME, "state").text.endswith("silenced")
          and browser.find_element(By.ID, "count-silenced").text == "1", 10, d)
