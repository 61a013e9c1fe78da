"""Every PromQL expression of the Grafana dashboard and the alert rules, run by a REAL Prometheus
(Debian's /usr/bin/prometheus on loopback, 1 s scrapes) against a REAL camwatch process.

Grafana itself cannot be installed here, so its part is played by substituting the dashboard
variables ($camera, $__rate_interval) the way Grafana would and querying Prometheus's HTTP API.

Two targets:
- a process serving camwatch.metrics with cameras in every state (always runs);
- the real daemon, `python -m camwatch --config F`, on file-image cameras with auto_enroll,
  one of which is then replaced by a different view (drifted) and one that does not exist
  (unavailable).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "camwatch.json"
RULES = REPO / "deploy" / "prometheus" / "camwatch.rules.yml"
PROMETHEUS = "/usr/bin/prometheus"

pytestmark = pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                                reason=f"{PROMETHEUS} not installed (scripts/test.sh installs Debian's prometheus)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_exprs() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in d["annotations"]["list"]]
    exprs.append(d["templating"]["list"][1]["query"]["query"].replace("label_values(", "group by (camera) (")
                 .replace(", camera)", ")"))  # the camera variable's metric, as a query
    return exprs


def grafana_substitute(expr: str) -> str:
    """Grafana's variable interpolation: All cameras, a rate window of 4 scrapes or more."""
    return expr.replace("$camera", ".*").replace("$__rate_interval", "1m")


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


SELECTOR = re.compile(r"\b((?:camwatch|up|process)_?[a-z_]*)(\{[^}]*\})?")


def selectors(expr: str) -> set[str]:
    """The vector selectors of an expression (metric name plus label matchers)."""
    out = set()
    for m in SELECTOR.finditer(expr):
        name = m.group(1)
        if name in ("up",) or name.startswith("camwatch_") or name.startswith("process_"):
            out.add(name + (m.group(2) or ""))
    return out


class Prom:
    def __init__(self, tmp: Path, targets: list[str], rules: tuple[Path, ...] = (RULES,)):
        self.port = free_port()
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [{"job_name": "camwatch", "static_configs": [{"targets": targets}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.wait(lambda: self.get("/-/ready", raw=True) is not None, 30, "Prometheus ready")

    def get(self, path: str, raw: bool = False, **params):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            if raw:
                return None
        except OSError:
            return None
        return body if raw else json.loads(body)

    def query(self, expr: str) -> dict:
        return self.get("/api/v1/query", query=expr)

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {Path(self.log.name).read_text()[-2000:]}")
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def check_all_queries(prom: Prom, timeout: float = 90) -> None:
    """Every dashboard expression and every selector of every rule parses and returns series."""
    dash = [grafana_substitute(e) for e in dashboard_exprs()]
    rules = rule_exprs()
    rule_selectors = {s for e in rules.values() for s in selectors(e)}
    pending = set(dash) | rule_selectors
    last: dict[str, object] = {}

    def all_have_series() -> bool:
        for expr in sorted(pending):
            res = prom.query(expr)
            assert res is not None and res.get("status") == "success", (expr, res)  # parses and runs
            last[expr] = res["data"]["result"]
            if res["data"]["result"]:
                pending.discard(expr)
        return not pending

    try:
        prom.wait(all_have_series, timeout, "every expression to return series")
    except AssertionError:
        raise AssertionError(f"no series for: {sorted(pending)}") from None
    for expr in rules.values():  # the whole rule expressions parse too (empty is fine: not firing)
        res = prom.query(expr)
        assert res["status"] == "success", (expr, res)
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert set(health) == set(rules)
    prom.wait(lambda: all(r["health"] == "ok" for g in prom.get("/api/v1/rules")["data"]["groups"]
                          for r in g["rules"]), 20, "every rule evaluated with health ok")


def active_alerts(prom: Prom) -> set[tuple[str, str]]:
    alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("camera", "")) for a in alerts}


FIXTURE = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from camwatch.service.metrics import Metrics
    m = Metrics()
    m.set_build_info("0.1.0", "camwatch-drift", "1")
    m.set_provider("CPUExecutionProvider", gpu_required=True)
    states = {{"gate": "ok", "yard": "drifted", "dock": "unavailable", "lobby": "no_reference",
               "spare": "disabled", "attic": "ok"}}
    for cam, state in states.items():
        m.camera_added(cam, state)
        m.set_state(cam, state)  # as the daemon's first check does (settles camwatch_camera_drifted)
    m.set_references("gate", 1, time.time() - 3600)
    m.sinks_added(["log", "pager"])
    m.set_store_ok("events", False); m.set_events_unwritten(3)  # a full disk: events held in memory
    server = m.serve("127.0.0.1", int(sys.argv[1]))
    print("serving", flush=True)
    while True:
        now = time.time()
        m.check_done("gate", "ok", 0.93, 0.80, at=now)
        m.check_done("yard", "drifted", 0.41, 0.80, at=now)
        m.alert("yard", "moved")
        m.frame_error("dock", "timeout"); m.check_done("dock", "error"); m.reconnected("dock")
        m.check_done("lobby", "no_reference", at=now)
        m.observe_fetch(0.05); m.observe_inference(0.004, 3); m.observe_lag(0.02)
        m.set_events_pending(2); m.delivery("pager", False); m.delivery("log", True)
        time.sleep(0.25)
""")


def test_dashboard_and_rules_against_a_metrics_process(tmp_path):
    port = free_port()
    script = tmp_path / "fixture.py"
    script.write_text(FIXTURE.format(repo=str(REPO)))
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE, text=True)
    prom = None
    try:
        assert proc.stdout.readline().strip() == "serving"
        dead = free_port()  # a second target nobody serves: up == 0 for the daemon-down rule
        prom = Prom(tmp_path, [f"127.0.0.1:{port}", f"127.0.0.1:{dead}"])
        check_all_queries(prom)
        want = {("CamwatchViewDrifted", "yard"), ("CamwatchCameraDown", "dock"),
                ("CamwatchCameraNotChecked", "attic"), ("CamwatchInferenceOnCPU", ""),
                ("CamwatchDaemonDown", ""), ("CamwatchEventsUndelivered", ""),
                ("CamwatchNoReference", "lobby"), ("CamwatchEventsStoreFailing", "")}
        prom.wait(lambda: want <= active_alerts(prom), 30, f"alerts {want} pending")
        got = active_alerts(prom)
        assert ("CamwatchViewDrifted", "gate") not in got
        assert ("CamwatchCameraNotChecked", "spare") not in got  # disabled: not expected to be checked
        assert not any(name == "CamwatchDaemonAbsent" for name, _ in got)
    finally:
        if prom:
            prom.close()
        proc.kill()
        proc.wait(10)


def _daemon_available() -> str | None:
    try:
        import camwatch.config  # noqa: F401
        import camwatch.service.daemon  # noqa: F401
    except ImportError as exc:
        return f"the daemon cannot run yet: {exc}"
    return None


def _scene(seed: int, path: Path) -> None:
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    img = np.full((360, 480, 3), 80, np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, 440)), int(rng.integers(0, 320))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 60)), y + int(rng.integers(10, 60))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    cv2.imwrite(str(path), img)


def test_dashboard_and_rules_against_the_real_daemon(tmp_path):
    reason = _daemon_available()
    if reason:
        pytest.skip(reason)
    port = free_port()
    media = tmp_path / "media"
    media.mkdir()
    _scene(1, media / "steady.png")
    _scene(2, media / "tampered.png")
    # A small real ONNX model (tests/modelkit.py) keeps this test independent of the shipped one.
    sys.path.insert(0, str(Path(__file__).parent))
    from modelkit import grid_model
    model = grid_model(tmp_path / "grid.onnx")
    config = {
        "settings": {"state_dir": str(tmp_path / "state"), "metrics": {"address": "127.0.0.1", "port": port},
                     "model": str(model),
                     "interval": 1, "timeout": 3, "confirm": 1, "recover": 1, "calibration": {"checks": 0},
                     "workers": 2, "device": "cpu"},
        "cameras": [
            {"id": "steady", "url": str(media / "steady.png"), "auto_enroll": True},
            {"id": "tampered", "url": str(media / "tampered.png"), "auto_enroll": True},
            {"id": "gone", "url": str(media / "missing.png"), "auto_enroll": True},
            {"id": "spare", "url": str(media / "steady.png"), "enabled": False},
        ],
    }
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "camwatch.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "camwatch", "--config", str(cfg)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    prom = None
    try:
        prom = Prom(tmp_path, [f"127.0.0.1:{port}"])

        def state(cam: str, s: str) -> bool:
            res = prom.query(f'camwatch_camera_state{{camera="{cam}",state="{s}"}} == 1')
            return bool(res and res["data"]["result"])

        try:
            prom.wait(lambda: state("steady", "ok") and state("tampered", "ok"), 90, "both cameras enrolled and ok")
            _scene(3, media / "tampered.png")  # a different view: drifted after `confirm` checks
            prom.wait(lambda: state("tampered", "drifted") and state("gone", "unavailable"), 60,
                      "tampered drifted, gone unavailable")
            check_all_queries(prom)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ncamwatch log:\n{Path(log.name).read_text()[-3000:]}") from None
        prom.wait(lambda: {("CamwatchViewDrifted", "tampered")} <= active_alerts(prom), 30,
                  "the drift alert pending")
        assert ("CamwatchViewDrifted", "steady") not in active_alerts(prom)
    finally:
        if prom:
            prom.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
