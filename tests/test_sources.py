"""Frame sources against real servers: GStreamer RTSP (H.264 over TCP/UDP), a threaded
HTTP server on loopback, real files. Cameras use short timeouts so failures are quick;
every failure must come back within the camera's timeout plus a small slack."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from media import scene_frames, scene_image, write_clip, write_image
from servers import SnapshotServer, free_port, self_signed_context

from camwatch.core.backoff import Backoff
from camwatch.core.errors import SourceError
from camwatch.core.types import Frame
from camwatch.sources import DEADLINE_SLACK_S, abandoned_workers, open_source
from camwatch.sources.httpclient import HttpClient
from camwatch.sources.rtsp import RtspStreamSource, rtsp_target

SLACK = DEADLINE_SLACK_S + 0.7  # scheduling noise on 2 busy cores


def likeness(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of small grey versions: ~1 same view, low for another view."""
    small = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), (64, 36), interpolation=cv2.INTER_AREA)
             .astype(np.float32).ravel() for x in (a, b)]
    small = [(s - s.mean()) / (s.std() + 1e-6) for s in small]
    return float(np.mean(small[0] * small[1]))


def read_error(source, limit: float) -> tuple[SourceError, float]:
    """The SourceError a read raises, and how long it took (asserted within ``limit``)."""
    start = time.monotonic()
    with pytest.raises(SourceError) as info:
        source.read()
    took = time.monotonic() - start
    assert took <= limit, f"read took {took:.2f} s, over {limit:.2f} s: {info.value}"
    return info.value, took


def wait_frame(source, within: float) -> Frame:
    """Keep reading until a frame comes (reconnects), at most ``within`` seconds."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            return source.read()
        except SourceError as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"no frame within {within} s; last error: {last}")


# -- helpers --------------------------------------------------------------------


def test_backoff_grows_with_full_jitter_up_to_the_cap_and_resets():
    b = Backoff(base=1.0, cap=8.0)
    ceilings = [1, 2, 4, 8, 8, 8]
    delays = [b.next_delay() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings))
    many = [Backoff(base=1.0, cap=8.0, attempts=10).next_delay() for _ in range(200)]
    assert max(many) <= 8.0 and min(many) < 2.0 and max(many) > 6.0  # spread over [0, cap]
    b.reset()
    assert b.attempts == 0 and b.next_delay() <= 1.0


def test_rtsp_transport_override_is_taken_off_the_url():
    assert rtsp_target("rtsp://h:554/s?transport=udp&x=1") == ("rtsp://h:554/s?x=1", "udp")
    assert rtsp_target("rtsp://u:p@h/s") == ("rtsp://u:p@h/s", "tcp")


def test_importing_sources_sets_no_environment_variable_and_opening_a_capture_does():
    """FFmpeg's settings are set when a capture opens, not when camwatch is imported into a process."""
    code = ("import os, sys\n"
            "import camwatch.sources, camwatch.sources.rtsp, camwatch.sources.files\n"
            "from camwatch.sources.capture import LOGLEVEL_ENV, OPTIONS_ENV, quiet_ffmpeg\n"
            "assert LOGLEVEL_ENV not in os.environ and OPTIONS_ENV not in os.environ, 'set at import'\n"
            "quiet_ffmpeg()\n"
            "assert os.environ[LOGLEVEL_ENV] == '-8'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_capture_options_hold_lapses_without_a_thread_and_a_release_wakes_the_other_transport(monkeypatch):
    """An open that never returns cannot hold the other transport's opens back past HOLD_S; one that
    returns lets them in at once; opens of the value in force share it; no thread per open."""
    from camwatch.sources.capture import OPTIONS_ENV, CaptureOptions

    monkeypatch.setenv(OPTIONS_ENV, "")
    options = CaptureOptions()
    before = threading.active_count()
    hung = options.acquire("rtsp_transport;tcp", time.monotonic() + 5)
    shared = options.acquire("rtsp_transport;tcp", time.monotonic() + 5)
    assert hung is not None and shared is not None and threading.active_count() == before
    assert options.acquire("rtsp_transport;udp", time.monotonic() + 0.05) is None   # held: its deadline first
    udp = options.acquire("rtsp_transport;udp", time.monotonic() + 5)               # the holds lapse
    assert udp is not None and os.environ[OPTIONS_ENV] == "rtsp_transport;udp"
    hung()
    shared()                                  # late releases of lapsed holds change nothing
    threading.Timer(0.1, udp).start()
    started = time.monotonic()
    tcp = options.acquire("rtsp_transport;tcp", time.monotonic() + 5)
    assert tcp is not None and time.monotonic() - started < options.HOLD_S + 1
    tcp()
    tcp()                                     # idempotent


def test_unsupported_scheme_is_one_line_with_the_url_but_not_the_password(make_camera):
    # load_config refuses such a URL; open_source must too, for a camera made some other way
    # (model_copy skips validation; no redacted_url, so the error redacts the URL itself).
    # The camera's id is not in it: whoever shows the error names the camera (once).
    cam = make_camera("http://10.0.0.9/x.jpg", id="gate").model_copy(
        update={"url": "ftp://admin:hunter22@10.0.0.9/x.jpg", "redacted_url": ""})
    with pytest.raises(SourceError) as info:
        open_source(cam)
    msg = str(info.value)
    assert info.value.reason == "unsupported" and msg.startswith("ftp://") and msg.count("10.0.0.9/x.jpg: ") == 1
    assert "gate" not in msg and "hunter22" not in msg and "\n" not in msg


# -- RTSP -----------------------------------------------------------------------


def test_rtsp_snapshot_gives_real_frames_over_tcp_and_udp(rtsp_server, make_camera):
    scene, moved = scene_image(640, 360), scene_image(640, 360, moved=True)
    for mount, shape in (("scene", (360, 640, 3)), ("small", (180, 320, 3))):
        for transport in (None, "udp"):
            src = open_source(make_camera(rtsp_server.url(mount, transport)))
            t0 = time.time()
            frame = src.read()
            src.close()
            assert frame.image.shape == shape and frame.image.dtype == np.uint8
            assert frame.captured_at >= t0
            if mount == "scene":
                assert likeness(frame.image, scene) > 0.8 > likeness(frame.image, moved)


def test_rtsp_swap_moves_the_camera_for_snapshots_and_streams(rtsp_server, make_camera):
    scene, moved = scene_image(640, 360), scene_image(640, 360, moved=True)
    stream = open_source(make_camera(rtsp_server.url("scene"), mode="stream"))
    snap = open_source(make_camera(rtsp_server.url("scene")))
    try:
        first = wait_frame(stream, 5)
        assert likeness(first.image, scene) > 0.8
        rtsp_server.swap("scene")
        time.sleep(1.5)  # the 1 s clip finishes its loop, then the moved clip plays
        assert likeness(snap.read().image, moved) > 0.8
        seen = stream.read()
        assert seen.captured_at > first.captured_at
        assert likeness(seen.image, moved) > 0.8 > likeness(seen.image, scene)
    finally:
        stream.close()


def test_rtsp_stream_gives_only_new_frames_then_stalls_and_reconnects(rtsp_server, make_camera):
    cam = make_camera(rtsp_server.url("small"), mode="stream", timeout=2.0)
    src = open_source(cam)
    assert isinstance(src, RtspStreamSource)
    src.backoff = Backoff(base=0.2, cap=0.5)  # quick reconnects for the test
    try:
        frames = [wait_frame(src, 5)]
        for _ in range(5):
            time.sleep(0.2)  # 15 fps: a few new frames arrived meanwhile; read gives the newest
            frames.append(src.read())
        stamps = [f.captured_at for f in frames]
        assert all(b - a > 0.1 for a, b in zip(stamps, stamps[1:])), stamps
        assert all(time.time() - f.captured_at < 5 for f in frames)

        rtsp_server.stop()
        time.sleep(cam.timeout + 0.5)  # the watchdog notices: no new frame for `timeout`
        err, _ = read_error(src, cam.timeout + SLACK)
        assert err.reason in ("stalled", "connect", "timeout")
        assert str(err).count(rtsp_server.url("small")) == 1 and "cam " not in str(err)

        rtsp_server.start()  # same port
        back = wait_frame(src, 8)
        assert back.captured_at > stamps[-1] and back.image.shape == (180, 320, 3)
        assert src.reconnects >= 1
    finally:
        src.close()


def test_rtsp_frozen_server_is_bounded_in_both_modes_and_recovers(rtsp_server, make_camera):
    stream = open_source(make_camera(rtsp_server.url("small"), mode="stream", timeout=1.5))
    stream.backoff = Backoff(base=0.2, cap=0.5)
    snap = open_source(make_camera(rtsp_server.url("small"), timeout=1.5))
    try:
        wait_frame(stream, 5)
        rtsp_server.freeze()
        time.sleep(1.0)
        # The stream may hand out its last frame while it is younger than the timeout;
        # past that it must say stalled, and never block beyond the timeout.
        deadline = time.monotonic() + 6
        while True:
            try:
                start = time.monotonic()
                stream.read()
                assert time.monotonic() - start <= 1.5 + SLACK
            except SourceError as exc:
                assert exc.reason in ("stalled", "timeout", "connect")
                break
            assert time.monotonic() < deadline, "a frozen stream kept giving frames"
            time.sleep(0.2)
        err, took = read_error(snap, 1.5 + SLACK)
        assert err.reason in ("timeout", "connect", "stalled")
        rtsp_server.thaw()
        assert wait_frame(stream, 8).image.shape == (180, 320, 3)
        assert wait_frame(snap, 6).image.shape == (180, 320, 3)
    finally:
        stream.close()


def test_rtsp_server_down_fails_fast_and_never_shows_the_password(rtsp_server, make_camera):
    url = rtsp_server.url("scene", userinfo="admin:s3cr3t-pw")
    rtsp_server.stop()
    for mode in ("snapshot", "stream"):
        cam = make_camera(url, id="yard", mode=mode, timeout=2.0, password="s3cr3t-pw")
        src = open_source(cam)
        err, _ = read_error(src, 2.0 + SLACK)
        src.close()
        assert err.reason in ("connect", "timeout")
        assert "s3cr3t-pw" not in str(err) and "yard" not in str(err)
        assert "***" in str(err) and str(err).count(f"127.0.0.1:{rtsp_server.port}/scene: ") == 1


def silent_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A real TCP listener that accepts connections and never answers (a hung camera)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return lsock, accepted


def test_hung_rtsp_camera_delays_no_other_camera_of_either_transport(rtsp_server, make_camera):
    lsock, accepted = silent_listener()
    port = lsock.getsockname()[1]
    try:
        cams = [make_camera(f"rtsp://admin:hung-pw@127.0.0.1:{port}/live", id="hung", timeout=3.0,
                            password="hung-pw"),
                make_camera(f"rtsp://127.0.0.1:{port}/live?transport=udp", id="hungudp", timeout=3.0)]
        cams += [make_camera(rtsp_server.url("small", transport), id=f"ok{i}", timeout=3.0)
                 for i, transport in enumerate((None, "udp", "tcp", "udp"))]
        results: dict[str, tuple[float, object]] = {}
        start = time.monotonic()

        def fetch(cam):
            try:
                out: object = open_source(cam).read()
            except SourceError as exc:
                out = exc
            results[cam.id] = (time.monotonic() - start, out)

        # The hung ones start first, so the others open while they are stuck.
        threads = [threading.Thread(target=fetch, args=(c,)) for c in cams]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(10)
        for i in range(4):
            took, out = results[f"ok{i}"]
            assert isinstance(out, Frame) and took < 2.0, results
        for cid in ("hung", "hungudp"):
            took, out = results[cid]
            assert isinstance(out, SourceError) and out.reason in ("timeout", "connect"), out
            assert took <= 3.0 + SLACK + 0.3
            assert "hung-pw" not in str(out)
        assert accepted, "the hung camera was really connected to"
    finally:
        lsock.close()


# -- HTTP -----------------------------------------------------------------------


def test_http_snapshot_ok_and_swapped(http_snapshot_server, make_camera):
    srv = http_snapshot_server
    a, b = scene_image(320, 180), scene_image(320, 180, moved=True)
    srv.image("/snap.jpg", a)
    src = open_source(make_camera(srv.url("/snap.jpg")))
    f1 = src.read()
    assert f1.image.shape == (180, 320, 3) and likeness(f1.image, a) > 0.95
    srv.image("/snap.jpg", b)
    f2 = src.read()
    assert likeness(f2.image, b) > 0.95 > likeness(f2.image, a) + 0.2
    srv.image("/snap.png", cv2.imencode(".png", a)[1].tobytes(), content_type="application/octet-stream")
    assert open_source(make_camera(srv.url("/snap.png"))).read().image.shape == (180, 320, 3)


@pytest.mark.parametrize("setup, reason", [
    (lambda s: s.html("/p"), "not_image"),
    (lambda s: s.status("/p", 500), "http_status"),
    (lambda s: s.status("/p", 403), "auth"),
    (lambda s: s.basic("/p", "admin", "pw"), "auth"),
    (lambda s: s.image("/p", b"\xff\xd8\xff\xe0 not really a jpeg"), "decode"),
    (lambda s: s.big("/p"), "too_large"),
    (lambda s: s.big("/p", send_length=False), "too_large"),
])
def test_http_bad_answers_have_their_reason(http_snapshot_server, make_camera, setup, reason):
    setup(http_snapshot_server)
    src = open_source(make_camera(http_snapshot_server.url("/p"), timeout=3.0))
    err, _ = read_error(src, 3.0 + SLACK)
    assert err.reason == reason, str(err)
    assert "\n" not in str(err) and str(err).startswith(http_snapshot_server.url("/p") + ": ")


@pytest.mark.parametrize("kind", ["drip", "hang"])
def test_http_drip_and_hang_time_out_within_the_deadline(http_snapshot_server, make_camera, kind):
    baseline = abandoned_workers()
    getattr(http_snapshot_server, kind)("/slow.jpg")
    src = open_source(make_camera(http_snapshot_server.url("/slow.jpg"), timeout=2.0))
    err, took = read_error(src, 2.0 + SLACK)
    assert err.reason == "timeout" and took >= 1.5
    # A second read while the first is (possibly) still hung stays bounded too, and
    # never starts a second thread for the same camera.
    err, _ = read_error(src, 2.0 + SLACK)
    assert err.reason == "timeout"
    assert abandoned_workers() <= baseline + 1
    # Once the server lets go, the given-up workers end and are no longer counted.
    http_snapshot_server.stopping.set()
    deadline = time.monotonic() + 5
    while abandoned_workers() > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert abandoned_workers() == baseline


def test_http_connection_refused_is_connect(make_camera):
    src = open_source(make_camera(f"http://127.0.0.1:{free_port()}/x.jpg", timeout=2.0))
    err, _ = read_error(src, 2.0 + SLACK)
    assert err.reason == "connect"


def test_https_with_an_untrusted_certificate_is_refused(tmp_path, make_camera):
    """TLS verification stays on: a self-signed camera certificate is a clear connect error."""
    ctx = self_signed_context(tmp_path)
    if ctx is None:
        pytest.skip("openssl command not installed (needed to make a test certificate)")
    ctl = SnapshotServer()
    ctl.image("/snap.jpg")
    ctl.start(tls=ctx)
    try:
        url = f"https://admin:tls-pw@127.0.0.1:{ctl.port}/snap.jpg"
        err, _ = read_error(open_source(make_camera(url, password="tls-pw", username="admin")), 3.0 + SLACK)
        assert err.reason == "connect" and "TLS" in str(err) and "tls-pw" not in str(err)
        assert ctl.hits.get("/snap.jpg", 0) == 0  # nothing was asked over the untrusted link
    finally:
        ctl.stop()


def test_http_basic_and_digest_auth(http_snapshot_server, make_camera):
    srv = http_snapshot_server
    img = scene_image(320, 180)
    srv.basic("/basic.jpg", "admin", "b4sic-pw", img)
    srv.digest("/digest.jpg", "viewer", "d1gest-pw", img)
    # Credentials from the config, kind from the server's challenge or named explicitly (Basic
    # over plain HTTP only when named: test_hostile_sources).
    for path, user, pw, auth in (("/basic.jpg", "admin", "b4sic-pw", "basic"),
                                 ("/digest.jpg", "viewer", "d1gest-pw", None),
                                 ("/digest.jpg", "viewer", "d1gest-pw", "digest")):
        cam = make_camera(srv.url(path), username=user, password=pw, auth=auth)
        assert open_source(cam).read().image.shape == (180, 320, 3)
    # Credentials in the URL's userinfo.
    assert open_source(make_camera(srv.url("/digest.jpg", "viewer", "d1gest-pw"))).read().image.shape[0] == 180
    # A source keeps its digest state: after the first challenge, one request per fetch.
    srv.hits.clear()
    src = open_source(make_camera(srv.url("/digest.jpg"), username="viewer", password="d1gest-pw", auth="digest"))
    for _ in range(5):
        src.read()
    assert srv.hits["/digest.jpg"] == 6
    # Digest never sends the password itself.
    assert not any("d1gest-pw" in h for h in srv.auth_headers)
    # Wrong password: auth, and the password is nowhere in the message.
    for url, kw in ((srv.url("/digest.jpg", "viewer", "wrong-pw-1"), {}),
                    (srv.url("/basic.jpg"), {"username": "admin", "password": "wrong-pw-2", "auth": "basic"})):
        cam = make_camera(url, id="door", **kw)
        err, _ = read_error(open_source(cam), 3.0 + SLACK)
        assert err.reason == "auth" and "HTTP 401" in str(err)
        assert "wrong-pw" not in str(err)


def test_http_client_sends_a_given_authorization_header_instead_of_the_urls_and_caps_bodies(
        http_snapshot_server):
    """The one client webhooks use too: a configured Authorization header wins over the URL's
    userinfo, and a body over its cap is not held (cut, and marked incomplete)."""
    srv = http_snapshot_server
    srv.basic("/b.jpg", "admin", "right-pw")
    good = "Basic " + base64.b64encode(b"admin:right-pw").decode()
    client = HttpClient(srv.url("/b.jpg", "admin", "wrong-pw"), 3.0, auth="basic")
    try:
        assert client.request(headers={"Authorization": good}, max_bytes=1 << 20).status == 200
        assert client.request(max_bytes=1 << 20).status == 401  # the URL's (wrong) credentials
        assert srv.auth_headers[-1].startswith("Basic ") and srv.auth_headers[-1] != good
        resp = client.request(headers={"Authorization": good}, max_bytes=100)
        assert resp.status == 200 and not resp.complete and len(resp.body) <= 100
        full = client.request(headers={"Authorization": good}, max_bytes=1 << 20)
        assert full.complete and full.body.startswith(b"\xff\xd8") and len(full.body) > 100
    finally:
        client.close()


def test_one_hung_camera_does_not_delay_the_others(http_snapshot_server, make_camera):
    srv = http_snapshot_server
    srv.hang("/hung.jpg")
    srv.image("/ok.jpg")
    sources = [open_source(make_camera(srv.url("/hung.jpg"), id="hung", timeout=3.0))]
    sources += [open_source(make_camera(srv.url("/ok.jpg"), id=f"ok{i}", timeout=3.0)) for i in range(4)]
    done: dict[str, float] = {}
    start = time.monotonic()

    def fetch(src, name):
        try:
            src.read()
        except SourceError:
            pass
        done[name] = time.monotonic() - start

    threads = [threading.Thread(target=fetch, args=(s, s.camera.id)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(done[f"ok{i}"] < 1.5 for i in range(4)), done
    assert 2.5 <= done["hung"] <= 3.0 + SLACK, done


# -- files ----------------------------------------------------------------------


def test_image_file_is_reread_so_a_swap_shows(tmp_path, make_camera):
    path = write_image(tmp_path / "cam.png", scene_image(160, 90))
    for url in (str(path), path.as_uri()):
        src = open_source(make_camera(url))
        assert likeness(src.read().image, scene_image(160, 90)) > 0.95
    write_image(path, scene_image(160, 90, moved=True))
    assert likeness(src.read().image, scene_image(160, 90, moved=True)) > 0.95
    path.unlink()
    err, _ = read_error(src, 2.0)
    assert err.reason == "connect" and "cam.png" in str(err)
    path.write_bytes(b"not an image")
    assert read_error(src, 2.0)[0].reason == "decode"


def test_folder_reads_images_in_numeric_order_and_loops(tmp_path, make_camera):
    shades = {2: 20, 10: 200, 1: 100}
    for n, v in shades.items():
        write_image(tmp_path / f"frame{n}.png", np.full((20, 30, 3), v, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(make_camera(str(tmp_path)))
    got = [int(src.read().image[0, 0, 0]) for _ in range(5)]
    assert got == [100, 20, 200, 100, 20]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_error(open_source(make_camera(str(empty))), 2.0)[0].reason == "ended"


def test_video_file_gives_successive_frames_and_loops(tmp_path, make_camera):
    frames = scene_frames(6, 160, 96, moved=False, fps=5)
    clip = write_clip(tmp_path / "clip.mp4", frames, fps=5)
    src = open_source(make_camera(str(clip)))
    got = [src.read().image for _ in range(13)]
    assert all(g.shape == (96, 160, 3) for g in got)
    # After the 6th frame it starts over: frame 7 looks like frame 1 again.
    assert likeness(got[6], got[0]) > 0.97 and likeness(got[12], got[0]) > 0.97
    src.close()
    assert read_error(open_source(make_camera(str(tmp_path / "none.mp4"))), 2.0)[0].reason == "connect"


def test_a_call_that_ignores_its_timeouts_is_abandoned_once_and_counted(tmp_path, make_camera):
    """A FIFO as the camera's image file: open() blocks until a writer comes, like a dead
    NFS mount or a library stuck in a syscall. The read must still return in time, the
    stuck thread is counted, and no second thread piles up behind it."""
    fifo = tmp_path / "cam.png"
    os.mkfifo(fifo)
    baseline = abandoned_workers()
    src = open_source(make_camera(str(fifo), timeout=1.0, allow_special_file=True))
    err, took = read_error(src, 1.0 + SLACK)
    assert err.reason == "timeout" and took >= 1.0
    assert abandoned_workers() == baseline + 1
    err, took = read_error(src, 0.5)  # refused at once: the first worker is still stuck
    assert err.reason == "timeout" and "still hung" in str(err)
    assert abandoned_workers() == baseline + 1
    # A writer arrives: the stuck open returns, the worker ends and is no longer counted.
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    with open(fifo, "wb") as w:
        w.write(png.tobytes())
    deadline = time.monotonic() + 5
    while abandoned_workers() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert abandoned_workers() == baseline
