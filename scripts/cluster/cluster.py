"""circhub's production topology on one machine: a Prefect server on PostgreSQL, the central
store on PostgreSQL, the process work pool, and N workers, each in its own network namespace
with its own address, pulling runs from the pool.

    .venv/bin/python scripts/cluster/cluster.py up [--workers 2] [--members 6]   (make cluster)
    .venv/bin/python scripts/cluster/cluster.py down

Network: a bridge `chb<tag>` holds 169.254.<net>.1/24 (link-local, created here and nowhere
else); each worker namespace `circhub-<tag>-w<i>` gets a veth pair into the bridge and the
address 169.254.<net>.(10+i). The Prefect server listens on 127.0.0.1 and on the bridge
address; PostgreSQL (which listens on loopback only) is relayed onto the bridge address by
`socat`, so workers reach the API and the central store exactly as remote hosts would.

No hidden local state: every worker gets its own empty PREFECT_HOME; what a sync needs
(config, watermarks, outbox) is in the central store and the Prefect server.

Lost workers: runs emit heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY); the automation
`circhub-crash-zombie-runs` marks a run whose heartbeats stop as Crashed, and
`circhub-reschedule-crashed-runs` puts a crashed run back to Scheduled, so another worker
picks it up (same flow run, run_count + 1).

Everything created is written to `<state dir>/state.json`; `down` removes exactly that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

PG_ADMIN = os.environ.get("CIRCHUB_CLUSTER_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
HEARTBEAT_SECONDS = 30  # Prefect's smallest flow-run heartbeat frequency
ZOMBIE_AFTER = timedelta(seconds=90)  # three missed heartbeats
SYNC = "sync-consortium/every-5-minutes"


class ClusterError(RuntimeError):
    """A piece of the cluster could not be set up; the message says which and why."""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if check and done.returncode:
        raise ClusterError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done


def require_namespaces() -> None:
    """Fail with a clear message where network namespaces cannot be made (never skip)."""
    if os.geteuid() != 0:
        raise ClusterError("the cluster needs root: network namespaces and veth pairs "
                           "(`ip netns`, `ip link`) are root-only; run as root")
    if shutil.which("ip") is None:
        raise ClusterError("`ip` (iproute2) is missing: apt-get install -y iproute2")
    if shutil.which("socat") is None:
        raise ClusterError("`socat` is missing: apt-get install -y socat")
    probe = f"circhub-probe-{uuid.uuid4().hex[:6]}"
    done = sh("ip", "netns", "add", probe, check=False)
    if done.returncode:
        raise ClusterError(f"cannot create a network namespace: {done.stderr.strip()}")
    sh("ip", "netns", "del", probe, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_net() -> int:
    """A third octet of 169.254.x.0/24 that no interface here uses yet."""
    used = sh("ip", "-4", "-o", "addr").stdout
    choices = [n for n in range(200, 250) if f"169.254.{n}." not in used]
    if not choices:
        raise ClusterError("no free 169.254.200-249.0/24 subnet")
    return random.choice(choices)


class Cluster:
    """Everything one cluster made; saved as JSON so `down` (or a test finaliser) undoes it."""

    def __init__(self, home: Path, tag: str | None = None, net: int | None = None):
        self.home = home
        self.tag = tag or uuid.uuid4().hex[:4]
        self.net = net
        self.bridge = f"chb{self.tag}"
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.databases: list[str] = []
        self.pids: dict[str, int] = {}  # name -> pid of processes started here
        self.port: int | None = None
        self.pg_port: int | None = None
        self.config: str | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "tag": self.tag, "net": self.net, "namespaces": self.namespaces,
            "links": self.links, "databases": self.databases, "pids": self.pids,
            "port": self.port, "pg_port": self.pg_port, "config": self.config}, indent=1))

    @classmethod
    def load(cls, home: Path) -> Cluster:
        data = json.loads((home / "state.json").read_text())
        c = cls(home, data["tag"], data["net"])
        c.namespaces, c.links = data["namespaces"], data["links"]
        c.databases, c.pids = data["databases"], {k: int(v) for k, v in data["pids"].items()}
        c.port, c.config = data["port"], data["config"]
        c.pg_port = data.get("pg_port")
        return c

    # -- addresses -------------------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        return f"169.254.{self.net}.1"

    def worker_ip(self, i: int) -> str:
        return f"169.254.{self.net}.{10 + i}"

    def store_url(self, db: str) -> str:
        """A PostgreSQL database as workers reach it: through the relay on the bridge."""
        return f"postgresql+psycopg://postgres@{self.host_ip}:{self.pg_port}/{db}"

    @property
    def api_url(self) -> str:  # what workers (and anyone) use: the bridge address
        return f"http://{self.host_ip}:{self.port}/api"

    # -- databases -------------------------------------------------------------------------
    def create_database(self, suffix: str, extensions: tuple[str, ...] = ()) -> str:
        name = f"circhub_cluster_{self.tag}_{suffix}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.databases.append(name)
        self.save()
        admin.dispose()
        if extensions:
            eng = create_engine(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
                                isolation_level="AUTOCOMMIT")
            with eng.connect() as conn:
                for ext in extensions:
                    conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {ext}"))
            eng.dispose()
        return name

    # -- network ---------------------------------------------------------------------------
    def up_network(self, workers: int) -> None:
        self.net = self.net or free_net()
        self.save()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        self.save()
        sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(workers):
            ns = f"circhub-{self.tag}-w{i}"
            outside, inside = f"chv{self.tag}{i}", f"chp{self.tag}{i}"  # <= 15 characters
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            self.save()
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            self.links.append(outside)
            self.save()
            sh("ip", "link", "set", outside, "master", self.bridge)
            sh("ip", "link", "set", outside, "up")
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{self.worker_ip(i)}/24", "dev", inside)
            sh("ip", "-n", ns, "link", "set", inside, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def relay(self, name: str, port: int, target_port: int) -> None:
        """socat: bridge address:port -> 127.0.0.1:target_port (for loopback-only servers)."""
        log = (self.home / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{port},bind={self.host_ip},fork,reuseaddr",
             f"TCP:127.0.0.1:{target_port}"], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.pids[name] = proc.pid
        self.save()
        wait_for_port(self.host_ip, port, 10, proc)

    # -- prefect ---------------------------------------------------------------------------
    def env(self, home: Path, api_url: str | None = None) -> dict:
        from circhub.deployments import serve as stack

        env = stack.prefect_env(api_url or self.api_url, home, self.config)
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start_server(self, db: str) -> None:
        self.port = free_port()
        env = self.env(self.home / "server-home", f"http://127.0.0.1:{self.port}/api")
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}")
        log = (self.home / "server.log").open("ab")
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "server", "start",
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids["server"] = proc.pid
        self.save()
        deadline = time.monotonic() + 180
        from circhub.deployments.serve import healthy
        while not healthy(f"http://127.0.0.1:{self.port}/api"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"Prefect server did not start; see {self.home}/server.log")
            time.sleep(0.5)
        self.relay("api-relay", self.port, self.port)  # the API on the bridge address too

    def start_worker(self, i: int) -> int:
        ns = self.namespaces[i]
        home = self.home / f"worker{i}-home"
        shutil.rmtree(home, ignore_errors=True)  # no state carried between worker lives
        env = self.env(home)
        log = (self.home / f"worker{i}.log").open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(Path(sys.executable).parent / "prefect"),
             "worker", "start", "--pool", "circhub", "--type", "process",
             "--name", f"worker-{i}@{self.worker_ip(i)}"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids[f"worker{i}"] = proc.pid
        self.save()
        return proc.pid

    def kill_worker_host(self, i: int) -> list[int]:
        """SIGKILL every process of worker i's namespace: the host is gone, runs and all."""
        ns = self.namespaces[i]
        pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pids.pop(f"worker{i}", None)
        self.save()
        return pids

    # -- teardown --------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything recorded; keeps going past errors and returns them."""
        errors = []
        for ns in self.namespaces:  # processes inside namespaces first
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for name, pid in reversed(list(self.pids.items())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)  # each was started in its own session
            if not wait_gone(pid, 15):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            del self.pids[name]
        for ns in self.namespaces:
            done = sh("ip", "netns", "del", ns, check=False)
            if done.returncode and "No such file" not in done.stderr:
                errors.append(done.stderr.strip())
        self.namespaces = []
        for link in reversed(self.links):
            sh("ip", "link", "del", link, check=False)  # veths go with their namespace
        self.links = []
        if self.databases:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for name in self.databases:
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = :n AND pid <> pg_backend_pid()"),
                                 {"n": name})
                    try:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                    except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                        errors.append(str(exc).splitlines()[0])
            admin.dispose()
            self.databases = []
        self.save()
        return errors


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        time.sleep(0.2)
    return False


def wait_for_port(host: str, port: int, seconds: float, proc=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    raise ClusterError(f"nothing listens on {host}:{port}")


# -- consortium and Prefect objects ----------------------------------------------------------

def simulated_consortium(folder: Path, members: int, central_url: str, seed: int = 11,
                         start: datetime | None = None, play_days: int = 3):
    """Koha members as SQLite files under `folder`, played for a few days, and their config."""
    from circhub.simulator.world import config_toml, member_specs, sqlite_world

    start = start or datetime.now().replace(microsecond=0) - timedelta(days=20)
    world, urls = sqlite_world(folder, members, seed, start)
    world.seed(6, 6)
    world.play(days=play_days, actions_per_day=15)
    config = folder / "consortium.toml"
    config.write_text(config_toml(member_specs(members), urls, central_url,
                                  "cluster consortium", demo=True))
    from circhub.connections.runtime import upgrade_store

    upgrade_store(config)
    return world, config


def recovery_automations() -> list:
    """Zombie runs (heartbeats stopped) marked Crashed; crashed runs put back to Scheduled."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    runs = ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]})
    zombie = Automation(
        name="circhub-crash-zombie-runs",
        description="A flow run that stopped sending heartbeats (its worker host is gone).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match=runs, for_each={"prefect.resource.id"}, posture=Posture.Proactive,
            threshold=1, within=ZOMBIE_AFTER),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message="no heartbeat for 90 s: worker lost")])
    again = Automation(
        name="circhub-reschedule-crashed-runs",
        description="A crashed run goes back to the pool; any live worker takes it.",
        trigger=EventTrigger(expect={"prefect.flow-run.Crashed"}, match=runs,
                             for_each={"prefect.resource.id"}, posture=Posture.Reactive,
                             threshold=1),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED,
                                    message="rescheduled after a crash")])
    stored = []
    for auto in (zombie, again):
        try:
            existing = Automation.read(name=auto.name)
            auto.id = existing.id
            auto.update()
        except ValueError:
            auto = auto.create()
        stored.append(auto)
    return stored


def deploy_sync(cluster: Cluster) -> None:
    """Pool, limits, automations, and the consortium sync deployment with its schedule
    paused (the test and the operator trigger runs; `--schedule` in `up` leaves it on)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from circhub.connections.runtime import open_runtime
    from circhub.deployments import serve as stack

    env = cluster.env(cluster.home / "admin-home")
    with temporary_settings(updates={PREFECT_API_URL: cluster.api_url}):
        stack.prepare(open_runtime(cluster.config).consortium)
        recovery_automations()
    stack.apply_deployments(env, [SYNC])


def pause_schedules(cluster: Cluster) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: cluster.api_url}), \
            get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(SYNC)
        for sched in dep.schedules:
            client.update_deployment_schedule(dep.id, sched.id, active=False)
        for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"])))):
            client.delete_flow_run(run.id)


def up(home: Path, workers: int, members: int = 6, schedule: bool = False,
       consortium=None) -> Cluster:
    """Bring the cluster up; `consortium(cluster, central_url) -> config path` builds the
    members (default: `members` simulated Koha members). On any failure it is torn down."""
    require_namespaces()
    cluster = Cluster(home)
    try:
        cluster.up_network(workers)
        cluster.pg_port = free_port()
        cluster.relay("pg-relay", cluster.pg_port, 5432)
        server_db = cluster.create_database("prefect", ("pg_trgm",))
        store_db = cluster.create_database("store")
        central = cluster.store_url(store_db)
        if consortium is None:
            config = simulated_consortium(home / "members", members, central)[1]
        else:
            config = consortium(cluster, central)
        cluster.config = str(config)
        cluster.save()
        cluster.start_server(server_db)
        deploy_sync(cluster)
        if not schedule:
            pause_schedules(cluster)
        for i in range(workers):
            cluster.start_worker(i)
    except BaseException:
        cluster.down()
        raise
    return cluster


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--home", default=str(ROOT / "var" / "cluster"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--members", type=int, default=6)
    p.add_argument("--schedule", action="store_true", help="leave the 5-minute schedule on")
    a = p.parse_args(argv)
    home = Path(a.home)
    if a.action == "down":
        if not (home / "state.json").exists():
            print(f"no cluster recorded under {home}")
            return 0
        errors = Cluster.load(home).down()
        print("cluster down" + (f" (with errors: {errors})" if errors else ""))
        return 1 if errors else 0
    if (home / "state.json").exists() and Cluster.load(home).namespaces:
        print(f"a cluster is already up under {home}: scripts/cluster/down first")
        return 1
    c = up(home, a.workers, a.members, a.schedule)
    print(f"Prefect UI/API: http://127.0.0.1:{c.port} and {c.api_url}\n"
          f"workers: {', '.join(f'{ns} ({c.worker_ip(i)})' for i, ns in enumerate(c.namespaces))}\n"
          f"config: {c.config}\n"
          f"run a sync: PREFECT_API_URL={c.api_url} .venv/bin/prefect deployment run {SYNC}\n"
          f"stop: scripts/cluster/down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
