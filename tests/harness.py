"""Test plumbing: throwaway PostgreSQL servers and migrated OnceOnly databases.

Every feature must behave the same on SQLite and PostgreSQL (triggers, JSON, locking and
typing differ), yet the suite must not depend on a server a developer happens to run. So each
pytest process (each xdist worker) starts its own short-lived cluster in a temp dir, tuned for
speed instead of durability, unless ONCEONLY_TEST_PG_URL points at a server to use instead.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from onceonly.db import Database
from onceonly.ops.migrate import upgrade
from onceonly.settings import load_settings

ENV_URL = "ONCEONLY_TEST_PG_URL"
PG_OS_USER = "postgres"
# Durability is pointless for a server that is deleted after the run; these make it much faster.
SPEED_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PgUnavailable(RuntimeError):
    """PostgreSQL could not be found, started or reached; the message says why and what to do."""


def in_ci() -> bool:
    """CI must not pass by silently skipping the PostgreSQL half of the suite."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def worker_id() -> str:
    """xdist worker name (gw0, gw1, ...) or "main", so parallel workers never share a database."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def database_name(*parts: str) -> str:
    """A safe PostgreSQL identifier from parts plus the worker id (hashed if over 63 bytes)."""
    raw = "_".join(["t", *parts, worker_id()]).lower()
    name = re.sub(r"[^a-z0-9_]+", "_", raw).strip("_")
    if len(name) > 63:
        digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{digest}"
    return name


def normalize_url(url: str) -> str:
    """Accept plain libpq-style URLs but always drive them with psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class PgServer:
    """A reachable server plus a superuser URL; creates and drops whole databases on it."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = normalize_url(admin_url)
        # AUTOCOMMIT: CREATE/DROP DATABASE cannot run in a transaction. NullPool: hold no idle
        # connection that would keep a database busy.
        self._engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def check(self) -> None:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise PgUnavailable(f"cannot connect to {self._engine.url!r}: {reason}") from exc

    def url_for(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """Create an empty database (replacing leftovers of a crashed run) and return its URL."""
        self.drop_database(name)
        with self._engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE \"{_ident(name)}\" TEMPLATE template0 ENCODING 'UTF8'"))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        # FORCE: a test that leaked a connection must not make teardown fail or hang.
        with self._engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{_ident(name)}" WITH (FORCE)'))

    def close(self) -> None:
        self._engine.dispose()


def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise ValueError(f"unsafe database name {name!r}; build it with database_name()")
    return name


def find_bindir() -> Path | None:
    """Highest /usr/lib/postgresql/<version>/bin (Debian layout), else initdb on PATH."""

    def version(path: Path) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in path.parent.name.split("."))
        except ValueError:
            return (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).parent / "pg_ctl").is_file():
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    """A private cluster in a temp dir: unix socket there plus 127.0.0.1 on a free port, trust auth.

    PostgreSQL refuses to run as root, so under root (CI containers) every server command runs
    as the postgres OS user via runuser, and the temp dir is handed over to that user.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_postgres = os.geteuid() == 0
        self.port = 0
        self.base = Path(tempfile.mkdtemp(prefix="onceonly-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self._running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", PG_OS_USER, "--", *cmd]
        # cwd: the postgres user may not be allowed into the caller's working directory.
        return subprocess.run(cmd, cwd=self.base, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def start(self, attempts: int = 5) -> None:
        self.sock.mkdir()
        if self.as_postgres:
            try:
                user = pwd.getpwnam(PG_OS_USER)
            except KeyError:
                raise PgUnavailable(
                    f"running as root but there is no {PG_OS_USER!r} OS user to run the server as"
                ) from None
            if shutil.which("runuser") is None:
                raise PgUnavailable("running as root but runuser (util-linux) is missing")
            for path in (self.base, self.sock):
                os.chown(path, user.pw_uid, user.pw_gid)
        init = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        if init.returncode != 0:
            raise PgUnavailable(f"initdb failed in {self.base}:\n{init.stdout}{init.stderr}".rstrip())
        # Another worker may grab the port between probing and binding, so retry on a fresh one.
        for _ in range(attempts):
            self.port = _free_port()
            options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                       f"-c unix_socket_directories={shlex.quote(str(self.sock))}",
                       *(f"-c {opt}" for opt in SPEED_OPTIONS)]  # fmt: skip
            started = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                                "-l", str(self.log), "-o", " ".join(options))  # fmt: skip
            if started.returncode == 0:
                self._running = True
                atexit.register(self.stop)  # in case the session teardown never runs
                return
        raise PgUnavailable(f"pg_ctl start failed {attempts} times; last server log lines:\n{self._log_tail()}")

    def stop(self) -> None:
        """Kill the server without a checkpoint (nothing is worth keeping) and delete its files."""
        if self._running:
            self._running = False
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.base, ignore_errors=True)


def start_server() -> tuple[PgServer, LocalCluster | None]:
    """The server tests should use: ONCEONLY_TEST_PG_URL if set, else a fresh local cluster."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        server = PgServer(url)
        server.check()
        return server, None
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable(
            "initdb/pg_ctl not found under /usr/lib/postgresql/*/bin or on PATH; install the "
            f"postgresql package (`make system-deps` as root) or set {ENV_URL} to a superuser URL"
        )
    cluster = LocalCluster(bindir)
    try:
        cluster.start()
        server = PgServer(cluster.admin_url)
        server.check()
    except BaseException:
        cluster.stop()
        raise
    return server, cluster


def open_database(home: Path, url: str = "") -> Database:
    """A migrated Database exactly as the app builds it; url "" means SQLite under home."""
    settings = load_settings(home=home, database_url=url)
    database = Database(settings)
    try:
        upgrade(database.engine)
    except BaseException:
        database.dispose()
        raise
    return database
