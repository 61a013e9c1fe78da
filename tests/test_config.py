"""Config loading and ``camwatch validate``, run as the user runs it.

Bad configs are checked through a real ``python -m camwatch validate`` subprocess:
exit code 2, every problem on its own line naming file, line and key path, no
traceback, no secret. Good configs are loaded in-process to check effective values:
those tests are in test_config_values.py, which imports the helpers below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "configs" / "cameras.example.yaml"
SECRETS = ("hunter2-secret", "env-pass-9876", "cred-pass-5432", "tok-abcdef-123456")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without variables a config could pick up by accident."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "CAMWATCH_CONFIG")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def validate(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camwatch", "validate", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, env=clean_env(**env), cwd=REPO)


def write(tmp_path: Path, text: str, name: str = "cameras.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    path.chmod(0o600)
    return path


GOOD_CAMERA = "  - id: cam\n    url: demo:street\n"

# (name, yaml, line, key path, words the message must hold); the line is 1-based
BAD = [
    ("malformed_yaml", "settings:\n  interval: 30\n cameras: [\n", 3, "", ["invalid YAML"]),
    ("unknown_key", "settings:\n  intervall: 30\ncameras:\n" + GOOD_CAMERA, 2, "settings.intervall",
     ["unknown key", "did you mean 'interval'"]),
    ("unknown_camera_key", "cameras:\n  - id: cam\n    url: demo:street\n    treshold: 0.9\n", 4,
     "cameras[0].treshold", ["did you mean 'threshold'"]),
    ("unknown_top_key", "setings: {}\ncameras:\n" + GOOD_CAMERA, 1, "setings", ["did you mean 'settings'"]),
    ("wrong_type_int", "settings:\n  confirm: three\ncameras:\n" + GOOD_CAMERA, 2, "settings.confirm",
     ["'three'", "whole number"]),
    ("negative_event_days", "settings:\n  events:\n    keep_days: -1\ncameras:\n" + GOOD_CAMERA, 3,
     "settings.events.keep_days", ["-1", "0 or more"]),
    ("unknown_events_key", "settings:\n  events: {keep: 3}\ncameras:\n" + GOOD_CAMERA, 2,
     "settings.events.keep", ["did you mean 'keep_days'"]),
    ("wrong_type_bool", "cameras:\n  - id: cam\n    url: demo:street\n    enabled: maybe\n", 4,
     "cameras[0].enabled", ["'maybe'", "true or false"]),
    ("wrong_type_mapping", "settings: [1, 2]\ncameras:\n" + GOOD_CAMERA, 1, "settings", ["expected a mapping"]),
    ("duplicate_id", "cameras:\n  - id: door\n    url: demo:street\n  - id: yard\n    url: demo:shop\n"
                     "  - id: door\n    url: demo:lobby\n", 6, "cameras[2].id",
     ["duplicate camera id", "line 2"]),
    ("bad_id", "cameras:\n  - id: Front Door\n    url: demo:street\n", 2, "cameras[0].id",
     ["did you mean 'front-door'"]),
    ("bad_scheme", "cameras:\n  - id: cam\n    url: ftp://cam.example/x.jpg\n", 3, "cameras[0].url",
     ["unsupported scheme 'ftp'"]),
    ("no_host", "cameras:\n  - id: cam\n    url: rtsp:///stream\n", 3, "cameras[0].url", ["no host"]),
    ("unset_env", "cameras:\n  - id: cam\n    url: rtsp://admin:${CAMWATCH_TEST_UNSET}@10.0.0.5/s\n", 3,
     "cameras[0].url", ["CAMWATCH_TEST_UNSET", "not set"]),
    ("no_credentials_dir", "cameras:\n  - id: cam\n    url: http://10.0.0.5/snap.jpg\n    username: u\n"
                           "    password: ${cred:cam-pass}\n", 5, "cameras[0].password",
     ["CREDENTIALS_DIRECTORY", "LoadCredential"]),
    ("bad_active_hours", "cameras:\n  - id: cam\n    url: demo:street\n    active_hours: 7am-5pm\n", 4,
     "cameras[0].active_hours", ["'7am-5pm'", "HH:MM-HH:MM"]),
    ("active_hours_25h", "cameras:\n  - id: cam\n    url: demo:street\n    active_hours: [\"06:00-12:00\", "
                         "\"13:00-25:00\"]\n", 4, "cameras[0].active_hours", ["25:00", "time of day"]),
    ("polygon_outside", "cameras:\n  - id: cam\n    url: demo:street\n    roi: [[[0, 0], [1.5, 0], [1, 1]]]\n",
     4, "cameras[0].roi", ["point 2", "outside 0..1"]),
    ("polygon_two_points", "cameras:\n  - id: cam\n    url: demo:street\n    mask:\n      - [[0, 0], [1, 1]]\n",
     4, "cameras[0].mask", ["needs at least 3"]),
    ("negative_interval", "cameras:\n  - id: cam\n    url: demo:street\n    interval: -30\n", 4,
     "cameras[0].interval", ["-30", "more than 0"]),
    ("duration_words", "settings:\n  interval: abc\ncameras:\n" + GOOD_CAMERA, 2, "settings.interval",
     ["'abc'", "expected seconds", "30s"]),
    ("threshold_range", "settings:\n  threshold: 1.5\ncameras:\n" + GOOD_CAMERA, 2, "settings.threshold",
     ["(-1, 1]"]),
    ("confirm_zero", "cameras:\n  - id: cam\n    url: demo:street\n    confirm: 0\n", 4, "cameras[0].confirm",
     ["1 or more"]),
    ("calibration_negative", "settings:\n  calibration: {checks: -1}\ncameras:\n" + GOOD_CAMERA, 2,
     "settings.calibration.checks", ["0 or more"]),
    ("metrics_port", "settings:\n  metrics:\n    port: 99999\ncameras:\n" + GOOD_CAMERA, 3,
     "settings.metrics.port", ["port"]),
    ("metrics_address", "settings:\n  metrics: {address: 'my host'}\ncameras:\n" + GOOD_CAMERA, 2,
     "settings.metrics.address", ["IP address or host name"]),
    ("webhook_scheme", "settings:\n  webhooks:\n    - url: smtp://mail/x\ncameras:\n" + GOOD_CAMERA, 3,
     "settings.webhooks[0].url", ["http"]),
    ("webhook_format", "settings:\n  webhooks:\n    - url: https://h.example/x\n      format: teams\n"
                       "cameras:\n" + GOOD_CAMERA, 4, "settings.webhooks[0].format", ["json, slack"]),
    ("webhook_missing_url", "settings:\n  webhooks:\n    - format: json\ncameras:\n" + GOOD_CAMERA, 3,
     "settings.webhooks[0].url", ["required"]),
    ("device", "settings:\n  device: gpu\ncameras:\n" + GOOD_CAMERA, 2, "settings.device",
     ["auto, cpu, cuda, tensorrt"]),
    ("camera_missing_url", "cameras:\n  - id: cam\n    name: x\n", 2, "cameras[0].url", ["required"]),
    ("auth_on_rtsp", "cameras:\n  - id: cam\n    url: rtsp://10.0.0.5/s\n    username: u\n    auth: digest\n",
     5, "cameras[0].auth", ["http"]),
    ("duplicate_yaml_key", "cameras:\n  - id: cam\n    url: demo:street\n    url: demo:shop\n", 4,
     "cameras[0].url", ["duplicate key", "line 3"]),
    ("no_cameras", "settings: {}\n", 1, "", ["cameras"]),
    ("two_documents", "cameras:\n" + GOOD_CAMERA + "---\nx: 1\n", 4, "", ["single document"]),
    ("state_dir_is_a_file", "settings:\n  state_dir: cameras.yaml\ncameras:\n" + GOOD_CAMERA, 2,
     "settings.state_dir", ["not a folder"]),
    ("not_utf8", "cameras:\n  - id: caf\udce9\n", 2, "", ["not UTF-8"]),
    ("empty_file", "", None, "", ["empty"]),
    ("top_level_list", "- id: cam\n  url: demo:street\n", 1, "", ["expected a mapping"]),
]


@pytest.mark.parametrize("name,text,line,key,words", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_clear_line(tmp_path: Path, name: str, text: str, line: int | None, key: str,
                                      words: list[str]) -> None:
    path = write(tmp_path, text)
    r = validate(path)
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines and all(x.startswith("camwatch: ") for x in lines), r.stderr
    wanted = f"{path}:{line}:" if line else f"{path}:"
    hits = [x for x in lines if x.startswith(f"camwatch: {wanted}") and key in x
            and all(w in x for w in words)]
    assert hits, f"no line with {wanted} {key} {words} in:\n{r.stderr}"
    assert r.stdout == ""


def test_several_problems_are_all_reported_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, """\
settings:
  intervall: 30
  confirm: 0
cameras:
  - id: a
    url: demo:street
    interval: abc
  - id: a
    url: gopher://x/y
  - id: c
    url: demo:shop
    active_hours: "24:00-06:00"
    roi: [[0, 0], [1, 0]]
""")
    r = validate(path)
    assert r.returncode == 2
    problems = r.stderr.strip().splitlines()
    expected = [(2, "settings.intervall"), (3, "settings.confirm"), (7, "cameras[0].interval"),
                (8, "cameras[1].id"), (9, "cameras[1].url"), (12, "cameras[2].active_hours"),
                (13, "cameras[2].roi")]
    assert len(problems) == len(expected), r.stderr
    for text, (line, key) in zip(problems, expected):
        assert text.startswith(f"camwatch: {path}:{line}: {key}: "), text


def test_unset_variable_reported_once_not_as_a_bad_url(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - id: cam\n    url: ${CAMWATCH_TEST_UNSET_URL}\n")
    r = validate(path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"camwatch: {path}:3: cameras[0].url: environment variable CAMWATCH_TEST_UNSET_URL is not set "
        "(used as ${CAMWATCH_TEST_UNSET_URL})"]


def test_missing_credential_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    path = write(tmp_path, "cameras:\n  - id: cam\n    url: http://10.0.0.5/snap.jpg\n    username: u\n"
                           "    password: ${cred:cam-pass}\n    auth: digest\n")
    r = validate(path, CREDENTIALS_DIRECTORY=str(creds))
    assert r.returncode == 2
    assert f"{path}:5: cameras[0].password: ${{cred:cam-pass}}: credential file {creds / 'cam-pass'} " \
           "does not exist" in r.stderr


def test_secrets_never_in_output(tmp_path: Path, grid_onnx: Path) -> None:
    """Clear, ${ENV} and ${cred:} secrets, each next to a problem that shows its value's neighbourhood."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cam-pass").write_text(SECRETS[2] + "\n")
    (creds / "interval").write_text(SECRETS[2] + "\n")
    path = write(tmp_path, f"""\
settings:
  model: {grid_onnx}
  interval: ${{cred:interval}}
  webhooks:
    - url: https://hooks.example/services/{SECRETS[3]}
      headers: {{Authorization: "Bearer {SECRETS[3]}"}}
      format: nope
cameras:
  - id: clear
    url: rtsp://admin:{SECRETS[0]}@10.0.0.5:99999/s
  - id: env
    url: gopher://admin:${{PASS}}@10.0.0.6/s
  - id: cred
    url: http://10.0.0.7/snap.jpg
    password: ${{cred:cam-pass}}
  - id: typed
    url: http://10.0.0.8/snap.jpg
    username: u
    password: true
""")
    r = validate(path, PASS=SECRETS[1], CREDENTIALS_DIRECTORY=str(creds))
    assert r.returncode == 2
    out = r.stdout + r.stderr
    for s in SECRETS:
        assert s not in out, out
    assert "Traceback" not in out
    assert f"{path}:3: settings.interval: '***': expected seconds" in out
    assert f"{path}:10: cameras[0].url: 'rtsp://***@10.0.0.5:99999/s': the port is not a number" in out
    assert f"{path}:12: cameras[1].url: " in out and "unsupported scheme 'gopher'" in out
    assert f"{path}:15: cameras[2].password: password without username" in out
    assert f"{path}:19: cameras[3].password: ***: expected a string" in out


def test_readable_file_with_clear_password_warns(tmp_path: Path, grid_onnx: Path) -> None:
    text = f"settings:\n  model: {grid_onnx}\n  state_dir: ./state\ncameras:\n" \
           f"  - id: cam\n    url: rtsp://admin:{SECRETS[0]}@10.0.0.5/s\n"
    path = write(tmp_path, text)
    r = validate(path)
    assert r.returncode == 0, r.stderr
    assert "chmod 600" not in r.stderr
    path.chmod(0o644)
    r = validate(path)
    assert r.returncode == 0, r.stderr
    assert "chmod 600" in r.stderr and "WARNING" in r.stderr
    assert SECRETS[0] not in r.stdout + r.stderr
    # the same password from the environment is not "in clear": no warning
    path.write_text(text.replace(SECRETS[0], "${PASS}"))
    r = validate(path, PASS=SECRETS[0])
    assert r.returncode == 0 and "chmod 600" not in r.stderr, r.stderr


def test_validate_ok_counts_cameras(tmp_path: Path, grid_onnx: Path) -> None:
    path = write(tmp_path, f"settings:\n  model: {grid_onnx}\n  state_dir: ./state\ncameras:\n"
                           "  - id: a\n    url: demo:street\n  - id: b\n    url: demo:shop\n    enabled: false\n")
    r = validate(path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{path}: OK (2 cameras, 1 enabled)"
    assert not (tmp_path / "state").exists()  # validate creates nothing


def test_validate_reports_a_model_that_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"this is not an onnx model")
    path = write(tmp_path, "settings:\n  model: broken.onnx\n  state_dir: ./state\ncameras:\n" + GOOD_CAMERA)
    r = validate(path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{path}:2: settings.model: " in r.stderr and "broken.onnx" in r.stderr


def test_validate_reports_a_missing_model_file(tmp_path: Path) -> None:
    path = write(tmp_path, "settings:\n  model: models/nope.onnx\ncameras:\n" + GOOD_CAMERA)
    r = validate(path)
    assert r.returncode == 2
    assert f"{path}:2: settings.model: 'models/nope.onnx': no such file ({tmp_path / 'models' / 'nope.onnx'})" \
        in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_validate_reports_an_unwritable_state_dir(tmp_path: Path, grid_onnx: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        path = write(tmp_path, f"settings:\n  model: {grid_onnx}\n  state_dir: locked/state\ncameras:\n"
                     + GOOD_CAMERA)
        r = validate(path)
        assert r.returncode == 2
        assert f"{path}:3: settings.state_dir: {locked / 'state'}: cannot be created" in r.stderr
    finally:
        locked.chmod(0o755)


@pytest.fixture(scope="module")
def grid_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small ONNX model (tests/modelkit.py) so validate can load one."""
    pytest.importorskip("onnx")
    sys.path.insert(0, str(Path(__file__).parent))
    from modelkit import grid_model

    return grid_model(tmp_path_factory.mktemp("model") / "grid.onnx")


def test_a_yaml_alias_bomb_is_one_line_not_a_billion_values(tmp_path: Path) -> None:
    """"Billion laughs": 9 levels of 10 aliases would expand to 10^9 values; the reader stops counting at
    its bound and says so in one line, in seconds, without the memory."""
    levels = ["x-l0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
    levels += [f"x-l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 10)]
    path = write(tmp_path, "\n".join(levels) + "\ncameras:\n" + GOOD_CAMERA)
    r = validate(path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{path}: too large (more than" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
