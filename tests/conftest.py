"""Shared test fixtures: real servers and test media, cleaned up after each test.

- ``media``: session-wide maker of images and H.264 clips (tests/media.py).
- ``rtsp_server``: a real GStreamer RTSP server (tests/servers.py, tests/rtsp_server.py) looping H.264.
- ``http_snapshot_server``: a real threaded HTTP server on loopback whose answer per
  path the test sets (image, HTML, huge body, drip, hang, status, basic/digest auth).
- ``make_camera``: a real CameraConfig (DESIGN.md).
- ``pg_server``: one real PostgreSQL server per session (tests/pg_server.py); ``store_url``
  runs a store test on both backends: None (SQLite files) and a fresh PostgreSQL schema.
The servers themselves live in tests/servers.py, a plain module benchmarks can import too.
No fixture reads ../shared: everything is made on the spot.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from media import Media, have_ffmpeg  # noqa: E402
from servers import RtspServer, SnapshotServer, camera_config, gst_rtsp_available  # noqa: E402

# -- media ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Media:
    """Images and clips made once per session: ``media.clip("scene"|"moved", width=, height=,
    seconds=, suffix=".h264"|".mp4")`` and ``media.image("scene"|"moved", ...)`` return paths.
    "moved" is another window of the same synthetic world (a turned camera). Skips if no ffmpeg
    only when a clip is asked for."""
    return _SkippingMedia(tmp_path_factory.mktemp("media"))


class _SkippingMedia(Media):
    def clip(self, *args: Any, **kwargs: Any) -> Path:
        if not have_ffmpeg():
            pytest.skip("ffmpeg is not installed (scripts/test.sh installs it)")
        return super().clip(*args, **kwargs)


# -- cameras --------------------------------------------------------------------


@pytest.fixture
def make_camera() -> Callable[..., Any]:
    """``make_camera(url, id="cam", timeout=3, mode="snapshot", username=..., password=..., auth=...)``:
    a real CameraConfig for open_source() and friends without writing a YAML file."""
    return camera_config


# -- RTSP -----------------------------------------------------------------------


@pytest.fixture
def rtsp_server(media) -> Iterator[RtspServer]:
    """A real RTSP server (gst-rtsp-server, H.264 over TCP and UDP) on a free loopback port.

    Mounts: ``scene`` (640x360, swap() serves the moved view) and ``small`` (320x180, same).
    ``.url(mount, transport=None)``, ``.swap(mount)``, ``.stop()``/``.start()`` (same port),
    ``.freeze()``/``.thaw()`` (SIGSTOP/SIGCONT). Always stopped after the test. Skips with the
    reason if gst-rtsp-server or ffmpeg is missing (scripts/test.sh installs both)."""
    why = gst_rtsp_available()
    if why:
        pytest.skip(why)
    server = RtspServer({
        "scene": [media.clip("scene"), media.clip("moved")],
        "small": [media.clip("scene", 320, 180), media.clip("moved", 320, 180)],
    })
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- HTTP -----------------------------------------------------------------------


@pytest.fixture
def http_snapshot_server() -> Iterator[SnapshotServer]:
    """A real HTTP snapshot camera on 127.0.0.1 (servers.SnapshotServer: set each path's answer
    from the test, read ``.hits`` and ``.auth_headers``). Shut down after the test."""
    ctl = SnapshotServer().start()
    try:
        yield ctl
    finally:
        ctl.stop()


# -- PostgreSQL -------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL server (Debian's, a temporary cluster on a loopback port), once per session.

    Skips with the reason if PostgreSQL or psycopg is missing (scripts/test.sh installs both)."""
    from pg_server import PostgresServer, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    server = PostgresServer().init()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _pg_stores_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """A PostgreSQL store a test opens, the test closes: a psycopg pool left to the garbage collector
    stops its workers in whatever thread collects it, one of those workers included ("cannot join
    current thread", a PytestUnraisableExceptionWarning in some later test). The pools made during a
    PostgreSQL test are recorded; one still open after it fails the test, naming the line that made it."""
    try:
        from camwatch.store import pg
    except ImportError:        # no psycopg: the PostgreSQL tests skip
        pg = None
    if pg is None or not {"store_url", "pg_server"} & set(request.fixturenames):
        yield
        return
    made: list[tuple[Any, str]] = []
    new_pool = pg.PgDatabase._new_pool

    def recording(db: Any) -> Any:
        pool = new_pool(db)
        here = [f"{Path(f.filename).name}:{f.lineno}" for f in traceback.extract_stack()
                if Path(f.filename).parent == Path(__file__).parent and f.filename != __file__]
        made.append((pool, f"{db.store} store opened at {' < '.join(reversed(here)) or '?'}"))
        return pool

    patch = pytest.MonkeyPatch()
    patch.setattr(pg.PgDatabase, "_new_pool", recording)
    try:
        yield
    finally:
        patch.undo()
    left = [where for pool, where in made if not pool.closed]
    for pool, _ in made:
        pool.close(timeout=1.0)
    assert not left, f"a PostgreSQL store left open (close it, or use `with`): {'; '.join(left)}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """``settings.store`` for a store test on each backend: None (the SQLite files under the state
    directory) or a URL whose search path is a new, empty schema (a store of this test's own)."""
    if request.param == "sqlite":
        return None
    server = request.getfixturevalue("pg_server")
    return str(server.url(server.new_schema()))


# -- the operator console ------------------------------------------------------------


@pytest.fixture(scope="session")
def console(tmp_path_factory):
    """One daemon with its console for test_console.py and test_console_actions.py (started once)."""
    import test_console
    yield from test_console.console_daemon(tmp_path_factory)
