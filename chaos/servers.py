"""The harness's own database servers: a PostgreSQL or MariaDB instance with its own data
directory and port, which the harness may kill with SIGKILL and start again without touching
the machine's services (`make test` and the demo keep using those).

An instance runs in its own process group, so a kill takes the postmaster (or mariadbd) and
every backend at once, as a power cut or the OOM killer would; the next start runs the
server's own crash recovery. Durability settings are the servers' defaults for what a kill
tests: a process crash loses nothing the server acknowledged (fsync only matters to a machine
that loses power, which a kill of a process is not, so it is off to keep schedules quick).
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
from pathlib import Path

from sqlalchemy import create_engine, text


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

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        self.proc = subprocess.Popen(self._command(), stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     **self._identity())
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
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

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

    def _identity(self) -> dict:
        return {}

    def url(self, database: str) -> str:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _init_command(self) -> list[str]:
        raise NotImplementedError


class PostgresServer(Server):
    def __init__(self, home: Path):
        super().__init__(home, kind="PostgreSQL")
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
    def __init__(self, home: Path):
        super().__init__(home, kind="MariaDB")
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
