"""Prefect global concurrency limits on what circhub does to member ILS databases.

Like `wrappers.py` this is Prefect glue; the stages know nothing of it. Two kinds of limit,
both created by circhub itself (`ensure_limits`), and a missing one stops the work instead of
letting it through unbounded:

- `circhub-source-connections` (the config's `max_source_connections`): open connections to
  member databases across every flow run, process and worker host, not just one process;
- `circhub-member-<CODE>` (1): one piece of work on a member's database at a time, so a slow
  scheduled sync, a manual one, a push, a backfill, a reconcile, an onboarding check or a key
  rotation never work on the same member database together.

`source_slots` is the one wrapper every such piece of work takes (the backfill and reconcile
flows, `circhub check`, `circhub reader rotate-key`); the sync's extract and push
(`flows.tasks`) take `members_slots` for a group of members and hold each in turn. It cannot
be forgotten: a member's database URL and engine are handed out only inside a hold
(`circhub.connections.holds`), and a task without one fails on its first connection.

Both are taken in one acquisition, all or nothing, so nothing waits while holding one of
them (no deadlock), and it costs one API round trip instead of two (each acquisition with its
release is ~0.1 s on an idle local server, and far more on a busy one: at 251 members every
round trip shows in the cycle). The server grants the names that exist, so each name is
first checked against the limits this process knows exist (filled by `ensure_limits`, which
every flow calls at start, or by one read).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.exceptions import ObjectAlreadyExists

from circhub.connections.config import Consortium
from circhub.connections.holds import holding

SOURCE_LIMIT = "circhub-source-connections"
MEMBER_PREFIX = "circhub-member-"
PAGE = 200  # the API's largest page of concurrency limits
# How long work waits for its member's slot (held by another run: a manual sync, a push, a
# backfill) before that member fails by name: under the 5-minute sync interval, so a member
# held by a hung run never makes later runs queue behind it. (Prefect task timeouts are not
# used: in worker threads they cannot interrupt a blocked database read.)
SLOT_WAIT_SECONDS = 240
# A killed holder's slots return after this, plus up to 15 s for the server's repossessor:
# free before its run is found Crashed (~90 s, docs/scaling.md) and rescheduled. Renewed every
# third of it while held.
LEASE_SECONDS = 60
_clients: dict[str, object] = {}
_client_lock = threading.Lock()
_known: set[str] = set()  # limits seen to exist on the server by this process


_log = logging.getLogger(__name__)


class MissingLimit(LookupError):
    """A concurrency limit circhub needs does not exist on the Prefect server."""


def member_limit(code: str) -> str:
    return f"{MEMBER_PREFIX}{code}"


def wanted_limits(consortium: Consortium) -> dict[str, int]:
    wanted = {SOURCE_LIMIT: consortium.max_source_connections}
    wanted.update({member_limit(m.code): 1 for m in consortium.members})
    return wanted


def ensure_limits(consortium: Consortium) -> list[str]:
    """Create the limits that are missing and correct the ones that differ; names touched.

    One read when nothing changed, so every flow run can call it at start. Limits of members
    no longer in the config are left alone: another config may share the server.
    """
    wanted = wanted_limits(consortium)
    touched = []
    with get_client(sync_client=True) as client:
        have = {lim.name: lim for lim in _all_limits(client)}
        _known.update(have)
        for name, size in wanted.items():
            current = have.get(name)
            if current is not None and current.limit == size and current.active:
                continue
            _put_limit(client, name, size, exists=current is not None)
            touched.append(name)
    _known.update(touched)
    return touched


def _all_limits(client) -> list:
    found, offset = [], 0
    while True:
        page = client.read_global_concurrency_limits(limit=PAGE, offset=offset)
        found += page
        if len(page) < PAGE:
            return found
        offset += PAGE


def _put_limit(client, name: str, size: int, exists: bool) -> None:
    if not exists:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=size))
            return
        except ObjectAlreadyExists:  # another flow run created it a moment ago
            pass
    client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(limit=size, active=True))


@contextmanager
def source_slots(member_code: str, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the member's own slot and one source connection while working on its database;
    inside, and only inside, its database can be opened (`connections.holds`), and its idle
    connections are closed before the slots are given back.

    `wait_seconds` (default SLOT_WAIT_SECONDS) bounds the whole wait: a member
    held by a hung run fails this cycle by name (TimeoutError) instead of queueing every later
    run of the schedule behind it.
    """
    with members_slots([member_code], wait_seconds) as hold, hold(member_code):
        yield


@contextmanager
def members_slots(codes: Sequence[str], wait_seconds: float | None = None
                  ) -> Iterator[Callable[[str], AbstractContextManager]]:
    """Hold the own slots of several members and one source connection, in one acquisition:
    for work that opens their databases one after the other, each inside `hold(code)` (what it
    yields), so one connection is all it ever has open. A cycle's tasks take a group of members each
    (`flows.tasks`): one API round trip per group, not per member.

    Taken through one long-lived API client of this process rather than Prefect's
    `concurrency()`, which builds a new client (and TLS context: ~40 ms of CPU) to release
    every lease; at two acquisitions per member that was a third of a 251-member cycle.
    The lease is renewed while held, as `concurrency()` does, so a long hold keeps its slots
    and a crashed holder's slots come back after LEASE_SECONDS.
    """
    if wait_seconds is None:
        wait_seconds = SLOT_WAIT_SECONDS  # read now: tests shorten it
    names = [member_limit(code) for code in codes] + [SOURCE_LIMIT]
    who = ", ".join(codes)
    _require(names)
    client = _client()
    lease_id = _acquire(client, names, who, wait_seconds)
    # Logged inside the hold (after taking, before giving back): what the lines show held, was.
    _log.debug("member %s: slots taken (lease %s)", who, lease_id)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(client, lease_id, stop), daemon=True,
                               name=f"circhub-lease-{codes[0]}")
    renewer.start()
    try:
        yield partial(_hold, tuple(codes))
    finally:
        stop.set()
        renewer.join()
        _log.debug("member %s: giving its slots back (lease %s)", who, lease_id)
        _release(client, lease_id, who)


def _hold(held: tuple[str, ...], code: str) -> AbstractContextManager:
    """One member of those whose slots are held: its database may be opened inside."""
    if code not in held:
        raise ValueError(f"member {code} is not among the members whose slots are held "
                         f"({', '.join(held)})")
    return holding(code)


def _release(client, lease_id: UUID, who: str) -> None:
    try:
        client.release_concurrency_slots_with_lease(lease_id=lease_id)
    except httpx.HTTPError as exc:  # the work is done; its slots come back with the lease
        _log.warning(
            "member %s: could not release its concurrency slots (%s); they return when the "
            "lease ends, within %d s", who, type(exc).__name__, LEASE_SECONDS)


def _acquire(client, names: list[str], who: str, wait_seconds: float) -> UUID:
    deadline = time.monotonic() + wait_seconds
    waiting = False
    while True:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=names, slots=1, mode="concurrency", lease_duration=LEASE_SECONDS,
                holder=_holder())
            return UUID(response.json()["lease_id"])
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (423, 503):  # 423: taken; 503: server busy
                raise
            pause = float(exc.response.headers.get("Retry-After", 1))
        if not waiting:  # once per hold: which run waits on which member
            waiting = True
            _log.debug("member %s: waiting for its slot or a source connection",
                       who)
        if time.monotonic() + pause > deadline:
            raise TimeoutError(f"member {who}: its slot or a source connection stayed "
                               f"taken for {wait_seconds:.0f} s (another run holds it)")
        time.sleep(pause)


def _renew(client, lease_id: UUID, stop: threading.Event) -> None:
    while not stop.wait(LEASE_SECONDS / 3):
        try:
            client.renew_concurrency_lease(lease_id=lease_id, lease_duration=LEASE_SECONDS)
        except httpx.HTTPError as exc:  # tried again at the next third; the work goes on
            _log.warning(
                "could not renew a concurrency lease (%s); retrying in %d s",
                type(exc).__name__, LEASE_SECONDS // 3)


def _holder():
    """The task run holding the slots, shown by the Prefect UI beside the limit."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    return ConcurrencyLeaseHolder(type="task_run", id=ctx.task_run.id) if ctx else None


def _client():
    """One sync API client per process and API address (httpx clients are thread-safe)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    with _client_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = get_client(sync_client=True)
            client.__enter__()  # open for the life of the process
        return client


def _require(names: list[str]) -> None:
    """Fail by name when a limit is missing (a strict acquisition of several names would pass
    as long as one exists); reads the server only for a name not seen yet."""
    if all(n in _known for n in names):
        return
    with get_client(sync_client=True) as client:
        _known.update(lim.name for lim in _all_limits(client))
    missing = [n for n in names if n not in _known]
    if missing:
        raise MissingLimit(f"concurrency limit {', '.join(missing)} does not exist on the "
                           "Prefect server: a flow run creates it (ensure_limits)")
