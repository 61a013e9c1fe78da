"""Deploy files checked by the real tools: promtool (rules, rule unit tests, config) and
systemd-analyze verify (unit alone and with the GPU drop-in, stderr must stay empty).
Grafana cannot run here: its dashboard's queries are run by tests/test_prometheus.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNIT = DEPLOY / "systemd" / "camwatch.service"
GPU = DEPLOY / "systemd" / "camwatch.service.d" / "gpu.conf"
RULES = DEPLOY / "prometheus" / "camwatch.rules.yml"
FLEET_RULES = DEPLOY / "prometheus" / "camwatch-fleet.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "camwatch.json"

promtool = shutil.which("promtool")
systemd_analyze = shutil.which("systemd-analyze")
needs_promtool = pytest.mark.skipif(not promtool, reason="promtool not installed (scripts/test.sh installs prometheus)")
needs_systemd = pytest.mark.skipif(not systemd_analyze, reason="systemd-analyze not installed")


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


@needs_promtool
def test_promtool_check_rules():
    r = run(promtool, "check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 9 rules found" in r.stdout


@needs_promtool
def test_promtool_check_fleet_rules():
    r = run(promtool, "check", "rules", str(FLEET_RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 3 rules found" in r.stdout


@needs_promtool
@pytest.mark.parametrize("tests", ["camwatch.rules.test.yml", "camwatch-fleet.rules.test.yml"])
def test_promtool_rule_unit_tests(tests):
    r = run(promtool, "test", "rules", tests, cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@needs_promtool
def test_promtool_check_example_config():
    r = run(promtool, "check", "config", "prometheus.example.yml", cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("rules,expected", [
    (RULES, {"CamwatchViewDrifted", "CamwatchCameraDown", "CamwatchCameraNotChecked",
             "CamwatchInferenceOnCPU", "CamwatchDaemonDown", "CamwatchDaemonAbsent"}),
    (FLEET_RULES, {"CamwatchMemberDown", "CamwatchCamerasUnwatched", "CamwatchFleetUnbalanced"}),
], ids=["daemon", "fleet"])
def test_every_alert_has_for_severity_summary_description(rules, expected):
    doc = yaml.safe_load(rules.read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert expected <= names
    for a in alerts:
        assert a.get("for"), a["alert"]
        assert a["labels"]["severity"] in ("critical", "warning", "info"), a["alert"]
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]
    tested = yaml.safe_load(rules.with_name(rules.name.replace(".yml", ".test.yml")).read_text())
    covered = {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"]}
    assert covered == names  # every alert has a unit test


def _verify(tmp_path: Path, with_gpu: bool) -> subprocess.CompletedProcess:
    """systemd-analyze verify on a copy whose ExecStart names a binary that exists here."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/camwatch/venv/bin/camwatch " in text
    (tmp_path / "camwatch.service").write_text(
        text.replace("ExecStart=/opt/camwatch/venv/bin/camwatch ", "ExecStart=/bin/true "))
    if with_gpu:
        (tmp_path / "camwatch.service.d").mkdir()
        shutil.copy(GPU, tmp_path / "camwatch.service.d" / "gpu.conf")
    return run(systemd_analyze, "verify", str(tmp_path / "camwatch.service"))


@needs_systemd
@pytest.mark.parametrize("with_gpu", [False, True], ids=["cpu", "gpu-drop-in"])
def test_systemd_verify_is_clean(tmp_path, with_gpu):
    r = _verify(tmp_path, with_gpu)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr


@needs_systemd
def test_systemd_verify_would_catch_a_bad_key(tmp_path):
    """The harness itself: a misspelt key in the drop-in must show up on stderr."""
    (tmp_path / "camwatch.service.d").mkdir()
    (tmp_path / "camwatch.service.d" / "typo.conf").write_text("[Service]\nWatchdogSecs=10\n")
    r = _verify(tmp_path, with_gpu=False)
    assert "WatchdogSecs" in r.stderr


def _service_keys(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of the unit (the last one wins, as in systemd for single-valued keys)."""
    keys = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            keys[k.strip()] = v.strip()
    return keys


def test_unit_settings():
    s = _service_keys(UNIT)
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["TimeoutStopSec"] == "15"
    for key in ("StateDirectory", "CacheDirectory", "ConfigurationDirectory"):
        assert s[key] == "camwatch"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "PrivateDevices": "yes", "User": "camwatch"}.items():
        assert s[key] == value, key
    assert "LoadCredential=" in UNIT.read_text()
    gpu = GPU.read_text()
    assert "PrivateDevices=no" in gpu
    for dev in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"):
        assert f"DeviceAllow=/dev/{dev} rw" in gpu


def _exprs(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    return exprs


def test_dashboard_is_provisionable():
    text = DASHBOARD.read_text()
    d = json.loads(text)
    assert d["uid"] == "camwatch-overview"
    assert "DS_PROMETHEUS" not in text and "__inputs" not in d  # breaks provisioning (grafana#10786)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["camera"]["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"] for p in d["panels"]).lower()
    for needed in ("ok", "drifted", "unavailable", "similarity", "availability", "fetch latency",
                   "inference latency", "throughput", "scheduler lag", "drift alerts"):
        assert needed in titles, needed
    exprs = _exprs(d)
    assert all('camera=~"$camera"' in e for e in exprs if "camwatch_camera_" in e)


def test_grafana_provisioning_points_at_the_dashboard():
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "camwatch.yml").read_text())
    assert ds["apiVersion"] == 1 and ds["datasources"][0]["type"] == "prometheus"
    dash = yaml.safe_load((prov / "dashboards" / "camwatch.yml").read_text())
    provider = dash["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/var/lib/grafana/dashboards")
