"""A real RTSP server for the tests: GStreamer's gst-rtsp-server looping H.264 files.

Run by Debian's ``/usr/bin/python3`` (its ``gi`` bindings exist only there), as a
subprocess of the test (see the ``rtsp_server`` fixture in conftest.py)::

    /usr/bin/python3 tests/rtsp_server.py --port 0 --mount scene=a.h264,b.h264 ...

Each mount serves an Annex-B H.264 file (``multifilesrc loop=true ! h264parse !
rtph264pay``) over TCP and UDP, looping forever; the media is shared, so every
client of a mount sees the same live stream. Prints ``READY <port>`` once
listening. Commands on stdin, one per line, each answered ``OK ...`` on stdout:

    swap <mount>          serve the mount's other file (the camera "moves"), and back
    set <mount> <file>    serve this file from now on

The live stream switches when the current loop of the file ends (multifilesrc
reads the location afresh each time), so keep test clips short.
"""

from __future__ import annotations

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch(path: str, fps: int) -> str:
    location = path.replace("\\", "\\\\").replace('"', '\\"')
    return (f'( multifilesrc name=src location="{location}" loop=true '
            f"caps=video/x-h264,stream-format=byte-stream,framerate={fps}/1 "
            f"! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")


class Mount:
    """One mount point: its files, the file in use, and its live media."""

    def __init__(self, name: str, files: list[str], fps: int):
        self.name, self.files, self.fps = name, files, fps
        self.current = files[0]
        self.factory = GstRtspServer.RTSPMediaFactory()
        self.factory.set_shared(True)
        self.factory.set_launch(launch(self.current, fps))
        self.media: list = []
        self.factory.connect("media-configure", self._configured)

    def _configured(self, factory, media) -> None:
        self.media.append(media)
        media.connect("unprepared", lambda m: self.media.remove(m) if m in self.media else None)
        src = media.get_element().get_by_name("src")
        if src is not None:
            src.set_property("location", self.current)

    def serve(self, path: str) -> None:
        self.current = path
        self.factory.set_launch(launch(path, self.fps))
        for media in list(self.media):
            src = media.get_element().get_by_name("src")
            if src is not None:
                src.set_property("location", path)

    def swap(self) -> str:
        if len(self.files) > 1:
            i = self.files.index(self.current) if self.current in self.files else 0
            self.serve(self.files[(i + 1) % len(self.files)])
        return self.current


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--mount", action="append", default=[], metavar="NAME=FILE[,ALT...]")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    mounts: dict[str, Mount] = {}
    points = server.get_mount_points()
    for spec in args.mount:
        name, _, files = spec.partition("=")
        paths = [os.path.abspath(p) for p in files.split(",") if p]
        for p in paths:
            if not os.path.isfile(p):
                print(f"ERROR mount {name}: no such file {p}", flush=True)
                return 2
        mount = Mount("/" + name.strip("/"), paths, args.fps)
        mounts[mount.name] = mount
        points.add_factory(mount.name, mount.factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.address}:{args.port}", flush=True)
        return 1
    loop = GLib.MainLoop()

    def command(fd, condition) -> bool:
        line = sys.stdin.readline()
        if not line:  # the test went away: stop with it
            loop.quit()
            return False
        parts = line.split()
        if len(parts) >= 2 and ("/" + parts[1].strip("/")) in mounts:
            mount = mounts["/" + parts[1].strip("/")]
            if parts[0] == "swap":
                print(f"OK swap {mount.name} {os.path.basename(mount.swap())}", flush=True)
                return True
            if parts[0] == "set" and len(parts) == 3 and os.path.isfile(parts[2]):
                mount.serve(os.path.abspath(parts[2]))
                print(f"OK set {mount.name} {os.path.basename(parts[2])}", flush=True)
                return True
        print(f"ERROR bad command: {line.strip()}", flush=True)
        return True

    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, command)
    print(f"READY {server.get_bound_port()}", flush=True)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
