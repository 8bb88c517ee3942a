"""A PostgreSQL 15 cluster in the state folder, run from the Debian packages' binaries.

The cluster is private to the project (its own data folder, port and socket folder), so it
never touches a system cluster. Its configuration (deploy/postgres/postgresql.conf)
preloads TimescaleDB, which deploy/install.sh builds once per machine; a server without it
is refused before it starts, with that fix. initdb and the server refuse to run as root, so when we
are root every server command runs as the unprivileged ``postgres`` system user, which
then owns ``<state>/postgres``.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

from schemas.settings import DEFAULT_POSTGRES_PORT
from turnstile_cli.stack.paths import DEPLOY_DIR, render_template, write_if_changed
from turnstile_cli.stack.process import (
    StackError,
    pid_alive,
    pid_matches,
    read_pid,
    stop_pid,
    tail,
    wait_ports_closed,
    wait_until,
)

SERVICE_USER = "postgres"
_CONF_TEMPLATE = DEPLOY_DIR / "postgres" / "postgresql.conf"
_INCLUDE_LINE = "include 'turnstile.conf'"
# sun_path holds 108 bytes; the socket file is "<dir>/.s.PGSQL.<port>".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")


def find_pg_bin() -> Path:
    """The folder holding initdb/pg_ctl: $TURNSTILE_PG_BIN, Debian's 15, or the PATH."""
    candidates = [os.environ.get("TURNSTILE_PG_BIN", ""), "/usr/lib/postgresql/15/bin"]
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise StackError("PostgreSQL 15 binaries not found: apt-get install postgresql-15")


class PostgresServer:
    """One cluster in ``<state_dir>/postgres`` listening on ``127.0.0.1:<port>``."""

    def __init__(
        self,
        state_dir: Path,
        port: int = DEFAULT_POSTGRES_PORT,
        *,
        user: str = "turnstile",
        database: str = "turnstile",
        bin_dir: Path | None = None,
    ) -> None:
        self.home = state_dir.resolve() / "postgres"
        self.port = port
        self.user = user
        self.database = database
        self._bin_dir = bin_dir
        self.data_dir = self.home / "data"
        self.log_file = self.home / "server.log"
        self.socket_dir = self._socket_dir()

    @property
    def bin_dir(self) -> Path:
        """Found on first use, so an object for a never-started server needs no binaries."""
        if self._bin_dir is None:
            self._bin_dir = find_pg_bin()
        return self._bin_dir

    @property
    def database_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs (checked against its command line), else None."""
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid is not None and pid_matches(pid, str(self.data_dir)):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """True when the ``turnstile`` database accepts a query."""
        return database_answers(self.database_url, timeout)

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed, start it unless running, create the database."""
        if not self.is_running():
            self._check_timescaledb()
            self._init_cluster()
            self._render_config()
            if not wait_ports_closed((self.port,), 5.0):
                raise StackError(f"port {self.port} is taken by another process")
            done = self._run_as_service(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(int(timeout)), "start",
            )
            if done.returncode != 0:
                raise StackError(
                    f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{tail(self.log_file)}"
                )
        if not wait_until(lambda: self._answers("postgres"), timeout, interval=0.2):
            raise StackError(f"PostgreSQL not answering on {self.port}:\n{tail(self.log_file)}")
        self._ensure_database()

    def stop(self, timeout: float = 30.0, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``; signals the postmaster by PID if pg_ctl fails."""
        pid = self.pid
        if pid is None:
            return
        self._run_as_service(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
            "-w", "-t", str(int(timeout)), "stop",
        )
        if not wait_until(lambda: not pid_alive(pid), 10.0):
            # SIGQUIT is PostgreSQL's immediate shutdown; stop_pid SIGKILLs after that.
            stop_pid(pid, timeout, signal.SIGQUIT)
        wait_ports_closed((self.port,), 10.0)

    def _check_timescaledb(self) -> None:
        """The configuration preloads TimescaleDB: without its library the server won't start."""
        pg_config = self.bin_dir / "pg_config"
        libdir = self.bin_dir.parent / "lib"
        if pg_config.exists():
            done = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True,  # noqa: S603
                                  text=True, check=False)
            libdir = Path(done.stdout.strip()) if done.returncode == 0 else libdir
        if not (libdir / "timescaledb.so").exists():
            raise StackError(f"TimescaleDB is not installed in {libdir}: run deploy/install.sh "
                             "(it builds TimescaleDB once from the vendored tarball)")

    def _init_cluster(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._check_reachable()
        self.home.mkdir(parents=True, exist_ok=True)
        self._give_to_service(self.home)
        done = self._run_as_service(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write(f"\n# Turnstile local-stack overrides (deploy/postgres/postgresql.conf)\n"
                     f"{_INCLUDE_LINE}\n")

    def _render_config(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_service(self.socket_dir)
        target = self.data_dir / "turnstile.conf"
        write_if_changed(target, render_template(
            _CONF_TEMPLATE, {"PORT": self.port, "SOCKET_DIR": self.socket_dir},
        ))
        self._give_to_service(target)

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        url = self._url("postgres")
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _answers(self, database: str) -> bool:
        return database_answers(self._url(database), 2.0)

    def _url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _socket_dir(self) -> Path:
        preferred = self.home / "run"
        if len(str(preferred)) <= _MAX_SOCKET_DIR:
            return preferred
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/tmp") / f"turnstile-pg-{digest}"  # noqa: S108 - state path too long

    def _run_as_service(self, *command: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if _as_root():
            kwargs = {"user": SERVICE_USER, "group": _service_group()}
        return subprocess.run(
            list(command), capture_output=True, text=True, stdin=subprocess.DEVNULL,
            cwd=self.home, check=False, **kwargs,
        )

    def _give_to_service(self, path: Path) -> None:
        if _as_root():
            shutil.chown(path, SERVICE_USER, _service_group())

    def _check_reachable(self) -> None:
        """Fail early, with the fix, when the postgres user cannot enter a parent folder."""
        if not _as_root():
            return
        account = pwd.getpwnam(SERVICE_USER)
        groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if SERVICE_USER in g.gr_mem}
        for folder in reversed(self.home.parents):
            if not folder.exists():
                break
            info = folder.stat()
            if info.st_uid == account.pw_uid:
                ok = bool(info.st_mode & stat.S_IXUSR)
            elif info.st_gid in groups:
                ok = bool(info.st_mode & stat.S_IXGRP)
            else:
                ok = bool(info.st_mode & stat.S_IXOTH)
            if not ok:
                raise StackError(
                    f"the {SERVICE_USER} user cannot enter {folder}, so it cannot run the "
                    f"cluster in {self.home}: `chmod o+x {folder}` or choose another state dir"
                )


def database_answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` accepts a connection and a trivial query in time."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _as_root() -> bool:
    return os.geteuid() == 0


def _service_group() -> str:
    return grp.getgrgid(pwd.getpwnam(SERVICE_USER).pw_gid).gr_name
