"""Prefect global concurrency limits on what circhub does to member ILS databases.

Like `wrappers.py` this is Prefect glue; the stages know nothing of it. Two kinds of limit,
both created by circhub itself (`ensure_limits`) and both taken with `strict=True`, so a
missing limit stops the work instead of letting it through unbounded:

- `circhub-source-connections` (the config's `max_source_connections`): open connections to
  member databases across every flow run, process and worker host, not just one process;
- `circhub-member-<CODE>` (1): one extract or push against a member at a time, so a slow
  scheduled sync and a manual one never work on the same member database together.

Both are taken in one acquisition, all or nothing, so nothing waits while holding one of
them (no deadlock), and it costs one API round trip instead of two (each acquisition with its
release is ~0.1 s on an idle local server, and far more on a busy one: at 251 members every
round trip shows in the cycle). With several names Prefect's `strict` only fails when *none*
of the limits exists, so each name is first checked against the limits this process knows
exist (filled by `ensure_limits`, which every flow calls at start, or by one read).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from connections.config import Consortium

SOURCE_LIMIT = "circhub-source-connections"
MEMBER_PREFIX = "circhub-member-"
PAGE = 200  # the API's largest page of concurrency limits
_known: set[str] = set()  # limits seen to exist on the server by this process


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
def source_slots(member_code: str, wait_seconds: float | None) -> Iterator[None]:
    """Hold the member's own slot and one source connection while working on its database.

    `wait_seconds` bounds the whole wait: a member held by a hung run fails this cycle by name
    (TimeoutError) instead of queueing every later run of the schedule behind it.
    """
    names = [member_limit(member_code), SOURCE_LIMIT]
    _require(names)
    with concurrency(names, occupy=1, strict=True, timeout_seconds=wait_seconds):
        yield


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
