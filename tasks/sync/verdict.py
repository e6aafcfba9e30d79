"""What a run's end state says: Completed when the hub did its job, Failed when it did not.

With ~250 county libraries some member is offline most cycles; a run that went red for each
would make red mean nothing. So a run is Completed when the members that could be synced were,
its message counting and naming the ones that failed, and Failed only when more than
`max_failed_share` of the members it worked on failed at once (then the cause is likely the
hub's own: its network, its key, the central store). The hub's own failures (central store,
config, key) are raised by the flows before they get here and fail the run as they are.

Plain code: the flows turn the verdict into a Prefect state, the CLI into an exit code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from circhub.tasks.sync.cycle import MemberOutcome

NAMED = 10  # members named with their cause in a run's message; the table has all of them


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    failed: tuple[str, ...]  # member codes


def sync_verdict(outcomes: Mapping[str, MemberOutcome], max_failed_share: float,
                 paused: Sequence[str] = ()) -> Verdict:
    """A sync run: '247 of 250 members synced; 3 failed: CD001: ...; ...' (paused members,
    passed by on purpose, are named and neither synced nor failed)."""
    failed = [o for o in _sorted(outcomes) if o.failure]
    done = len(outcomes) - len(failed)
    message = f"{done} of {len(outcomes)} members synced"
    if paused:
        message += f" ({len(paused)} paused: {', '.join(paused[:NAMED])})"
    return _judged(message, failed, len(outcomes), max_failed_share,
                   lambda o: o.failure.cause)


def push_verdict(outcomes: Mapping[str, MemberOutcome], max_failed_share: float) -> Verdict:
    """A push run: how many write-backs were applied, the members it could not push to (the
    task failed, or the ILS did not answer), and the commands dead-lettered (a bad command is
    the command's failure, shown in `circhub status` and its alert, not the member's)."""
    failed = [o for o in _sorted(outcomes)
              if o.push_failure or (o.pushed and o.pushed.unreachable)]
    applied = sum(o.pushed.applied for o in outcomes.values() if o.pushed)
    dead = sum(o.pushed.dead for o in outcomes.values() if o.pushed)
    message = f"{applied} write-back(s) applied at {len(outcomes)} member(s)"
    if dead:
        message += f", {dead} dead-lettered (`circhub outbox list --status dead`)"
    return _judged(message, failed, len(outcomes), max_failed_share, lambda o: o.error())


def _judged(message: str, failed: list[MemberOutcome], worked_on: int, share: float,
            cause) -> Verdict:
    if failed:
        named = "; ".join(f"{o.member}: {cause(o)}" for o in failed[:NAMED])
        more = f"; and {len(failed) - NAMED} more" if len(failed) > NAMED else ""
        message += f"; {len(failed)} failed: {named}{more}"
    too_many = worked_on > 0 and len(failed) > share * worked_on
    if too_many:
        message = (f"{len(failed)} of {worked_on} members failed, more than max_failed_share "
                   f"({share:g}) allows: {message}")
    return Verdict(not too_many, message, tuple(o.member for o in failed))


def _sorted(outcomes: Mapping[str, MemberOutcome]) -> list[MemberOutcome]:
    return sorted(outcomes.values(), key=lambda o: o.member)
