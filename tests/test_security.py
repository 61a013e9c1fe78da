"""Secrets never leak; exposure is safe by default.

A real ``camwatch`` daemon and the real CLI are run, as an operator would, with
every kind of secret camwatch takes: an RTSP URL password and an HTTP digest
password from ``${ENV}``, an HTTP digest password from ``${cred:NAME}``
(CREDENTIALS_DIRECTORY, as systemd's LoadCredential= sets it), a webhook URL
token and an Authorization header, an MQTT broker password. The run goes through enrolment, checks, a
drift, a camera going down, webhook delivery and evidence writing; then EVERY
output is searched for every secret: stdout/stderr of each command, the
daemon's log, /metrics, the bytes of every file in the state directory
(SQLite databases and their WAL files, evidence JPEGs), the webhook bodies
received, every MQTT message the broker carried (events, states, discovery,
availability) and the JSON documents printed. Real servers throughout (GStreamer
RTSP, HTTP snapshot server with digest auth, webhook receiver, HTTPS receiver
with a self-signed certificate made by openssl, Mosquitto with password auth);
nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from daemon_helpers import Daemon, camwatch, free_port
from media import scene_image
from modelkit import grid_model
from mqtt_broker import Mosquitto, Recorder
from servers import SnapshotServer, snapshot_handler

RTSP_PASS = "rtspPw-7Qz9x"
ENV_PASS = "envDigest-K2m8"
CRED_PASS = "credDigest-W4p1"
URL_TOKEN = "urltok-9f3a7c1e"
AUTH_TOKEN = "bearer-Zx81qLm3"
MQTT_PASS = "mqttPass-R5n8w"
SECRETS = (RTSP_PASS, ENV_PASS, CRED_PASS, URL_TOKEN, AUTH_TOKEN, MQTT_PASS)


class Receiver:
    """A real webhook receiver (HTTP, or HTTPS when given a context) recording each POST."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.posts: list[dict] = []
        self.handshake_failures = 0
        ctl = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ctl.posts.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                if tls is None:
                    return sock, addr
                try:
                    return tls.wrap_socket(sock, server_side=True), addr
                except (ssl.SSLError, OSError):
                    ctl.handshake_failures += 1
                    sock.close()
                    raise

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def leaks(text: str | bytes, where: str, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    """Each secret found in ``text`` (as is, or URL-encoded), named with where it was."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    found = []
    for s in secrets:
        for form in {s, quote(s, safe="")}:
            if form.encode() in data:
                found.append(f"{s!r} in {where}")
    return found


def listening_address(port: int) -> str:
    """The local address a TCP socket LISTENs on at ``port``, read from /proc/net/tcp{,6}."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if int(p, 16) == port and state == "0A":
                    if len(addr) == 8:
                        return ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                    return addr
    raise AssertionError(f"nothing listens on port {port}")


def daemon_settings(tmp_path: Path, port: int) -> str:
    """The ``settings:`` lines the daemon runs here share: the grid model, a check a second, no calibration."""
    return f"""\
settings:
  model: {tmp_path / 'grid.onnx'}
  device: cpu
  state_dir: {tmp_path / 'state'}
  metrics: {{port: {port}}}     # no address: the default must be loopback
  interval: 1
  timeout: 3
  confirm: 2
  recover: 1
  calibration: {{checks: 0}}
"""


@pytest.fixture
def site(tmp_path, rtsp_server, http_snapshot_server):
    """A config whose every secret comes from ${ENV}, ${cred:NAME} or the webhook settings."""
    grid_model(tmp_path / "grid.onnx")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "cam_pw").write_text(CRED_PASS + "\n")
    os.chmod(creds / "cam_pw", 0o600)
    http_snapshot_server.digest("/env.jpg", "viewer", ENV_PASS, scene_image(320, 180, seed=6, scene="shop"))
    http_snapshot_server.digest("/cred.jpg", "viewer", CRED_PASS, scene_image(320, 180, seed=7, scene="lobby"))
    hook = Receiver()
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(tmp_path / "mosquitto", users={"camwatch": MQTT_PASS, "watcher": "watcherPw-2y"})
    port = free_port()
    text = daemon_settings(tmp_path, port) + f"""\
  mqtt:
    url: mqtt://127.0.0.1:{broker.port}
    username: camwatch
    password: ${{MQTT_PASS}}
    discovery: true
    evidence: true
  webhooks:
    - url: http://127.0.0.1:{hook.port}/hook/${{HOOK_TOKEN}}
      headers: {{Authorization: "Bearer ${{AUTH_TOKEN}}"}}
      timeout: 5
cameras:
  - id: gate
    url: rtsp://admin:${{RTSP_PASS}}@127.0.0.1:{rtsp_server.port}/small
  - id: shop
    url: {http_snapshot_server.url('/env.jpg')}
    username: viewer
    password: ${{SHOP_PASS}}
    auth: digest
  - id: lobby
    url: {http_snapshot_server.url('/cred.jpg')}
    username: viewer
    password: ${{cred:cam_pw}}
    auth: digest
"""
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(text)
    os.chmod(cfg, 0o600)  # no secret in clear in it anyway; the next test covers that case
    env = {"RTSP_PASS": RTSP_PASS, "SHOP_PASS": ENV_PASS, "HOOK_TOKEN": URL_TOKEN,
           "AUTH_TOKEN": AUTH_TOKEN, "CREDENTIALS_DIRECTORY": str(creds), "MQTT_PASS": MQTT_PASS}
    mqtt = Recorder(broker.port, ["#"], user="watcher", password="watcherPw-2y")
    try:
        yield cfg, env, hook, port, mqtt
    finally:
        mqtt.close()
        broker.stop()
        hook.close()


def test_no_secret_in_any_output(site, tmp_path, rtsp_server, http_snapshot_server):
    cfg, env, hook, port, mqtt = site
    found: list[str] = []
    outputs: dict[str, str] = {}

    def run(name: str, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        out = camwatch(*args, "--config", str(cfg), env=env)
        assert out.returncode in ok, (name, out.returncode, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        outputs[name] = out.stdout + out.stderr
        found.extend(leaks(out.stdout, f"{name} stdout") + leaks(out.stderr, f"{name} stderr"))
        return out

    run("validate", "validate")
    run("enroll", "enroll", "--all")

    d = Daemon(cfg, env=env)
    try:
        for cam in ("gate", "shop", "lobby"):
            d.wait_state(cam, "ok", timeout=60)  # the digest passwords and RTSP URL really worked
        assert listening_address(port) == "127.0.0.1"  # metrics on loopback by default

        rtsp_server.swap("small")  # the camera with the URL password is turned
        d.wait_state("gate", "drifted", timeout=40)
        http_snapshot_server.status("/env.jpg", 500)  # the ${ENV} digest camera goes down
        d.wait_state("shop", "unavailable", timeout=20)
        d.wait("the webhook to receive drift_started and camera_down",
               lambda: {json.loads(p["body"])["type"] for p in hook.posts} >= {"drift_started", "camera_down"},
               timeout=30)
        d.wait("drift_started and camera_down on MQTT", lambda: {json.loads(m.payload)["type"] for m in mqtt.messages
                                                                 if m.topic.endswith("/event")}
               >= {"drift_started", "camera_down"}, timeout=30)
        metrics = d.metrics_text()
        found += leaks(metrics, "/metrics")
        run("check --json (daemon running)", "check", "--json", ok=(1, 2))
    finally:
        assert d.stop() == 0
    found += leaks(d.log(), "daemon log")

    # The broker carried events, states, evidence and discovery; none holds a secret.
    assert mqtt.last("camwatch/gate/state") and mqtt.last("camwatch/gate/evidence")
    assert any(m.topic.startswith("homeassistant/") for m in mqtt.messages)
    for m in mqtt.messages:
        found += leaks(m.topic.encode() + b" " + m.payload, f"MQTT message on {m.topic}")

    # The webhook did get its token and header (so they were in use), but no body holds one.
    assert all(p["path"] == f"/hook/{URL_TOKEN}" for p in hook.posts)
    assert all(p["headers"].get("Authorization") == f"Bearer {AUTH_TOKEN}" for p in hook.posts)
    assert leaks(hook.posts[0]["headers"]["Authorization"], "x") and leaks(hook.posts[0]["path"], "x"), \
        "the leak search itself must find a secret where one is"
    for i, p in enumerate(hook.posts):
        found += leaks(p["body"], f"webhook body {i}")
        found += leaks(json.dumps({k: v for k, v in p["headers"].items() if k != "Authorization"}),
                       f"webhook headers {i} (other than Authorization)")

    check = run("check --json", "check", "--json", ok=(1, 2))
    doc = json.loads(check.stdout)
    rows = {r["id"]: r for r in doc["cameras"]}
    assert rows["gate"]["state"] == "drifted" and rows["shop"]["state"] == "unavailable"
    assert "***" in rows["gate"]["url"]  # the URL is shown, redacted
    evs = json.loads(run("events --json", "events", "--json").stdout)["events"]
    assert {"drift_started", "camera_down"} <= {e["type"] for e in evs}
    evidence = [e["evidence"] for e in evs if e["type"] == "drift_started"]
    assert evidence and all(evidence) and all(Path(p).is_file() for p in evidence)
    refs = json.loads(run("references list --json", "references", "list", "--json").stdout)
    assert {r["camera"] for r in refs} == {"gate", "shop", "lobby"}

    # Every byte the daemon left on disk: databases, WAL/SHM files, evidence JPEGs.
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert any(p.suffix == ".jpg" for p in files) and any(p.name == "camwatch.db" for p in files)
    for p in files:
        found += leaks(p.read_bytes(), str(p.relative_to(tmp_path)))

    # A broken config whose bad values hold the secrets: the errors name them redacted.
    broken = tmp_path / "broken.yaml"
    text = cfg.read_text().replace("/small", ":notaport/small").replace("auth: digest", "auth: kerberos", 1)
    text = text.replace("timeout: 5", "timeout: soon")
    broken.write_text(text)
    os.chmod(broken, 0o600)
    out = camwatch("validate", "--config", str(broken), env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) >= 3, out.stderr  # every problem, one line each
    assert "broken.yaml:" in out.stderr
    found += leaks(out.stdout + out.stderr, "validate on a broken config")
    # ...and with a missing credential file the error names the file, not a value.
    shutil.rmtree(Path(env["CREDENTIALS_DIRECTORY"]))
    out = camwatch("validate", "--config", str(cfg), env=env)
    assert out.returncode == 2 and "cam_pw" in out.stderr, out.stderr
    found += leaks(out.stdout + out.stderr, "validate with a missing credential")

    assert not found, "\n".join(found)


def test_clear_secret_in_a_readable_config_warns(tmp_path, http_snapshot_server):
    grid_model(tmp_path / "grid.onnx")
    http_snapshot_server.basic("/snap.jpg", "viewer", ENV_PASS)
    port = free_port()
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(yaml.safe_dump({
        "settings": {"model": str(tmp_path / "grid.onnx"), "device": "cpu", "state_dir": str(tmp_path / "state"),
                     "interval": 1, "metrics": {"port": port}},
        # auth: basic, as Basic over plain HTTP is only sent when the config names it (issue 22 row 11)
        "cameras": [{"id": "snap", "url": http_snapshot_server.url("/snap.jpg", "viewer", ENV_PASS),
                     "auth": "basic", "auto_enroll": True}]}))
    os.chmod(cfg, 0o644)
    out = camwatch("validate", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "other users can read it" in out.stderr and ENV_PASS not in out.stdout + out.stderr
    d = Daemon(cfg, log_level="INFO")
    try:
        d.wait_state("snap", "ok", timeout=30)
        assert "other users can read it" in d.log()
    finally:
        assert d.stop() == 0
    assert ENV_PASS not in d.log()
    os.chmod(cfg, 0o600)  # fixed as the warning says: quiet
    out = camwatch("validate", "--config", str(cfg))
    assert out.returncode == 0 and "other users can read it" not in out.stderr, out.stderr


def test_webhook_tls_is_verified_by_default(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (needed to make a self-signed certificate)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    hook = Receiver(tls=ctx)
    grid_model(tmp_path / "grid.onnx")
    (tmp_path / "missing").mkdir()
    port = free_port()
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(yaml.safe_dump({
        "settings": {"model": str(tmp_path / "grid.onnx"), "device": "cpu", "state_dir": str(tmp_path / "state"),
                     "interval": 1, "timeout": 1, "metrics": {"port": port},
                     # no verify_tls: the default must verify, and refuse this self-signed server
                     "webhooks": [{"url": f"https://127.0.0.1:{hook.port}/hook", "timeout": 3}]},
        "cameras": [{"id": "gone", "url": str(tmp_path / "missing" / "none.png")}]}))
    os.chmod(cfg, 0o600)
    d = Daemon(cfg, log_level="INFO")
    try:
        def refused() -> bool:
            out = camwatch("events", "--json", "--config", str(cfg))
            evs = json.loads(out.stdout)["events"] if out.returncode == 0 else []
            hooks = [s for e in evs for name, s in e["deliveries"].items() if name != "log"]  # the webhook
            return bool(hooks) and any("certificate" in (s.get("last_error") or "").lower() for s in hooks)
        d.wait("camera_down delivery refused for the unverified certificate", refused, timeout=40, step=1.0)
        assert hook.handshake_failures >= 1 and hook.posts == []  # no event left over plain trust
    finally:
        assert d.stop() == 0
        hook.close()


# -- issue 22 row 3: query strings, ${ENV} in a query, fragments, a short password ------------

LOGINUSE = "camop41x"           # ?loginuse=: a key outside the old name pattern, written in clear
LOGINPAS = "lpas-Hq27vb"        # ?loginpas=: likewise
CAM_PSW = "psw-Env5Tk"          # ?psw=${CAM_PSW}: a query value from the environment
FRAG = "frag-Zt83w"             # a #fragment of a camera URL
HOOK_Q = "hq-Ve41mm"            # a webhook query value from the environment
HOOK_FRAG = "hfrag-Pw22"        # a #fragment of a webhook URL
QUERY_SECRETS = (LOGINUSE, LOGINPAS, CAM_PSW, FRAG, HOOK_Q, HOOK_FRAG)
#: Values too short to mask in free text, searched in the only forms they can be shown in: in a URL.
#: (Only in text: in JPEG or SQLite bytes 4-5 bytes could match by chance.)
SHORT_FORMS = (":Q7@", "&k=x9", "&w=ab")


class QueryCamera:
    """An HTTP snapshot camera (tests/servers.py's handler) that keeps every request's full path.

    The paths prove the query secrets were really sent, and that no fragment ever was.
    """

    def __init__(self) -> None:
        self.ctl = SnapshotServer()
        self.paths: list[str] = []
        paths = self.paths

        class Handler(snapshot_handler(self.ctl)):  # type: ignore[misc]
            def do_GET(self) -> None:  # noqa: N802
                paths.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.ctl.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_query_secrets_fragments_and_short_passwords_never_shown(tmp_path, rtsp_server):
    """Every output searched again for query values under any key, ${ENV} in a query, fragments, a
    2-character password: real daemon (text and JSON logs), real RTSP/HTTP cameras, a real webhook."""
    grid_model(tmp_path / "grid.onnx")
    cam = QueryCamera()
    cam.ctl.image("/login.jpg", scene_image(320, 180, seed=6, scene="shop"))
    cam.ctl.image("/envq.jpg", scene_image(320, 180, seed=7, scene="lobby"))
    hook = Receiver()
    port, closed = free_port(), free_port()
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(daemon_settings(tmp_path, port) + f"""\
  webhooks:
    - url: http://127.0.0.1:{hook.port}/hook?hq=${{HOOK_Q}}&w=ab#{HOOK_FRAG}
      timeout: 5
cameras:
  - id: login
    url: http://127.0.0.1:{cam.port}/login.jpg?loginuse={LOGINUSE}&loginpas={LOGINPAS}&channel=1
    public_query: [channel]
  - id: envq
    url: http://127.0.0.1:{cam.port}/envq.jpg?psw=${{CAM_PSW}}&k=x9#{FRAG}
  - id: gate
    url: rtsp://admin:Q7@127.0.0.1:{rtsp_server.port}/small?psw=${{CAM_PSW}}
  - id: dead
    url: rtsp://admin:Q7@127.0.0.1:{closed}/cam?loginpas={LOGINPAS}&k=x9
""")
    os.chmod(cfg, 0o600)
    env = {"CAM_PSW": CAM_PSW, "HOOK_Q": HOOK_Q, "CAMWATCH_LOG_FORMAT": "text"}
    found: list[str] = []

    def search(text: str | bytes, where: str) -> None:
        found.extend(leaks(text, where, QUERY_SECRETS + SHORT_FORMS))

    def run(name: str, *args: str, ok: tuple[int, ...] = (0,), config: Path = cfg) -> subprocess.CompletedProcess:
        out = camwatch(*args, "--config", str(config), env=env)
        assert out.returncode in ok, (name, out.returncode, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        search(out.stdout, f"{name} stdout")
        search(out.stderr, f"{name} stderr")
        return out

    try:
        text = run("validate", "validate").stderr
        assert "cameras[1].url: the #fragment is dropped" in text
        assert "settings.webhooks[0].url: the #fragment is dropped" in text
        run("enroll", "enroll", "--all", ok=(0, 1, 2))  # dead cannot be enrolled: its error line is searched

        d = Daemon(cfg, env=env)
        try:
            for cid in ("login", "envq", "gate"):
                d.wait_state(cid, "ok", timeout=60)
            d.wait_state("dead", "unavailable", timeout=30)
            rtsp_server.swap("small")  # the camera with the short password turns: drift, evidence
            d.wait_state("gate", "drifted", timeout=40)
            cam.ctl.status("/login.jpg", 500)
            cam.ctl.status("/envq.jpg", 500)
            want = {("drift_started", "gate"), ("camera_down", "login"), ("camera_down", "envq"),
                    ("camera_down", "dead")}
            d.wait("the webhook to receive the drift and three camera_down",
                   lambda: want <= {(json.loads(p["body"])["type"], json.loads(p["body"])["camera"])
                                    for p in hook.posts}, timeout=40)
            search(d.metrics_text(), "/metrics")
        finally:
            assert d.stop() == 0
        log = d.log()
        search(log, "daemon log (text)")

        d = Daemon(cfg, env={**env, "CAMWATCH_LOG_FORMAT": "json"})
        try:
            d.wait("a JSON log line naming the dead camera's URL", lambda: f"127.0.0.1:{closed}/cam" in d.log(),
                   timeout=30)
        finally:
            assert d.stop() == 0
        lines = [json.loads(line) for line in d.log().splitlines() if line.startswith("{")]
        assert lines and any(f"127.0.0.1:{closed}/cam?" in r["message"] for r in lines)
        search(d.log(), "daemon log (JSON)")
    finally:
        cam.close()
        hook.close()

    # The secrets were really in use: the query reached the camera and the webhook; no fragment ever left.
    assert f"/login.jpg?loginuse={LOGINUSE}&loginpas={LOGINPAS}&channel=1" in cam.paths
    assert f"/envq.jpg?psw={CAM_PSW}&k=x9" in cam.paths
    assert all("#" not in p for p in cam.paths)
    assert {p["path"] for p in hook.posts} == {f"/hook?hq={HOOK_Q}&w=ab"}
    for i, p in enumerate(hook.posts):
        search(p["body"], f"webhook body {i}")
    assert leaks(cam.paths[0], "x", QUERY_SECRETS), "the leak search itself must find a secret where one is"

    events = run("events", "events").stdout
    evs = json.loads(run("events --json", "events", "--json").stdout)["events"]
    downs = {e["camera"]: e["message"] for e in evs if e["type"] == "camera_down"}
    # The URL is shown (an operator must see which camera and how it is reached), redacted by position:
    assert "/login.jpg?loginuse=***&loginpas=***&channel=1" in downs["login"], downs
    assert "/envq.jpg?psw=***&k=***" in downs["envq"] and "#" not in downs["envq"], downs
    assert f"***@127.0.0.1:{closed}/cam?loginpas=***&k=***" in downs["dead"], downs
    assert "login" in events and "camera_down" in events
    check = run("check", "check", ok=(1, 2)).stdout
    rows = {r["id"]: r for r in json.loads(run("check --json", "check", "--json", ok=(1, 2)).stdout)["cameras"]}
    assert rows["login"]["url"] == f"http://127.0.0.1:{cam.port}/login.jpg?loginuse=***&loginpas=***&channel=1"
    assert rows["envq"]["url"] == f"http://127.0.0.1:{cam.port}/envq.jpg?psw=***&k=***"
    assert rows["gate"]["url"].endswith(f"***@127.0.0.1:{rtsp_server.port}/small?psw=***")
    assert "loginpas=***" in check
    run("references list", "references", "list")
    refs = json.loads(run("references list --json", "references", "list", "--json").stdout)
    assert {r["camera"] for r in refs} >= {"login", "envq", "gate"}

    state = tmp_path / "state"
    with sqlite3.connect(state / "events.db") as db:
        for table in ("events", "outbox"):
            rows = db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 (fixed names)
            assert rows, table
            search(repr(rows), f"events.db {table} rows")
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jpg" for p in files)
    search("\n".join(str(p.relative_to(tmp_path)) for p in files), "state file names (evidence included)")
    for p in files:
        found.extend(leaks(p.read_bytes(), str(p.relative_to(tmp_path)), QUERY_SECRETS))

    # Error lines: a broken config whose bad values sit in the URLs that hold the secrets.
    broken = tmp_path / "broken.yaml"
    broken.write_text(cfg.read_text().replace(f"127.0.0.1:{cam.port}/login", "127.0.0.1:notaport/login")
                      .replace("/envq.jpg", ":99999/envq.jpg").replace("public_query: [channel]",
                                                                       "public_query: [channel, psw]"))
    os.chmod(broken, 0o600)
    text = run("validate (broken)", "validate", ok=(2,), config=broken).stderr
    assert len(text.strip().splitlines()) >= 3 and "broken.yaml:" in text, text
    assert "'psw' is named like a credential" in text

    assert not found, "\n".join(found)


def test_no_postgresql_password_in_any_output(tmp_path, pg_server):
    """The shared store's password (``settings.store``, from ``${ENV}``) through a real daemon that loses
    its PostgreSQL server and gets it back, the CLI, /metrics, the state directory and config errors."""
    secret = (pg_server.password,)
    grid_model(tmp_path / "grid.onnx")
    port = free_port()
    url = pg_server.url(pg_server.new_schema(), connect_timeout=1).replace(pg_server.password, "${PG_PASS}")
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(daemon_settings(tmp_path, port) + f'  store: "{url}"\n'
                   "cameras:\n  - id: street\n    url: demo:street\n    auto_enroll: true\n")
    os.chmod(cfg, 0o600)
    env = {"PG_PASS": pg_server.password}
    found: list[str] = []

    def run(name: str, *args: str, config: Path = cfg, ok: tuple[int, ...] = (0,)) -> str:
        out = camwatch(*args, "--config", str(config), env=env)
        assert out.returncode in ok and "Traceback" not in out.stderr, (name, out.returncode, out.stderr)
        found.extend(leaks(out.stdout + out.stderr, name, secret))
        return out.stdout + out.stderr

    d = Daemon(cfg, env=env)
    try:
        d.wait_state("street", "ok", timeout=60)        # auto_enroll stored its reference in PostgreSQL
        pg_server.stop()
        try:
            d.wait("a check that could not read the store", lambda: "camera street: not checked: database "
                   f"postgresql://127.0.0.1:{pg_server.port}/camwatch: cannot read" in d.log(), timeout=20)
            found += leaks(d.metrics_text(), "/metrics while the store is down", secret)
            found += leaks(run("references list (server down)", "references", "list", ok=(2,)),
                           "references list (server down)", secret)
        finally:
            pg_server.start()
        mark = len(d.log())
        d.wait("checks again after the server is back", lambda: "camera street: match" in d.log()[mark:], timeout=30)
        assert d.state("street") == "ok"                # the daemon lived through it
        found += leaks(d.metrics_text(), "/metrics", secret)
    finally:
        assert d.stop() == 0
    log = d.log()
    found += leaks(log, "daemon log", secret)
    assert leaks(f"x{pg_server.password}x", "x", secret), "the leak search itself must find the password"
    refs = camwatch("references", "list", "--json", "--config", str(cfg), env=env)
    assert refs.returncode == 0 and [r["camera"] for r in json.loads(refs.stdout)] == ["street"], refs.stderr
    found += leaks(refs.stdout + refs.stderr, "references list --json", secret)
    for p in (tmp_path / "state").rglob("*"):
        if p.is_file():
            found += leaks(p.read_bytes(), str(p.relative_to(tmp_path)), secret)
    # A store URL that is wrong, with the password in it: the error names it redacted.
    broken = tmp_path / "broken.yaml"
    broken.write_text(cfg.read_text().replace(f":{pg_server.port}/", ":notaport/"))
    os.chmod(broken, 0o600)
    out = run("validate on a broken store URL", "validate", config=broken, ok=(2,))
    assert "settings.store" in out
    assert not found, "\n".join(found)
