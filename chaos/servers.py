"""The harness's own database servers: a PostgreSQL or MariaDB instance with its own data
directory and port, which the harness may kill with SIGKILL and start again without touching
the machine's services (`make test` and the demo keep using those).

An instance runs in its own process group, so a kill takes the postmaster (or mariadbd) and
every backend at once, as a power cut or the OOM killer would; the next start runs the
server's own crash recovery. Durability settings are the servers' defaults for what a kill
tests: a process crash loses nothing the server acknowledged (fsync only matters to a machine
that loses power, which a kill of a process is not, so it is off to keep schedules quick).

A member's server may run on a clock of its own (`skewable`): libfaketime is preloaded into
it, reading its offset from a file the harness rewrites (`skew`), so the server's clock can
jump back or forward while it runs, and survives a kill and restart as a real clock would.
Only the realtime clock is faked; the monotonic one the servers time their waits with is not.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW_TAKES = 10.0  # seconds a server is given to read a new offset (it reads it each second)


class ServerError(RuntimeError):
    """A harness server could not be made or started; says which and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise ServerError("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install "
                          "postgresql)")
    return found[-1].parent


def _run_as() -> dict:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` account (set in
    the child itself, not through runuser, so the server leads its own process group)."""
    if os.geteuid() != 0:
        return {}
    pg = pwd.getpwnam("postgres")
    return {"user": pg.pw_uid, "group": pg.pw_gid, "extra_groups": []}


@dataclass
class Server:
    """One instance: `start`, `kill` (SIGKILL of its whole process group), `restart`."""

    home: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    kind: str = ""
    skewable: bool = False  # its clock can be skewed (libfaketime preloaded)

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        self.proc = subprocess.Popen(self._command(), stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=self._environment(), **self._identity())
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"{self.kind} on port {self.port} did not start; see {self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the server and all its backends at once."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.skewable:  # libfaketime's shared memory, named after the process that made it
            for name in (f"faketime_shm_{self.proc.pid}", f"sem.faketime_sem_{self.proc.pid}"):
                Path("/dev/shm", name).unlink(missing_ok=True)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    # -- the server's clock ---------------------------------------------------------------
    @property
    def clock_file(self) -> Path:
        return self.home / "faketime"

    def _environment(self) -> dict[str, str] | None:
        if not self.skewable:
            return None
        if not FAKETIME.exists():
            raise ServerError(f"{FAKETIME} is missing: a member's clock cannot be skewed "
                              "(scripts/ensure-faketime; apt-get install faketime)")
        if not self.clock_file.exists():
            self._write_offset(0)
        return {**os.environ, "LD_PRELOAD": str(FAKETIME),
                "FAKETIME_TIMESTAMP_FILE": str(self.clock_file),
                "FAKETIME_CACHE_DURATION": "1",  # the file read again each second
                "FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}

    def _write_offset(self, seconds: float) -> None:
        """The file libfaketime reads: a relative offset in seconds ("-600", "+0"), replaced
        whole so a server never reads half of it."""
        self.home.mkdir(parents=True, exist_ok=True)
        part = self.clock_file.with_suffix(".part")
        part.write_text(f"{seconds:+.0f}\n")
        os.chmod(part, 0o644)  # PostgreSQL reads it as `postgres`
        os.replace(part, self.clock_file)

    def skew(self, seconds: float) -> None:
        """The server's clock `seconds` off the real one from now on (0: right again); returns
        once the server reads it so (a down server takes it when it starts)."""
        if not self.skewable:
            raise ServerError(f"{self.kind} on port {self.port} was not started skewable")
        self._write_offset(seconds)
        if not self.up():
            return
        deadline = time.monotonic() + SKEW_TAKES
        while abs(self.clock_offset() - seconds) > 2:
            if time.monotonic() > deadline:
                raise ServerError(f"{self.kind} on port {self.port}: its clock did not take "
                                  f"the offset {seconds:+.0f} s in {SKEW_TAKES:.0f} s")
            time.sleep(0.2)

    def now(self) -> datetime:
        """The server's own clock (its NOW() in a fresh session, as local time)."""
        engine = create_engine(self.admin_url, pool_pre_ping=False)
        try:
            with engine.connect() as conn:
                return conn.execute(text(self._now_sql)).scalar_one()
        finally:
            engine.dispose()

    def clock_offset(self) -> float:
        """Seconds the server's clock is ahead of ours (negative: behind)."""
        before = datetime.now()
        theirs = self.now()
        return (theirs - (before + (datetime.now() - before) / 2)).total_seconds()

    def _answers(self) -> bool:
        try:
            engine = create_engine(self.admin_url, pool_pre_ping=False)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return True
        except Exception:  # noqa: BLE001 - not up yet, whatever the driver says
            return False

    @property
    def data(self) -> Path:
        return self.home / "data"

    def _make_data(self) -> None:
        """The server's data directory, made once by its own initialiser."""
        self.home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(self._init_command(), capture_output=True, text=True,
                              **self._identity())
        if done.returncode:
            raise ServerError(f"{self.kind}: could not make its data directory {self.data}: "
                              f"{done.stderr[-500:]}")

    def create_database(self, name: str) -> str:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return self.url(name)

    # per kind
    admin_url = ""
    _now_sql = "SELECT NOW()"

    def _identity(self) -> dict:
        return {}

    def url(self, database: str) -> str:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _init_command(self) -> list[str]:
        raise NotImplementedError


class PostgresServer(Server):
    _now_sql = "SELECT LOCALTIMESTAMP"  # the session's time zone is the machine's

    def __init__(self, home: Path, skewable: bool = False):
        super().__init__(home, kind="PostgreSQL", skewable=skewable)
        if not self.data.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # the data directory must belong to the account running it
                pg = pwd.getpwnam("postgres")
                os.chown(self.home, pg.pw_uid, pg.pw_gid)
            self._make_data()

    def _init_command(self) -> list[str]:
        return [str(_pg_bin() / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-sync"]

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _identity(self) -> dict:
        return _run_as()

    def _command(self) -> list[str]:
        return [str(_pg_bin() / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.home), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "max_connections=200", "-c", "shared_buffers=64MB"]


class MariaDBServer(Server):
    def __init__(self, home: Path, skewable: bool = False):
        super().__init__(home, kind="MariaDB", skewable=skewable)
        if not self.data.exists():
            self._make_data()

    def _init_command(self) -> list[str]:
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if installer is None:
            raise ServerError("mariadb-install-db is missing (apt-get install mariadb-server)")
        return [installer, "--no-defaults", f"--datadir={self.data}", "--user=root",
                "--auth-root-authentication-method=normal", "--skip-test-db"]

    @property
    def admin_url(self) -> str:
        return self.url("")

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def _command(self) -> list[str]:
        return ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}",
                f"--port={self.port}", f"--socket={self.home / 'mariadb.sock'}",
                "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
                f"--pid-file={self.home / 'mariadb.pid'}", "--innodb-buffer-pool-size=64M",
                "--max-connections=300", "--skip-name-resolve"]
