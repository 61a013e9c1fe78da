"""A real Mosquitto broker for tests (Debian's ``mosquitto``), and a real subscriber that records.

``Mosquitto(folder, users=...)`` writes a config into ``folder`` (loopback
listener, persistence on, a password file made by ``mosquitto_passwd`` when
``users`` is given, anonymous clients refused then) and starts it; ``stop()``
and ``start()`` again keep its port, so clients can reconnect to the same address.
``Recorder`` is a paho client that keeps every message with its retain flag.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker process on 127.0.0.1:``port``; its log is ``folder/mosquitto.log``."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: bool = False):
        self.folder = folder
        self.port = free_port()
        self.log_path = folder / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {folder}/",
                 f"log_dest file {self.log_path}", "log_type all"]
        self.ca: Path | None = None
        if tls:   # a self-signed certificate for 127.0.0.1 (an IP SAN: clients check the name)
            key, self.ca = folder / "key.pem", folder / "cert.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", str(key), "-out", str(self.ca)], check=True, capture_output=True, timeout=60)
            lines += [f"certfile {self.ca}", f"keyfile {key}"]
        if os.getuid() == 0:   # else mosquitto drops to the "mosquitto" user, who cannot write here
            lines.append(f"user {pwd.getpwuid(0).pw_name}")
        if users:
            pwfile = folder / "passwords"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(pwfile), user, password],
                               check=True, capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class Recorder:
    """A subscriber that records every message (topic, payload, retain flag), reconnecting by itself.

    ``client_id`` given: a persistent session (clean_session false), so QoS 1 messages
    published while it is away are kept for it by the broker, as a real consumer's are.
    """

    def __init__(self, port: int, topics: str | list[str] = "#", user: str | None = None,
                 password: str | None = None, client_id: str = ""):
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.topics = [topics] if isinstance(topics, str) else topics
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not client_id)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the recorder could not connect to mosquitto"

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if not reason.is_failure:
            for t in self.topics:
                client.subscribe(t, qos=1)
            self.connected.set()

    def _on_message(self, _client, _userdata, msg) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Message | None:
        got = self.on(topic)
        return got[-1] if got else None

    def wait(self, what: str, cond, timeout: float = 20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = cond()
            if got:
                return got
            time.sleep(0.05)
        with self.lock:
            seen = sorted({m.topic for m in self.messages})
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; topics seen: {seen}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
