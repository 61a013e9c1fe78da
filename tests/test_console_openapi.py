"""The console over HTTPS (a self-signed certificate made with openssl at test time) and its OpenAPI
description, against a real uvicorn listener (ConsoleServer) in this process on a loaded config:
no daemon, no model, so the module takes about a second.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml
from daemon_helpers import write_config
from starlette.applications import Starlette
from starlette.routing import Route

from camwatch.config.load import load_config
from camwatch.core.errors import CamwatchError, ConfigError
from camwatch.service.console.app import build_app
from camwatch.service.console.data import Sources
from camwatch.service.console.openapi import SPEC
from camwatch.service.console.server import ConsoleServer

TOKEN = "console-token-0a1b2c3d4e5f"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def make_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "console.crt", folder / "console.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture(scope="module")
def https(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-tls")
    cert, key = make_cert(folder)
    cfg = load_config(str(write_config(folder / "cameras.yaml", [{"id": "street", "url": "demo:street?seed=1"}],
                                       console={"enabled": True, "port": 0, "token": TOKEN,
                                                "tls_cert": "console.crt", "tls_key": "console.key"})))
    assert cfg.settings.console.tls_cert == cert       # relative to the config's folder
    server = ConsoleServer(cfg.settings.console, Sources(lambda: cfg, dict, lambda: None, lambda: None))
    try:
        yield server, cert, folder
    finally:
        server.close()


def fetch(port: int, path: str, context: ssl.SSLContext | None) -> tuple[int, dict, bytes]:
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10) if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_the_console_serves_https_with_the_configured_certificate_and_secure_cookies(https):
    server, cert, _ = https
    trusted = ssl.create_default_context(cafile=str(cert))
    status, _, body = fetch(server.port, "/api/cameras", trusted)
    assert server.scheme == "https" and status == 200 and json.loads(body)["total"] == 1
    status, headers, _ = fetch(server.port, "/login", trusted)
    assert status == 200 and "secure" in headers["set-cookie"].lower() and "httponly" in headers["set-cookie"].lower()
    with pytest.raises(ssl.SSLCertVerificationError):          # another certificate is not this console
        fetch(server.port, "/api/cameras", ssl.create_default_context())
    with pytest.raises((http.client.HTTPException, ConnectionError)):   # plain HTTP gets no answer
        fetch(server.port, "/api/cameras", None)


def test_a_half_or_bad_tls_pair_is_one_clear_line(https, tmp_path):
    _, cert, folder = https
    cams = [{"id": "street", "url": "demo:street?seed=1"}]
    with pytest.raises(ConfigError) as got:
        load_config(str(write_config(folder / "half.yaml", cams, console={"tls_cert": "console.crt"})))
    assert "settings.console.tls_key" in str(got.value) and "needs both" in str(got.value)
    (tmp_path / "not.key").write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    cfg = write_config(tmp_path / "bad.yaml", cams, console={"enabled": True, "port": 0, "tls_cert": str(cert),
                                                             "tls_key": "not.key"})
    loaded = load_config(str(cfg))
    with pytest.raises(CamwatchError) as bad:
        ConsoleServer(loaded.settings.console, Sources(lambda: loaded, dict, lambda: None, lambda: None))
    assert "tls_cert/tls_key" in str(bad.value) and "\n" not in str(bad.value)
    assert yaml.safe_load(cfg.read_text())["settings"]["console"]["tls_key"] == "not.key"


def _routes(app: object) -> list[Route]:
    while not isinstance(app, Starlette):       # through the middlewares build_app wraps it in
        app = app.app  # type: ignore[attr-defined]
    return [r for r in app.routes if isinstance(r, Route) and r.path.startswith("/api/")]


def test_every_api_route_is_described_in_openapi_and_nothing_else(https):
    server, cert, _ = https
    status, _, body = fetch(server.port, "/api/openapi.json", ssl.create_default_context(cafile=str(cert)))
    served = json.loads(body)
    assert status == 200 and served == json.loads(json.dumps(SPEC)) and served["openapi"].startswith("3.")
    routes = {(r.path, m.lower()) for r in _routes(build_app(Sources(dict, dict, dict, dict)))  # type: ignore[arg-type]
              for m in (r.methods or ()) if m != "HEAD"}
    described = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert routes == described
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            names = {p["name"] for p in op.get("parameters", [])}
            assert names == set(Route(path, lambda r: None).param_convertors), (path, method)
            assert op["responses"] and op["summary"]
