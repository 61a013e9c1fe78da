"""Config values in process: effective values and defaults, paths, durations, ${ENV} forms,
YAML anchors, and which values are secrets (query values, ${ENV} by position, fragments).

Split from test_config.py (loading errors and ``camwatch validate``), whose helpers this imports.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from test_config import EXAMPLE, validate, write

from camwatch.config import CameraConfig, Config, load_config, parse_active_hours, parse_duration
from camwatch.core.errors import ConfigError
from camwatch.core.secrets import scrub

# -- in-process: effective values ------------------------------------------------------------


@pytest.fixture
def example_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "car-park-password").write_text("digest-pass-77\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("FRONT_DOOR_PASSWORD", "p@ss:w/rd-1")
    monkeypatch.setenv("LOADING_BAY_PASSWORD", "bay-pass-42")
    monkeypatch.setenv("BACK_GATE_PASSWORD", "gate-pass-31")
    monkeypatch.setenv("CAMWATCH_WEBHOOK_TOKEN", "tok-1234567")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX")
    return creds


def test_example_config_loads(example_env: Path) -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    ids = [c.id for c in config.cameras]
    assert ids == ["front-door", "car-park", "loading-bay", "back-gate", "old-lobby", "demo-street"]
    assert [c.id for c in config.cameras if not c.enabled] == ["old-lobby"]
    front = config.camera("front-door")
    # a password with URL characters is percent-encoded into the RTSP URL, plain in .password
    assert front.url == "rtsp://camwatch:p%40ss%3Aw%2Frd-1@192.168.1.20:554/Streaming/Channels/102"
    assert front.password == "p@ss:w/rd-1" and front.username == "camwatch"
    assert front.redacted_url == "rtsp://camwatch:***@192.168.1.20:554/Streaming/Channels/102"
    assert front.interval == 30 and front.timeout == 10 and front.confirm == 3
    assert len(front.roi) == 1 and len(front.mask) == 1
    park = config.camera("car-park")
    assert (park.username, park.password, park.auth) == ("camwatch", "digest-pass-77", "digest")
    assert park.threshold == 0.82 and park.confirm == 4 and park.timeout == 5
    assert park.active_hours == ((360, 720), (780, 1350))
    assert config.camera("loading-bay").mode == "stream"
    gate = config.camera("back-gate")
    assert gate.url.endswith("?loginuse=gateview&loginpas=gate-pass-31&channel=1")  # sent as written
    assert gate.redacted_url == "http://192.168.1.24/snapshot.cgi?loginuse=***&loginpas=***&channel=1"
    assert config.camera("demo-street").auto_enroll and not front.auto_enroll
    hooks = config.settings.webhooks
    assert hooks[0].headers == {"Authorization": "Bearer tok-1234567"} and hooks[0].timeout == 5
    assert hooks[1].format == "slack" and hooks[1].verify_tls
    for secret in ("p@ss:w/rd-1", "digest-pass-77", "bay-pass-42", "tok-1234567", "XXXXXXXXXXXXXXXX",
                   "gate-pass-31", "gateview"):
        assert secret in config.secrets
        assert secret not in repr(config)
        assert secret not in scrub(f"connecting with {secret}")  # registered for log scrubbing


def test_defaults_and_effective_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = load_config(write(tmp_path, "cameras:\n  - id: cam\n    url: demo:street\n"))
    s = config.settings
    assert (s.model, s.device, s.require_gpu, str(s.state_dir)) == (None, "auto", False, "/var/lib/camwatch")
    assert (s.metrics.address, s.metrics.port, s.metrics.enabled) == ("127.0.0.1", 9808, True)
    assert (s.interval, s.timeout, s.threshold, s.confirm, s.recover) == (60, 10, None, 3, 2)
    assert (s.calibration.checks, s.workers, s.webhooks) == (8, 8, ())
    assert (s.evidence.keep, s.evidence.enabled) == (500, True)
    assert s.events.keep_days == 90
    cam = config.cameras[0]
    assert (cam.name, cam.mode, cam.interval, cam.timeout, cam.enabled, cam.auto_enroll) == \
        ("cam", "snapshot", 60, 10, True, False)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/camwatch-unit:/var/lib/other")
    assert load_config(tmp_path / "cameras.yaml").settings.state_dir == Path("/var/lib/camwatch-unit")


def test_settings_are_camera_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
settings: {interval: 5m, timeout: 1500ms, threshold: 0.7, confirm: 5, recover: 4}
cameras:
  - {id: a, url: demo:street}
  - {id: b, url: demo:shop, interval: 1h30m, threshold: -0.5, confirm: 1}
"""))
    a, b = config.cameras
    assert (a.interval, a.timeout, a.threshold, a.confirm, a.recover) == (300, 1.5, 0.7, 5, 4)
    assert (b.interval, b.threshold, b.confirm, b.recover) == (5400, -0.5, 1, 4)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    folder = tmp_path / "etc" / "camwatch"
    folder.mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "models" / "m.onnx").write_bytes(b"x")
    write(folder, "settings:\n  state_dir: ./state\n  model: models/m.onnx\n"
                    "cameras:\n  - id: cam\n    url: clips/door.mp4\n")
    monkeypatch.chdir(tmp_path)  # somewhere else
    config = load_config(Path("etc/camwatch/cameras.yaml"))
    assert config.settings.state_dir == folder / "state"
    assert config.settings.model == folder / "models" / "m.onnx"
    assert config.cameras[0].url == str(folder / "clips" / "door.mp4")
    assert config.path == Path("etc/camwatch/cameras.yaml")


def test_active_at_across_midnight() -> None:
    night = CameraConfig(id="n", url="demo:street", active_hours=parse_active_hours("22:00-06:00"))
    at = lambda h, m: datetime(2024, 5, 1, h, m)  # noqa: E731
    assert night.active_at(at(22, 0)) and night.active_at(at(23, 59)) and night.active_at(at(0, 0))
    assert night.active_at(at(5, 59))
    assert not night.active_at(at(6, 0)) and not night.active_at(at(12, 0)) and not night.active_at(at(21, 59))
    split = CameraConfig(id="s", url="demo:street",
                         active_hours=parse_active_hours(["06:00-12:00", "13:00-24:00"]))
    assert split.active_at(at(6, 0)) and not split.active_at(at(12, 30)) and split.active_at(at(23, 59))
    assert not split.active_at(at(0, 0))
    assert CameraConfig(id="a", url="demo:street").active_at(at(3, 0))


def test_duration_forms() -> None:
    assert parse_duration(30) == 30 and parse_duration(2.5) == 2.5 and parse_duration("45") == 45
    assert parse_duration("30s") == 30 and parse_duration("5m") == 300 and parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5
    # what `camwatch events --since` takes as well: one parser for both
    assert parse_duration("3d") == 3 * 86400 and parse_duration("1w") == 604800
    assert parse_duration("5min") == 300 and parse_duration("90 sec") == 90 and parse_duration("2H") == 7200
    for bad in ("abc", "0", -1, "-5s", True, None, "5 parsecs", float("nan")):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_env_substitution_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_HOST", "10.1.2.3")
    monkeypatch.delenv("CAM_PATH", raising=False)
    config = load_config(write(tmp_path, "cameras:\n  - id: cam\n"
                                         "    url: rtsp://${CAM_HOST}/${CAM_PATH:-stream1}\n"
                                         "    name: costs $${DOLLARS}\n"))
    assert config.cameras[0].url == "rtsp://10.1.2.3/stream1"
    assert config.cameras[0].name == "costs ${DOLLARS}"
    assert "10.1.2.3" not in config.secrets  # a host is not a secret


def test_camera_lookup_names_unknown_id(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "cameras:\n  - {id: front-door, url: demo:street}\n"
                                         "  - {id: yard, url: demo:shop}\n"))
    assert config.camera("yard").url == "demo:shop"
    with pytest.raises(ConfigError, match=r"unknown camera 'front-dor'; did you mean 'front-door'\?"):
        config.camera("front-dor")


def test_load_config_raises_one_error_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "settings: {workers: 0}\ncameras:\n  - {id: a, url: demo:street, recover: 0}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith(f"{path}:1: settings.workers: 0: ")


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    """x- top-level keys hold anchors; a camera's own key overrides a merged one, twice is an error."""
    path = write(tmp_path, """\
x-defaults: &d {url: demo:street, interval: 5, confirm: 4}
cameras:
  - <<: *d
    id: a
  - <<: *d
    id: b
    interval: 7
""")
    a, b = load_config(path).cameras
    assert (a.url, a.interval, a.confirm, b.url, b.interval, b.confirm) == \
        ("demo:street", 5, 4, "demo:street", 7, 4)
    path.write_text(path.read_text() + "    interval: 8\n")
    with pytest.raises(ConfigError, match=r":8: cameras\[1\]\.interval: duplicate key \(first at line 7\)"):
        load_config(path)


# -- issue 22 row 3: query values, ${ENV} by position, fragments, short passwords ------------


def test_every_query_value_is_secret_unless_public(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys the old name pattern missed (loginuse, loginpas, psw), an ${ENV} query value, a 2-character
    password and query value: masked by position in the URL whatever their length; public keys shown."""
    monkeypatch.setenv("CAM_PSW", "psw-from-env-61")
    config = load_config(write(tmp_path, """cameras:
  - id: login
    url: http://10.0.0.5/snap.cgi?loginuse=operator7&loginpas=lp-secret-44&channel=1&subtype=0
    public_query: [channel]
  - id: envq
    url: rtsp://u:Q7@10.0.0.6:554/s?psw=${CAM_PSW}&k=x9&transport=udp
  - id: demo
    url: demo:lobby?seed=3&drift=turn
"""))
    login, envq, demo = config.cameras
    assert login.url == "http://10.0.0.5/snap.cgi?loginuse=operator7&loginpas=lp-secret-44&channel=1&subtype=0"
    assert login.redacted_url == "http://10.0.0.5/snap.cgi?loginuse=***&loginpas=***&channel=1&subtype=***"
    assert envq.url == "rtsp://u:Q7@10.0.0.6:554/s?psw=psw-from-env-61&k=x9&transport=udp"
    assert envq.redacted_url == "rtsp://u:***@10.0.0.6:554/s?psw=***&k=***&transport=udp"
    assert demo.redacted_url == "demo:lobby?seed=3&drift=turn"  # a synthetic scene's settings, no credential
    assert {"operator7", "lp-secret-44", "psw-from-env-61"} <= config.secrets
    # Free text masks what it can by value (3 characters and more) and every URL by position:
    line = scrub(f"open {envq.url} failed; {login.url}: 401 for operator7")
    assert line == ("open rtsp://***@10.0.0.6:554/s?psw=***&k=***&transport=udp failed; "
                    "http://10.0.0.5/snap.cgi?loginuse=***&loginpas=***&channel=1&subtype=***: 401 for ***")
    # ...but not a 2-character value outside a URL: it would blank every "x9" of every message.
    assert scrub("code x9") == "code x9"


def test_env_values_are_secret_where_a_credential_can_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CAM_HOST": "10.9.8.7", "CAM_PATH": "stream-tok-88", "CAM_USER": "envuser-3", "IVAL": "300",
           "WHOLE": "rtsp://who:whole-pw-5@10.1.1.1/live?tk=whole-q-6", "CH": "101"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    config = load_config(write(tmp_path, """\
settings:
  interval: ${IVAL}
cameras:
  - id: a
    url: rtsp://${CAM_HOST}/${CAM_PATH}?channel=${CH}
    public_query: [channel]
  - id: b
    url: ${WHOLE}
  - id: c
    url: http://10.0.0.9/snap.jpg
    username: ${CAM_USER}
    password: pw
"""))
    a, b, _ = config.cameras
    assert config.settings.interval == 300 and "300" not in config.secrets  # a setting: "300" stays readable
    assert "10.9.8.7" not in config.secrets and "101" not in config.secrets  # a host, a public query value
    assert {"stream-tok-88", "envuser-3", "whole-pw-5", "whole-q-6"} <= config.secrets
    assert a.redacted_url == "rtsp://10.9.8.7/***?channel=101"
    assert b.redacted_url == "rtsp://who:***@10.1.1.1/live?tk=***"  # a whole URL from ${ENV}: by its parts


def test_fragments_are_dropped_with_a_warning(tmp_path: Path) -> None:
    """Never sent (the effective URL has none), never shown (validate names the line, not the text)."""
    path = write(tmp_path, """settings:
  webhooks:
    - url: https://hooks.example/in?t=ab#hookfrag-77
cameras:
  - id: cam
    url: http://10.0.0.5/snap.jpg?channel=2#camfrag-secret-1
    public_query: [channel, chanel]
""")
    config = load_config(path)
    assert config.cameras[0].url == "http://10.0.0.5/snap.jpg?channel=2"
    assert config.cameras[0].redacted_url == "http://10.0.0.5/snap.jpg?channel=2"
    assert config.settings.webhooks[0].url == "https://hooks.example/in?t=ab"
    assert {"camfrag-secret-1", "hookfrag-77"} <= config.secrets
    r = validate(path)
    assert r.returncode == 0, r.stderr
    assert f"{path}:3: settings.webhooks[0].url: the #fragment is dropped" in r.stderr
    assert f"{path}:6: cameras[0].url: the #fragment is dropped" in r.stderr
    assert f"{path}:7: cameras[0].public_query: 'chanel' is not a query key" in r.stderr
    assert "camfrag" not in r.stdout + r.stderr and "hookfrag" not in r.stdout + r.stderr


def test_public_query_refuses_credential_names(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - id: cam\n    url: http://10.0.0.5/s.jpg?pwd=sec-ret-5&ch=1\n"
                           "    public_query: [ch, pwd]\n")
    r = validate(path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{path}:4: cameras[0].public_query: 'pwd' is named like a credential" in r.stderr
    assert "sec-ret-5" not in r.stdout + r.stderr


def test_the_store_url_and_which_of_its_parts_are_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``settings.store``: a PostgreSQL URL whose password (given or from ${ENV}) and credential-named
    libpq parameters are secrets, its other parameters settings; anything else is one line naming it."""
    assert load_config(write(tmp_path, "cameras:\n  - {id: a, url: demo:street}\n")).settings.store is None
    monkeypatch.setenv("DB_PASS", "db-pw-4411")
    monkeypatch.setenv("DB_HOST", "db.example.net")
    config = load_config(write(tmp_path, """\
settings:
  store: postgresql://camwatch:${DB_PASS}@${DB_HOST}:5432/camwatch?sslmode=require&sslpassword=key-pw-77
cameras:
  - {id: a, url: demo:street}
"""))
    assert config.settings.store == ("postgresql://camwatch:db-pw-4411@db.example.net:5432/camwatch"
                                     "?sslmode=require&sslpassword=key-pw-77")
    assert {"db-pw-4411", "key-pw-77"} <= config.secrets
    assert not {"require", "db.example.net", "camwatch"} & config.secrets   # settings, not secrets
    assert "db-pw-4411" not in repr(config.settings)
    for text, why in (("mysql://u:db-pw-4411@h/d", "unsupported store 'mysql'"),
                      ("postgresql://u:db-pw-4411@h:port/d", "port is not a number")):
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, f"settings:\n  store: {text}\ncameras:\n  - {{id: a, url: demo:street}}\n"))
        message = str(err.value)
        assert why in message and "settings.store" in message and ":2:" in message
        assert "db-pw-4411" not in message and "\n" not in message
