"""A throw-away PostgreSQL server on 127.0.0.1 for tests (the registry's and the chart's MLflow).

PostgreSQL's server binaries refuse to run as root, so as root they run as the `postgres` system
user through `runuser`. The test is skipped (with the reason) when the binaries, `runuser` or that
user are missing. With a ``password`` the server has password (scram) authentication over TCP, as
the chart's bundled PostgreSQL does; without one it trusts every connection.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def pg_bin(name: str) -> str | None:
    """``initdb``/``pg_ctl``: on the PATH, else Debian's newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    port: int
    user: str
    password: str | None
    database: str

    @property
    def url(self) -> str:
        """The SQLAlchemy URL MLflow takes (``postgresql+psycopg2://``)."""
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql+psycopg2://{auth}@127.0.0.1:{self.port}/{self.database}"

    def connect(self, database: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
        )


@contextmanager
def postgres_server(user: str, database: str, password: str | None = None) -> Iterator[Postgres]:
    """Start a fresh server with superuser ``user`` and an empty ``database``; stop and delete it
    on exit."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    as_root = os.geteuid() == 0
    if as_root:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as a non-root user")
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no `postgres` system user to run PostgreSQL as")

    def run(*argv: str) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if as_root else list(argv)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90)

    base = Path(tempfile.mkdtemp(prefix="kftune-pg-"))
    data, sock, log, pwfile = base / "data", base / "sock", base / "pg.log", base / "pw"
    sock.mkdir()
    auth = ["--auth=trust"]
    if password:
        pwfile.write_text(password + "\n")
        auth = [f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust"]
    if as_root:
        for p in (base, sock, *([pwfile] if password else [])):
            os.chown(p, pg_user.pw_uid, pg_user.pw_gid)
    port = _free_port()
    started = False
    try:
        r = run(initdb, "-D", str(data), "-U", user, *auth, "-E", "UTF8")
        assert r.returncode == 0, r.stderr
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock}"
        r = run(pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w", "start")
        started = r.returncode == 0
        assert started, r.stderr + (log.read_text() if log.exists() else "")
        pg = Postgres(port, user, password, database)
        conn = pg.connect("postgres")  # over TCP (with the password, when there is one)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        yield pg
    finally:
        if started:
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
