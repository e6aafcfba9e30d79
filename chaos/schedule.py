"""Fault schedules, drawn at random from a seed: the same seed and index give the same schedule.

A schedule is a few steps. In each, the desks circulate while one hub process runs (sync,
push, reconcile or a backfill), and faults are drawn independently: the process SIGKILLed
after a random time (startup, extract, merge, between an ILS commit and its ack: wherever it
is then), a second process started for the same work at once, a database server killed with
SIGKILL and started again (the central store's PostgreSQL, the Koha members' MariaDB, or the
PostgreSQL of the Evergreen and Polaris members), the link between the hub and one member
made slow, partitioned (nothing passes, nothing is refused) or refusing, for a while; a
desk transaction that commits seconds after it stamped its rows; a member database server's
clock skewed, back or forward, for the whole step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

RUNS = ("sync", "sync", "push", "reconcile", "backfill")  # sync most often, as in production
SERVERS = ("central", "mariadb", "members_pg")
MEMBER_SERVERS = ("mariadb", "members_pg")  # the servers a clock skew may hit


@dataclass(frozen=True)
class ServerFault:
    server: str
    after: float  # seconds after the step's process started
    down_for: float  # seconds before it is started again

    def __str__(self) -> str:
        return f"{self.server} server killed at {self.after:.1f} s, down {self.down_for:.1f} s"


@dataclass(frozen=True)
class LinkFault:
    member: str
    mode: str  # slow | partition | refuse (chaos/links.py)
    after: float
    lasting: float

    def __str__(self) -> str:
        what = {"slow": "slow link to", "partition": "partition from",
                "refuse": "connections refused by"}[self.mode]
        return f"{what} {self.member} at {self.after:.1f} s for {self.lasting:.1f} s"


@dataclass(frozen=True)
class LateCommit:
    member: str
    seconds: float  # how long the desk's next transaction stays open before it commits

    def __str__(self) -> str:
        return f"{self.member}'s next desk transaction commits {self.seconds:.1f} s late"


@dataclass(frozen=True)
class ClockSkew:
    server: str  # a member server (MEMBER_SERVERS): every member on it stamps by its clock
    seconds: float  # how far its clock is off: negative, behind the real time

    def __str__(self) -> str:
        way = "back" if self.seconds < 0 else "forward"
        return f"{self.server} server's clock {way} {abs(self.seconds) / 60:.1f} min"


@dataclass(frozen=True)
class Step:
    actions: int  # desk actions before the process starts (more run while it does)
    run: str  # sync | push | reconcile | backfill
    kill_after: float | None  # SIGKILL of the process after this many seconds
    twin: bool  # a second process for the same work, started at once
    server_fault: ServerFault | None
    link_fault: LinkFault | None = None
    late_commit: LateCommit | None = None
    clock_skew: ClockSkew | None = None  # from the step's start to its end

    def faults(self) -> list[str]:
        """The kinds injected, for the campaign's counts."""
        kinds = [f"sigkill {self.run}"] if self.kill_after is not None else []
        kinds += [f"twin {self.run}"] if self.twin else []
        kinds += [f"kill {self.server_fault.server} server"] if self.server_fault else []
        kinds += [f"link {self.link_fault.mode}"] if self.link_fault else []
        kinds += ["late commit"] if self.late_commit else []
        if self.clock_skew:
            way = "back" if self.clock_skew.seconds < 0 else "forward"
            kinds.append(f"clock skew {way} ({self.clock_skew.server})")
        return kinds

    def __str__(self) -> str:
        parts = [f"{self.actions} desk actions, then {self.run}"]
        if self.clock_skew:
            parts.insert(0, str(self.clock_skew))
        if self.kill_after is not None:
            parts.append(f"SIGKILLed at {self.kill_after:.1f} s")
        if self.twin:
            parts.append("twice at once")
        if self.server_fault:
            parts.append(str(self.server_fault))
        if self.link_fault:
            parts.append(str(self.link_fault))
        if self.late_commit:
            parts.append(str(self.late_commit))
        return "; ".join(parts)


@dataclass(frozen=True)
class Schedule:
    seed: int
    index: int
    steps: tuple[Step, ...]

    def faults(self) -> list[str]:
        return [kind for step in self.steps for kind in step.faults()]

    def __str__(self) -> str:
        return f"schedule {self.index}: " + " | ".join(map(str, self.steps))


def draw(seed: int, index: int, members: tuple[str, ...] = (),
         steps: tuple[int, int] = (2, 4)) -> Schedule:
    """Schedule `index` of the campaign seeded `seed`; link faults between the hub and one
    of `members`, late commits and clock skews, each kind drawn from a stream of its own, so a
    seed's other faults stay as they were drawn before that kind existed."""
    rng = random.Random(f"{seed}/{index}")
    links = random.Random(f"{seed}/{index}/links")
    late = random.Random(f"{seed}/{index}/late")
    skews = random.Random(f"{seed}/{index}/skew")
    return Schedule(seed, index, tuple(
        _with_skew(_with_late_commit(_with_link(_step(rng), links, members), late, members),
                   skews)
        for _ in range(rng.randint(*steps))))


def _with_skew(step: Step, rng: random.Random) -> Step:
    """A member server's clock off for the step: back 2-20 minutes (rows it stamps fall
    behind the hub's watermark, past the lookback), or forward 2-9 minutes (the watermark
    runs ahead of the real time). Forward stays within the hub's FUTURE_TOLERANCE (10 min):
    further, validation holds the rows as stamped in the future (`timestamp_not_in_future`),
    by design, until the real time reaches them, which a catch-up of a minute cannot wait."""
    if rng.random() >= 0.2:
        return step
    server = rng.choice(MEMBER_SERVERS)
    back = rng.random() < 2 / 3  # back is what can hide rows from the cursor
    minutes = -rng.uniform(2.0, 20.0) if back else rng.uniform(2.0, 9.0)
    return replace(step, clock_skew=ClockSkew(server, round(minutes * 60)))


def _with_late_commit(step: Step, rng: random.Random, members: tuple[str, ...]) -> Step:
    """A desk transaction that stamps its rows, stays open while the hub reads past them,
    and commits late: the rows appear behind the watermark, inside the lookback."""
    if not members or rng.random() >= 0.25:
        return step
    return replace(step, late_commit=LateCommit(rng.choice(members),
                                                round(rng.uniform(2.0, 30.0), 1)))


def _with_link(step: Step, rng: random.Random, members: tuple[str, ...]) -> Step:
    if not members or rng.random() >= 0.3:
        return step
    fault = LinkFault(rng.choice(members), rng.choice(("slow", "partition", "refuse")),
                      round(rng.uniform(0.5, 10.0), 1), round(rng.uniform(1.0, 20.0), 1))
    return replace(step, link_fault=fault)


def _step(rng: random.Random) -> Step:
    run = rng.choice(RUNS)
    kill_after = round(rng.uniform(0.5, 12.0), 1) if rng.random() < 0.5 else None
    twin = rng.random() < 0.2
    fault = None
    if rng.random() < 0.3:
        fault = ServerFault(rng.choice(SERVERS), round(rng.uniform(0.5, 10.0), 1),
                            round(rng.uniform(0.0, 6.0), 1))
    return Step(rng.randint(3, 15), run, kill_after, twin, fault)
