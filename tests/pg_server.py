"""A real PostgreSQL server for the store tests: Debian's binaries, a temporary cluster, a loopback port.

Why a real server: the shared store's whole point is what PostgreSQL does (row locks, SKIP LOCKED,
connection loss, authentication); nothing short of the server shows it. One server per test session
(initdb costs seconds), a fresh schema per test (milliseconds). PostgreSQL refuses to run as root, so
as root the cluster belongs to Debian's ``postgres`` user and its commands run through ``runuser``.

The server is fast rather than durable (fsync off): these tests are about behaviour, not power cuts.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

#: The role and database camwatch uses in the tests, and the role's password (a secret the tests look for).
ROLE = "camwatch"
DATABASE = "camwatch"


def _bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps pg_ctl off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).resolve().parent if which else None


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    if _bin_dir() is None:
        return "PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    return None


class PostgresServer:
    """initdb, pg_ctl start/stop on a free loopback port; ``url(schema)`` for camwatch's role."""

    def __init__(self) -> None:
        from servers import free_port

        self.bin = _bin_dir()
        assert self.bin is not None, unavailable()
        self.root = Path(tempfile.mkdtemp(prefix="camwatch-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.password = "pg-" + secrets.token_hex(12)
        self._admin_password = secrets.token_hex(12)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                               f"\n{self.log.read_text() if self.log.exists() else ''}")

    def init(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self._admin_password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile), "-A", "scram-sha-256",
                  "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync", "--no-instructions")
        pwfile.unlink()
        self.start()
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   f"-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """Stop at once (``immediate``: as a crash or a network cut looks to a client)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def admin_url(self) -> str:
        return f"postgresql://postgres:{self._admin_password}@127.0.0.1:{self.port}/postgres"

    def url(self, schema: str | None = None, connect_timeout: int = 2) -> str:
        """camwatch's URL, with its password; ``schema`` as the search path (one per test)."""
        query = f"connect_timeout={connect_timeout}"
        if schema:
            query += "&options=" + quote(f"-csearch_path={schema}", safe="")
        return f"postgresql://{ROLE}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{DATABASE}?{query}"

    def new_schema(self) -> str:
        """A fresh, empty schema owned by camwatch's role: a store of its own for one test."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return name

    def close(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
        except (RuntimeError, subprocess.SubprocessError):
            pass
        deadline = time.monotonic() + 5
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)
