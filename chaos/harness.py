"""Runs schedules: the harness's servers and Prefect server, a fresh consortium per schedule,
the desks circulating in a thread while hub processes run, faults injected on time, then the
catch-up and the oracle.

The desks and a server kill never overlap (one lock): a kill that landed between a desk's
commit and its answer would leave the truth unsure of what the desk did, which is the
harness's own uncertainty, not the hub's. A desk whose server is down does not circulate (its
staff cannot either); every other desk goes on.

A member server's clock skew lasts the whole step: set before its desk actions (the server
answers with the offset before they start), put right after its hub processes end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, func, select

from chaos import consortium as consortia
from chaos.links import Link
from chaos.oracle import SETTLED, Finding, check
from chaos.schedule import Schedule, Step
from chaos.servers import MariaDBServer, PostgresServer, free_port

ROOT = Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT = 420  # a sync waits up to 240 s for a member slot a killed run still leases
CATCH_UP_SECONDS = 600


@dataclass
class Result:
    schedule: Schedule
    findings: list[Finding]
    converge_seconds: float
    actions: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


class Harness:
    def __init__(self, home: Path):
        from circhub.deployments.serve import prefect_env, start_server

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        # The servers' data under the system's temporary folder, in one readable by all:
        # PostgreSQL runs as `postgres` (when we are root) and must reach its folder, which a
        # private parent (pytest's, a home directory) would not let it.
        self.data = Path(tempfile.mkdtemp(prefix="circhub-chaos-servers-"))
        os.chmod(self.data, 0o755)
        # The members' servers run on a clock the schedules may skew (chaos/servers.py).
        self.servers = {"central": PostgresServer(self.data / "central"),
                        "members_pg": PostgresServer(self.data / "members_pg", skewable=True),
                        "mariadb": MariaDBServer(self.data / "mariadb", skewable=True)}
        self.down: set[str] = set()
        self.desk_lock = threading.Lock()
        self.prefect = None
        try:
            for server in self.servers.values():
                server.start()
            port = free_port()
            self.env = prefect_env(f"http://127.0.0.1:{port}/api", home / "prefect")
            self.env.update(PREFECT_SERVER_LOGGING_LEVEL="WARNING", PREFECT_LOGGING_LEVEL="WARNING")
            self.prefect = start_server(self.env, port, home / "prefect" / "server.log",
                                        timeout=180)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        from circhub.deployments.serve import stop

        stop(self.prefect)
        for server in self.servers.values():
            server.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    # -- one schedule --------------------------------------------------------------------
    def run(self, schedule: Schedule) -> Result:
        folder = self.home / f"schedule-{schedule.index}"
        self.links = {code: Link(self.servers[consortia.server_of(code)].port)
                      for code in consortia.member_codes()}
        c = consortia.build(folder, self.servers, seed=schedule.seed * 1000 + schedule.index,
                            tag=f"{schedule.seed % 10_000}_{schedule.index}",
                            hub_ports={code: link.port for code, link in self.links.items()})
        store = create_engine(self._store_url(c), pool_pre_ping=True)
        try:
            notes = [note for step in schedule.steps for note in self._step(c, step, folder)]
            started = time.monotonic()
            notes += self._catch_up(c, store, folder)
            converge = time.monotonic() - started
            notes += _drift(store)
            from circhub.connections.engines import DEMO_ID_KEY

            findings = check(c.world, store, DEMO_ID_KEY)
            return Result(schedule, findings, converge, len(c.world.journal), notes)
        finally:
            store.dispose()
            for link in self.links.values():
                link.close()
            consortia.drop(c, self.servers)

    def _store_url(self, c) -> str:
        return self.servers["central"].url(c.central)

    def _step(self, c, step: Step, folder: Path) -> list[str]:
        skewed = self.servers[step.clock_skew.server] if step.clock_skew else None
        if skewed:  # the server's clock jumps now, and is put right at the step's end
            skewed.skew(step.clock_skew.seconds)
        try:
            return self._faults(c, step, folder)
        finally:
            if skewed:
                skewed.skew(0)

    def _faults(self, c, step: Step, folder: Path) -> list[str]:
        self._circulate(c, step.actions)
        procs = [self._start(c, step.run, folder) for _ in range(1 + step.twin)]
        undo = (_commit_late(c.world.desks[step.late_commit.member].engine,
                             step.late_commit.seconds) if step.late_commit else None)
        stop = threading.Event()
        desks = threading.Thread(target=self._desks, args=(c, stop), daemon=True)
        desks.start()
        threads = [desks]
        if step.kill_after is not None:
            threads.append(_later(step.kill_after, _sigkill, procs[0]))
        if step.server_fault:
            f = step.server_fault
            threads.append(_later(f.after, self._server_down, c, f.server, f.down_for))
        if step.link_fault:
            f = step.link_fault
            threads.append(_later(f.after, self._link_down, f.member, f.mode, f.lasting))
        notes = [note for p in procs if (note := _wait(p, step.run))]
        stop.set()
        for t in threads:
            t.join()
        if undo:
            undo()
        if getattr(desks, "error", None):
            raise desks.error
        return notes

    def _circulate(self, c, actions: int) -> None:
        for _ in range(actions):
            self._act(c)

    def _act(self, c) -> None:
        with self.desk_lock:
            codes = [code for code in c.databases if consortia.server_of(code) not in self.down]
            if codes:
                c.world.act(codes)

    def _desks(self, c, stop: threading.Event) -> None:
        """The desks go on while the hub works: an action every 0.3 s."""
        try:
            while not stop.wait(0.3):
                self._act(c)
        except Exception as exc:  # noqa: BLE001 - raised again by the step
            threading.current_thread().error = exc

    def _server_down(self, c, server: str, seconds: float) -> None:
        with self.desk_lock:
            self.down.add(server)
            self.servers[server].kill()
        time.sleep(seconds)
        with self.desk_lock:
            self.servers[server].start()
            for code in c.databases:  # the staff log in again
                if consortia.server_of(code) == server:
                    c.world.desks[code].engine.dispose()
            self.down.discard(server)

    def _link_down(self, member: str, mode: str, seconds: float) -> None:
        self.links[member].set(mode)
        time.sleep(seconds)
        self.links[member].set("up")

    def _start(self, c, run: str, folder: Path) -> subprocess.Popen:
        args = [sys.executable, "-m", "chaos.entry", run, str(c.config)]
        if run == "backfill":  # one member's items, from the week before the world began
            member = c.world.rng.choice(list(c.world.desks))
            args += [member, f"{datetime.now() - timedelta(days=8):%Y-%m-%d}"]
        log = folder / f"{time.monotonic_ns()}-{run}.log"
        return subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT)

    # -- after the faults ----------------------------------------------------------------
    def _catch_up(self, c, store, folder: Path) -> list[str]:
        """Sync, reconcile, sync; then push and sync until no command waits (a failed one
        waits out its backoff first)."""
        notes = self._run_each(c, ("sync", "reconcile", "sync"), folder)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while (due := _waiting(store)) is not None and time.monotonic() < deadline:
            time.sleep(max(0.0, min(due, 10.0)))
            notes += self._run_each(c, ("push", "sync"), folder)
        return notes

    def _run_each(self, c, runs: tuple[str, ...], folder: Path) -> list[str]:
        """Each run in turn, to its end: a note for each that did not complete."""
        return [note for run in runs if (note := _wait(self._start(c, run, folder), run))]


def _commit_late(engine, seconds: float):
    """The engine's next commit waits `seconds` first, its rows written and stamped: a
    transaction that commits late with old timestamps. Once only, within the step: returns
    what takes it away at the step's end (not from inside the listener, which SQLAlchemy is
    iterating over then)."""
    owed = [seconds]

    def wait(conn) -> None:
        if owed:
            time.sleep(owed.pop())

    event.listen(engine, "commit", wait)
    return lambda: event.remove(engine, "commit", wait)


def _later(seconds: float, fn, *args) -> threading.Thread:
    timer = threading.Timer(seconds, fn, args)
    timer.start()
    return timer


def _sigkill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()


def _wait(proc: subprocess.Popen, run: str) -> str | None:
    """Waits for a hub process; a note when it did not complete (killed, failed, hung)."""
    try:
        rc = proc.wait(PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"{run} hung past {PROCESS_TIMEOUT} s and was killed"
    return None if rc == 0 else f"{run} ended with {rc}"


def _drift(store) -> list[str]:
    """What reconcile found that the syncs' cursor polls had not (rows stamped behind the
    watermark by a skewed clock, a late commit past the lookback): recovered, not lost, but
    only as late as the next reconcile. A note per schedule that had any."""
    from circhub.domain.schema import drift

    with store.connect() as conn:
        rows = conn.execute(select(drift.c.member, drift.c.entity, drift.c.kind, func.count())
                            .group_by(drift.c.member, drift.c.entity, drift.c.kind)
                            .order_by(drift.c.member, drift.c.entity, drift.c.kind)).all()
    if not rows:
        return []
    return ["reconcile found what the syncs had not: " + ", ".join(
        f"{n} {kind} {entity} at {member}" for member, entity, kind, n in rows)]


def _waiting(store) -> float | None:
    """Seconds until every command waiting for a push has fallen due (0 when all are due
    now); None when nothing waits."""
    from circhub.domain.schema import outbox

    with store.connect() as conn:
        row = conn.execute(select(func.count(), func.max(outbox.c.next_attempt_at)).where(
            outbox.c.status.not_in(SETTLED | {"dead", "unsupported"}))).one()
    if not row[0]:
        return None
    if row[1] is None:
        return 0.0
    return max(0.0, (row[1] - datetime.now()).total_seconds())
